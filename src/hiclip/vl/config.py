"""``FinetuneConfig``: every option of ``hiclip finetune``, with the names ``hiclip train`` uses
where they mean the same; each field's ``metadata`` holds its help text (and choices)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..config import option as _opt
from ..train.config import PRECISIONS, TrainConfig
from .model import HEADS
from .tasks import TASK_HELP


_TRAIN_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _same(name: str, default: Any) -> Any:
    """An option that means what ``hiclip train``'s option of that name means (its help text)."""
    return field(default=default, metadata=_TRAIN_FIELDS[name].metadata)


@dataclass
class FinetuneConfig:
    """Options of one fine-tuning run."""

    task: str = field(metadata={"help": f"the task: {TASK_HELP}"})
    output_dir: str = field(metadata={"help": "run directory: metrics.csv, val.csv, tensorboard/, checkpoints/, "
                                              "results JSON"})
    model: str = _opt("HiCLIP-Tiny", "model name, JSON config, or a checkpoint of `hiclip train` / "
                                     "`hiclip finetune` (its encoders are the starting point)")
    pretrained: str | None = _opt(None, "initial encoder weights for a model name (CLIP / open_clip state dict "
                                        "or a hiclip checkpoint)")
    head: str = _opt("fusion", "fusion: token-level merged-attention layers; mlp: [v; t; v*t; |v-t|] of pooled "
                               "features", choices=HEADS)
    freeze_encoders: bool = _opt(False, "train the head only; the towers stay exactly as loaded")
    fusion_layers: int | None = _opt(None, "fusion transformer layers (default: half the text tower's: 2 for Tiny)")
    fusion_width: int | None = _opt(None, "fusion width (default: the text tower's width)")
    dropout: float = _opt(0.0, "dropout in the fusion layers (METER: 0.1; off by default, as it slows a CPU step)")
    world_samples: int = _opt(20_000, "training examples of a world task (its other splits have 1000)")
    batch_size: int = _opt(64, "batch size")
    epochs: int = _same("epochs", 5)
    steps: int | None = _same("steps", None)
    lr: float = _opt(1e-4, "peak AdamW learning rate of the encoders (the head and fusion get multiples)")
    lr_mult_fusion: float = _opt(5.0, "learning-rate multiplier of the fusion layers and projections (METER: 5)")
    lr_mult_head: float = _opt(10.0, "learning-rate multiplier of the classifier (METER: 10 to 50)")
    beta1: float = _same("beta1", 0.9)
    beta2: float = _same("beta2", 0.98)
    eps: float = _same("eps", 1e-8)
    weight_decay: float = _opt(0.01, "AdamW weight decay (never on norms, biases, embeddings)")
    warmup_steps: int = _same("warmup_steps", 100)
    grad_clip: float | None = _same("grad_clip", None)
    precision: str = _same("precision", "fp32")
    seed: int = _opt(0, "random seed (head initialisation, data order; the world tasks' examples are fixed)")
    workers: int = _same("workers", 2)
    threads: int | None = _same("threads", None)
    resume: str | None = _same("resume", None)
    save_every: int = _same("save_every", 500)
    keep_checkpoints: int = _same("keep_checkpoints", 2)
    val_every: int = _opt(250, "validate every N steps (0: only at the end)")
    val_samples: int = _opt(1000, "validate (also at the end) on the first N examples of the val split")
    predictions: bool = _opt(False, "also write per-example predictions of the final validation")
    device: str = _same("device", "auto")
    max_minutes: float | None = _same("max_minutes", None)
    tensorboard: bool = _same("tensorboard", True)
    progress: bool = _same("progress", True)

    def __post_init__(self) -> None:
        positive = {"batch_size": self.batch_size, "epochs": self.epochs, "val_samples": self.val_samples,
                    "keep_checkpoints": self.keep_checkpoints, "world_samples": self.world_samples}
        positive.update({k: v for k, v in (("steps", self.steps), ("threads", self.threads),
                                           ("fusion_layers", self.fusion_layers),
                                           ("fusion_width", self.fusion_width)) if v is not None})
        non_negative = {"warmup_steps": self.warmup_steps, "save_every": self.save_every, "workers": self.workers,
                        "val_every": self.val_every, "weight_decay": self.weight_decay,
                        "lr_mult_fusion": self.lr_mult_fusion, "lr_mult_head": self.lr_mult_head}
        bad = [f"{k} must be >= 1, got {v}" for k, v in positive.items() if v < 1]
        bad += [f"{k} must be >= 0, got {v}" for k, v in non_negative.items() if v < 0]
        if not self.lr > 0:
            bad.append(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.dropout < 1:
            bad.append(f"dropout must be in [0, 1), got {self.dropout}")
        if self.head not in HEADS:
            bad.append(f"head must be one of {HEADS}, got {self.head!r}")
        if self.precision not in PRECISIONS:
            bad.append(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            bad.append(f"grad_clip must be > 0, got {self.grad_clip}")
        if self.max_minutes is not None and self.max_minutes < 0:
            bad.append(f"max_minutes must be >= 0, got {self.max_minutes}")
        if not self.output_dir:
            bad.append("output_dir must be a directory path, got an empty string")
        if bad:
            raise ValueError("; ".join(bad))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
