"""Training: ``train(TrainConfig(...))`` — contrastive pretraining with DDP, exact resume,
atomic checkpoints, validation and metrics. ``hiclip train`` and ``python -m hiclip.train`` wrap it."""
from .config import TrainConfig
from .loop import TrainingDiverged, train
from .loss import contrastive_loss
from .metrics import format_summary
from .scheduler import lr_at

__all__ = ["TrainConfig", "TrainingDiverged", "contrastive_loss", "format_summary", "lr_at", "train"]
