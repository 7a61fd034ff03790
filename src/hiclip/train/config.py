"""``TrainConfig``: every option of ``hiclip train`` with its default and help text.

Each field's ``metadata`` holds ``help`` (and ``choices`` where the value is one of a
set), so ``hiclip.cli_options`` builds the command's options and ``--help`` from this file alone.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..config import OBJECTIVES, option as _opt
from ..data.csvdata import CAPTION_KEY, IMAGE_KEY
from ..data.images import DEFAULT_MAX_PIXELS

PRECISIONS = ("fp32", "bf16", "amp")


@dataclass
class TrainConfig:
    """Options of one training run (per-rank quantities are marked so)."""

    output_dir: str = field(metadata={"help": "run directory: metrics.csv, val.csv, tensorboard/, checkpoints/"})
    model: str = _opt("HiCLIP-Tiny", "model name (see `hiclip models`) or path to a JSON model config")
    pretrained: str | None = _opt(None, "initial weights: a CLIP / open_clip state dict or a hiclip checkpoint")
    objective: str | None = _opt(None, "training objective: clip, or declip (DeCLIP's multi-view, nearest-neighbour, "
                                       "SimSiam and masked-LM supervision); default: the model config's",
                                 choices=OBJECTIVES)
    data: str = _opt("world", "training data: 'world' (the embedded world), 'wds:PATTERN' (WebDataset "
                              "shards, brace-expanded, '::' joins sources) or 'csv:FILE'")
    val_data: str = _opt("world", "validation data spec (its 'val' split), or 'none'")
    csv_img_key: str = _opt(IMAGE_KEY, "CSV column of image paths")
    csv_caption_key: str = _opt(CAPTION_KEY, "CSV column of captions")
    csv_sep: str | None = _opt(None, "CSV separator (default: ',' for .csv, tab for .tsv)")
    world_samples: int = _opt(10_000, "scenes per epoch of the embedded world")
    max_pixels: int = _opt(DEFAULT_MAX_PIXELS, "skip (and count) image files larger than this many pixels "
                                        "(decompression bombs; default: PIL's own limit)")
    batch_size: int = _opt(64, "batch size per rank (and per micro-batch with --accum-freq)")
    epochs: int = _opt(5, "number of passes over the training data (ignored when --steps is given)")
    steps: int | None = _opt(None, "total optimizer steps (overrides --epochs; needed for data of unknown size)")
    lr: float = _opt(5e-4, "peak AdamW learning rate")
    beta1: float = _opt(0.9, "AdamW beta1")
    beta2: float = _opt(0.98, "AdamW beta2")
    eps: float = _opt(1e-6, "AdamW epsilon")
    weight_decay: float = _opt(0.2, "AdamW weight decay (never on norms, biases, logit_scale, embeddings)")
    warmup_steps: int = _opt(100, "linear warm-up steps before the cosine decay to 0")
    grad_clip: float | None = _opt(None, "clip the global gradient norm to this value")
    accum_freq: int = _opt(1, "micro-batches per optimizer step; features of all micro-batches are cached "
                              "so each step's loss uses every negative of the accumulated batch")
    precision: str = _opt("fp32", "fp32; bf16 (autocast, CPU or GPU); amp (fp16 autocast + GradScaler, CUDA)",
                          choices=PRECISIONS)
    seed: int = _opt(0, "random seed (model initialisation and data order)")
    workers: int = _opt(2, "data-loading worker processes per rank")
    threads: int | None = _opt(None, "torch CPU threads per rank (default: torch's choice; 1 helps on "
                                     "small, busy CPUs)")
    resume: str | None = _opt(None, "'latest' (OUTPUT_DIR/checkpoints/latest.pt, if any) or a checkpoint path")
    save_every: int = _opt(500, "write a checkpoint every N steps (0: only at the end)")
    keep_checkpoints: int = _opt(2, "keep the last K step_N.pt files (latest.pt is kept besides); a run "
                                          "killed during a save may leave K+1, pruned to K by the next save")
    val_every: int = _opt(250, "validate every N steps and at the end (0: never)")
    val_samples: int = _opt(1000, "validate on at most this many samples of the validation split")
    local_loss: bool = _opt(False, "contrastive logits of local features against all ranks' features")
    gather_with_grad: bool = _opt(False, "gather features across ranks with gradients (exact gradients)")
    grad_checkpointing: bool = _opt(False, "recompute activations in the backward pass to save memory")
    device: str = _opt("auto", "auto (cuda if available), cpu, cuda or cuda:N")
    max_minutes: float | None = _opt(None, "time budget: stop cleanly with a checkpoint after this many minutes")
    tensorboard: bool = _opt(True, "also write metrics to OUTPUT_DIR/tensorboard/")
    progress: bool = _opt(True, "show a progress bar (rank 0)")

    def __post_init__(self) -> None:
        positive = {"batch_size": self.batch_size, "epochs": self.epochs, "accum_freq": self.accum_freq,
                    "keep_checkpoints": self.keep_checkpoints, "val_samples": self.val_samples,
                    "world_samples": self.world_samples, "max_pixels": self.max_pixels}
        positive.update({k: v for k, v in (("steps", self.steps), ("threads", self.threads)) if v is not None})
        non_negative = {"warmup_steps": self.warmup_steps, "save_every": self.save_every,
                        "val_every": self.val_every, "workers": self.workers, "weight_decay": self.weight_decay}
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        for name, value in non_negative.items():
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.objective is not None and self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0, got {self.grad_clip}")
        if self.max_minutes is not None and self.max_minutes < 0:
            raise ValueError(f"max_minutes must be >= 0, got {self.max_minutes}")
        if not self.output_dir:
            raise ValueError("output_dir must be a directory path, got an empty string")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
