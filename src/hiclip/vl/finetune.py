"""``finetune(cfg)``: fine-tune a hiclip model on a vision-language task, with the training
package's checkpoints, exact resume, schedule, metrics and progress bar.

Learning rates (METER): the encoders get ``lr``, the fusion layers and projections
``lr * lr_mult_fusion``, the classifier ``lr * lr_mult_head``, all under one warm-up +
cosine schedule. A checkpoint keeps the encoders' state dict in the layout of
``hiclip train`` (so ``hiclip eval`` and ``hiclip finetune --model`` read it) and the head
under ``vl``. The run ends with an evaluation on the whole validation split, written as a
results JSON in the output directory (its first ``val_samples`` examples, as every
validation; ``hiclip finetune-eval`` scores whole splits).
"""
from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import factory
from ..checkpoint import Checkpoint, RunPaths, TaskHead
from ..runlock import folder_lock
from ..train.distributed import DistInfo, resolve_device
from ..train.metrics import MetricsWriter
from ..train.optim import make_optimizer, no_decay
from ..train.skeleton import RunSkeleton
from ..train.step import StepOptions, autocast_factory, make_scaler
from .config import FinetuneConfig
from .data import make_loader
from .evaluate import evaluate, format_metrics, task_loss, write_results
from .model import HeadCfg, VLModel
from .tasks import load_task

log = logging.getLogger(__name__)
TRAIN_FIELDS = ("step", "epoch", "loss", "lr", "grad_norm", "samples_per_s", "elapsed_s")
VAL_FIELDS = ("step", "epoch", "val_loss", "accuracy", "samples")


def param_groups(model: VLModel, cfg: FinetuneConfig) -> list[dict]:
    """AdamW groups: encoder / fusion / head, each with and without weight decay, with ``lr_mult``."""
    extra, groups = model.no_weight_decay(), []
    mults = {"encoder": 1.0, "fusion": cfg.lr_mult_fusion, "head": cfg.lr_mult_head}
    for key, named in model.param_groups().items():
        for decay in (True, False):
            params = [p for n, p in named if no_decay(n, p, extra) != decay]
            if params:
                groups.append({"params": params, "weight_decay": cfg.weight_decay if decay else 0.0,
                               "lr_mult": mults[key], "group": key})
    return groups


def finetune(cfg: FinetuneConfig) -> dict[str, Any]:
    """Run fine-tuning as configured; returns a summary (steps, losses, final validation, paths).

    Raises ``TrainingDiverged`` on a NaN / inf loss, ``ValueError`` / ``FileNotFoundError``
    on bad options or data.
    """
    with folder_lock(cfg.output_dir):  # one writer per run folder
        return _Run(cfg).run()


