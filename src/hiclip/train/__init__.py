"""Training: ``train(TrainConfig(...))`` — contrastive pretraining with DDP, exact resume,
atomic checkpoints, validation and metrics. ``hiclip train`` wraps it (``cli_args``)."""
from .config import TrainConfig
from .loop import TrainingDiverged, train
from .loss import contrastive_loss
from .scheduler import lr_at

__all__ = ["TrainConfig", "TrainingDiverged", "contrastive_loss", "lr_at", "train"]
