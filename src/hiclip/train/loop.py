"""``train(cfg)``: the training run, from a data spec to checkpoints and metrics."""
from __future__ import annotations

import contextlib
import logging
import random
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from ..checkpoint import Checkpoint, RunPaths
from ..config import ModelCfg
from ..data import loader as data_loader
from ..factory import create_model_and_transforms, get_tokenizer
from ..runlock import folder_lock
from .config import TrainConfig
from .distributed import DistInfo, all_gather_objects, barrier, cleanup, init_distributed, mean_over_ranks
from .evaluate import validate
from .metrics import MetricsWriter
from .optim import make_optimizer
from .objective import Objective, model_config
from .skeleton import RunSkeleton, TrainingDiverged
from .step import StepOptions, autocast_factory, make_scaler

__all__ = ["TrainingDiverged", "train"]

log = logging.getLogger(__name__)


def train(cfg: TrainConfig, *, make_loader: Callable | None = None) -> dict[str, Any]:
    """Run training as configured; returns a summary (steps, losses, time, skipped samples...).

    Under torchrun each process calls this; it joins the process group from the
    environment. ``make_loader``: the loader factory (default ``hiclip.data.loader.make_loader``;
    tests pass a fake with its signature); it receives the parsed and checked ``DataSpec`` of
    ``cfg.data`` / ``cfg.val_data``. Rank 0 holds the output folder's lock
    (:mod:`hiclip.runlock`) for the whole run. Raises ``TrainingDiverged`` on a NaN / inf loss,
    ``ValueError`` on bad options (``FolderInUse`` when another process writes the folder).
    """
    info = init_distributed(cfg.device)
    try:
        with folder_lock(cfg.output_dir) if info.is_main else contextlib.nullcontext():  # rank 0 writes
            return _Run(cfg, info, make_loader or data_loader.make_loader).run()
    finally:
        cleanup(info)


def _data_spec(cfg: TrainConfig, text: str, image_size: int) -> data_loader.DataSpec:
    """The checked spec of ``text`` (``cfg.data`` or ``cfg.val_data``) with ``cfg``'s CSV and world options."""
    spec = data_loader.DataSpec.parse(text, image_size=image_size, csv_img_key=cfg.csv_img_key,
                                      csv_caption_key=cfg.csv_caption_key, csv_sep=cfg.csv_sep,
                                      world_size_samples=cfg.world_samples, max_pixels=cfg.max_pixels)
    data_loader.validate(spec)
    return spec