class _Run(RunSkeleton):
    """One fine-tuning run (one process): the skeleton's loop with the task loss, the task's
    validation and a checkpoint of the encoders plus the task head (:class:`TaskHead`)."""

    def __init__(self, cfg: FinetuneConfig):
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ValueError("hiclip finetune runs in a single process (no torchrun)")
        self.cfg, self.paths = cfg, RunPaths(cfg.output_dir)
        self.device = resolve_device(cfg.device)
        self.info, self.data_name = DistInfo(device=self.device), cfg.task
        resume_path = self._resume_path()
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        for seed in (random.seed, np.random.seed, torch.manual_seed):
            seed(cfg.seed)
        self.name, weights = factory.resolve_model(cfg.model, cfg.pretrained)
        if weights is None:
            log.info("%s without pretrained weights: the encoders start from random initialisation", self.name)
        encoder, _, self.transform = factory.create_model_and_transforms(self.name, weights, self.device)
        self.tokenizer = factory.get_tokenizer(self.name)
        size = encoder.cfg.vision_cfg.image_size
        self.train_task = load_task(cfg.task, "train", size, cfg.world_samples)
        self.val_task = load_task(cfg.task, "val", size, answers=self.train_task.answers)
        head = HeadCfg(cfg.head, len(self.train_task.answers), cfg.fusion_width, cfg.fusion_layers, None, cfg.dropout)
        self.model = VLModel(encoder, head, cfg.freeze_encoders).to(self.device)
        self.optimizer = make_optimizer(self.model, cfg.lr, (cfg.beta1, cfg.beta2), cfg.eps, cfg.weight_decay,
                                        groups=param_groups(self.model, cfg))
        self.opts = StepOptions(self.info, autocast_factory(cfg.precision, self.device), make_scaler(cfg.precision),
                                grad_clip=cfg.grad_clip)
        self._start(resume_path)
        self.total_steps = self._total_steps()

    def _task_head(self) -> TaskHead:
        return TaskHead(task=self.cfg.task, answers=self.train_task.answers, head=self.model.head_cfg.to_dict(),
                        head_state_dict=self.model.head.state_dict(), freeze_encoders=self.cfg.freeze_encoders)

    def _check_resume(self, state: Checkpoint, path: Path) -> None:
        mine, theirs = self._task_head(), state.vl
        same = {"model_config": state.model_config == self.model.encoder.cfg.to_dict(),
                "batch_size": state.batch_size == self.cfg.batch_size, "task head": theirs is not None}
        if theirs is not None:
            same |= {k: getattr(theirs, k) == getattr(mine, k) for k in ("task", "answers", "head", "freeze_encoders")}
        changed = [k for k, ok in same.items() if not ok]
        if changed or not state.resumable:
            raise ValueError(f"{path} is not a resumable checkpoint of this fine-tuning run (it differs in "
                             f"{changed or ['training state']}); resume with the options it was written with")

    def _load_payload(self, state: Checkpoint) -> None:
        self.model.encoder.load_state_dict(state.state_dict)
        self.model.head.load_state_dict(state.vl.head_state_dict)

    def _payload(self) -> dict[str, Any]:
        encoder = self.model.encoder
        return {"model": self.name, "model_config": encoder.cfg.to_dict(), "state_dict": encoder.state_dict(),
                "vl": self._task_head()}

    def _loader(self, epoch: int, start_batch: int) -> Any:
        return make_loader(self.train_task, self.transform, self.tokenizer, self.cfg.batch_size,
                           workers=self.cfg.workers, seed=self.cfg.seed, epoch=epoch, start_batch=start_batch)

    def _total_steps(self) -> int:
        per_epoch = self._loader(0, 0).num_batches  # a batch larger than the data fails here
        return self.cfg.steps if self.cfg.steps is not None else per_epoch * self.cfg.epochs

    def _metrics_writer(self) -> MetricsWriter:
        return MetricsWriter(self.paths.root, self.step, self.cfg.tensorboard, train_fields=TRAIN_FIELDS,
                             val_fields=VAL_FIELDS)

    def _next_position(self, loader: Any, group: list) -> int:
        return loader.next_batch  # the loader skips unusable batches: its own count

    def _samples(self, group: list) -> int:
        return sum(len(batch[0]) for batch in group)

    def _gradients(self, group: list) -> dict[str, float]:
        (images, tokens, targets, _), = group
        with self.opts.autocast():
            logits = self.model(images.to(self.device), tokens.to(self.device))
        loss = task_loss(logits.float(), targets.to(self.device), self.train_task.objective)
        if torch.isfinite(loss):
            (self.opts.scaler.scale(loss) if self.opts.scaler else loss).backward()
        return {"loss": loss.item()}

    def _validation_due(self) -> bool:  # the last step is validated by the final evaluation
        return bool(self.cfg.val_every) and self.step % self.cfg.val_every == 0 and self.step < self.total_steps

    def _validate(self) -> tuple[dict[str, float], list[dict]]:
        loader = make_loader(self.val_task, self.transform, self.tokenizer, self.cfg.batch_size,
                             workers=self.cfg.workers, train=False, limit=self.cfg.val_samples)
        metrics, preds = evaluate(self.model, self.val_task, loader, self.device, self.opts.autocast)
        self.metrics.val({"step": self.step, "epoch": self.epoch, "val_loss": metrics["loss"], **metrics})
        log.info("step %d: val %s", self.step, format_metrics(metrics))
        return metrics, preds

    def _finish(self, stopped: str) -> dict[str, Any] | None:
        if stopped != "completed":
            return None
        metrics, preds = self._validate()
        path = write_results(metrics, preds if self.cfg.predictions else None, self.paths.root, self.val_task,
                             self.name, str(self.last_checkpoint))
        return {**metrics, "results": str(path)}

    def _summary(self, start_step: int, elapsed: float) -> dict[str, Any]:
        return {"samples_per_s": (self.step - start_step) * self.cfg.batch_size / max(elapsed, 1e-9),
                "skipped": dict(self.skips)}