class _Run(RunSkeleton):
    """One pretraining run on one rank: the skeleton's loop with the objective's gradients, the
    contrastive validation and a checkpoint of the model and its objective's state."""

    def __init__(self, cfg: TrainConfig, info: DistInfo, make_loader: Callable):
        self.cfg, self.info = cfg, info
        self.paths = RunPaths(cfg.output_dir)
        self.accum_freq, self.data_name = cfg.accum_freq, cfg.data
        resume_path = self._resume_path()
        self.make_loader = make_loader
        model_cfg = model_config(cfg.model, cfg.objective)
        size = model_cfg.vision_cfg.image_size
        self.spec = _data_spec(cfg, cfg.data, size)
        self.val_spec = None if cfg.val_data == "none" or cfg.val_every == 0 else _data_spec(cfg, cfg.val_data, size)
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        for seed in (random.seed, np.random.seed, torch.manual_seed):
            seed(cfg.seed)
        model, self.train_tf, self.eval_tf = create_model_and_transforms(
            cfg.model, cfg.pretrained, info.device, config=model_cfg if cfg.objective else None)
        self.tokenizer = get_tokenizer(cfg.model)
        self.objective = Objective(model, cfg, info, self.spec.kind)
        self.train_tf = self.objective.train_transform(self.train_tf)
        if cfg.grad_checkpointing:
            model.set_grad_checkpointing()
        self.optimizer = make_optimizer(model, cfg.lr, (cfg.beta1, cfg.beta2), cfg.eps, cfg.weight_decay)
        self.opts = StepOptions(info, autocast_factory(cfg.precision, info.device), make_scaler(cfg.precision),
                                cfg.local_loss, cfg.gather_with_grad, cfg.grad_clip)
        self.hiclip = model
        self.last_val: dict[str, float] | None = None
        self._start(resume_path)
        module = self.objective.module
        self.model = (DistributedDataParallel(module, device_ids=[info.device] if info.device.type == "cuda" else None)
                      if info.distributed else module)
        self.total_steps = self._total_steps()

    def _check_resume(self, state: Checkpoint, path: Path) -> None:
        if not state.resumable:
            raise ValueError(f"{path} holds weights without training state; "
                             "to start from its weights use --pretrained instead of --resume")
        # compared as configs, so that a field added since the checkpoint (at its default) is no difference
        if ModelCfg.from_dict(state.model_config).to_dict() != self.hiclip.cfg.to_dict():
            raise ValueError(f"{path} is a checkpoint of model {state.model!r}, whose config differs from "
                             f"this run's model {self.cfg.model!r}; resume with --model {state.model}")
        layout = {"world_size": self.info.world_size, "batch_size": self.cfg.batch_size,
                  "accum_freq": self.cfg.accum_freq}
        changed = ", ".join(f"{k}: {getattr(state, k)} -> {v}" for k, v in layout.items() if getattr(state, k) != v)
        if changed:
            raise ValueError(f"{path} was written with a different data layout ({changed}); "
                             "an exact resume needs the same world size, batch size and accum freq")

    def _load_payload(self, state: Checkpoint) -> None:
        self.hiclip.load_state_dict(state.state_dict)
        self.objective.load_state_dict(state.objective or None)

    def _payload(self) -> dict[str, Any]:
        return {"model": self.cfg.model, "model_config": self.hiclip.cfg.to_dict(),
                "state_dict": self.hiclip.state_dict(), "objective": self.objective.state_dict() or {}}

    def _loader(self, epoch: int, start_batch: int, split: str = "train") -> Any:
        train = split == "train"
        return self.make_loader(self.spec if train else self.val_spec, self.train_tf if train else self.eval_tf,
                                self.objective.train_tokenizer(self.tokenizer, epoch) if train else self.tokenizer,
                                self.cfg.batch_size, workers=self.cfg.workers,
                                rank=self.info.rank if train else 0, world_size=self.info.world_size if train else 1,
                                seed=self.cfg.seed, epoch=epoch, start_batch=start_batch, split=split,
                                drop_last=train)

    def _total_steps(self) -> int:
        num_batches = self._loader(0, 0).num_batches  # bad data or batch sizes fail here, before training
        if self.cfg.steps is not None:
            return self.cfg.steps
        if num_batches is None:
            raise ValueError(f"the size of {self.cfg.data!r} is unknown; give the number of steps (--steps)")
        per_epoch = num_batches // self.cfg.accum_freq
        if per_epoch < 1:
            raise ValueError(f"one epoch of {self.cfg.data!r} has {num_batches} batches of {self.cfg.batch_size} "
                             f"per rank, fewer than --accum-freq {self.cfg.accum_freq}; lower --batch-size")
        return per_epoch * self.cfg.epochs

    def _metrics_writer(self) -> MetricsWriter:
        return MetricsWriter(self.paths.root, self.step, self.cfg.tensorboard, self.objective.terms)

    def _gradients(self, group: list) -> dict[str, float]:
        return {k: float(mean_over_ranks(v, self.info))
                for k, v in self.objective.backward(self.model, group, self.opts, self.epoch).items()}

    def _metrics_row(self) -> dict[str, float]:
        return {"logit_scale": self.hiclip.logit_scale.exp().item()}

    def _at_start(self) -> None:
        self._validate()

    def _validation_due(self) -> bool:
        return self.val_spec is not None and self.step % self.cfg.val_every == 0

    def _finish(self, stopped: str) -> dict[str, float] | None:
        if stopped == "completed" and self.val_step != self.step:  # a stop request must be quick
            self._validate()
        return self.last_val

    def _summary(self, start_step: int, elapsed: float) -> dict[str, Any]:
        skipped = sum((Counter(s) for s in all_gather_objects(dict(self.skips), self.info)), Counter())
        pairs = (self.step - start_step) * self.cfg.batch_size * self.cfg.accum_freq * self.info.world_size
        return {"pairs_per_s": pairs / max(elapsed, 1e-9), "skipped": dict(skipped)}

    def _validate(self) -> None:
        if self.val_spec is None:
            return
        self.val_step = self.step
        if self.info.is_main:
            result = validate(self.hiclip, self._loader(0, 0, split="val"), self.info.device,
                              self.cfg.val_samples, self.opts.autocast)
            self.last_val = {"step": self.step, "epoch": self.epoch, **result}
            self.metrics.val(self.last_val)
            log.info("step %d: val loss %.4f, R@1 image->text %.3f, text->image %.3f",
                     self.step, result["val_loss"], result["i2t_r1"], result["t2i_r1"])
        barrier(self.info)
