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

import contextlib
import logging
import math
import os
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, ContextManager

import numpy as np
import torch

from .. import factory
from ..checkpoint import Checkpoint, RunPaths, rng_state, set_rng_state
from ..runlock import folder_lock
from ..train.distributed import resolve_device
from ..train.loop import TrainingDiverged
from ..train.metrics import MetricsWriter
from ..train.optim import make_optimizer, no_decay
from ..train.progress import Progress, StopSignals
from ..train.scheduler import lr_at, set_lr
from ..train.step import autocast_factory, make_scaler
from .config import FinetuneConfig
from .data import Batch, make_loader
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


def train_step(model: VLModel, optimizer: torch.optim.Optimizer, batch: Batch, objective: str,
               device: torch.device, autocast: Callable[[], ContextManager] = contextlib.nullcontext,
               scaler: torch.amp.GradScaler | None = None, grad_clip: float | None = None) -> tuple[float, float]:
    """One optimizer step on ``batch`` -> (loss, gradient norm before clipping).

    A non-finite loss leaves the parameters unchanged; so does a non-finite gradient norm
    without a GradScaler (which skips such steps itself).
    """
    images, tokens, targets, _ = batch
    with autocast():
        logits = model(images.to(device), tokens.to(device))
    loss = task_loss(logits.float(), targets.to(device), objective)
    if not math.isfinite(loss.item()):
        optimizer.zero_grad(set_to_none=True)
        return loss.item(), float("nan")
    (scaler.scale(loss) if scaler else loss).backward()
    params = [p for p in model.parameters() if p.grad is not None]
    if scaler is not None:
        scaler.unscale_(optimizer)
    norm = float(torch.nn.utils.clip_grad_norm_(params, grad_clip or float("inf")))
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    elif math.isfinite(norm):
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item(), norm


def finetune(cfg: FinetuneConfig) -> dict[str, Any]:
    """Run fine-tuning as configured; returns a summary (steps, losses, final validation, paths).

    Raises ``TrainingDiverged`` on a NaN / inf loss, ``ValueError`` / ``FileNotFoundError``
    on bad options or data.
    """
    with folder_lock(cfg.output_dir):  # one writer per run folder
        return _Run(cfg).run()


class _Run:
    def __init__(self, cfg: FinetuneConfig):
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ValueError("hiclip finetune runs in a single process (no torchrun)")
        self.cfg, self.out = cfg, Path(cfg.output_dir)
        self.paths = RunPaths(self.out)
        self.device = resolve_device(cfg.device)
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
        self.autocast, self.scaler = autocast_factory(cfg.precision, self.device), make_scaler(cfg.precision)
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.skips: Counter = Counter()
        self.last_checkpoint: Path | None = None
        self.saved_step = -1
        if resume_path is not None:
            self._restore(resume_path)
        self.total_steps = self._total_steps()

    def _resume_path(self) -> Path | None:
        if self.cfg.resume:
            return self.paths.resolve_resume(self.cfg.resume)
        if self.paths.latest.exists() or self.paths.step_checkpoints():
            raise ValueError(f"{self.out} already holds checkpoints; pass --resume latest to continue that run "
                             "or choose another --output-dir")
        return None

    def _restore(self, path: Path) -> None:
        state = Checkpoint.load(path)
        vl = state.vl or {}
        mine = {"model_config": self.model.encoder.cfg.to_dict(), "head": self.model.head_cfg.to_dict(),
                "answers": self.train_task.answers, "task": self.cfg.task, "batch_size": self.cfg.batch_size,
                "freeze_encoders": self.cfg.freeze_encoders}
        theirs = {"model_config": state.model_config, "batch_size": state.batch_size, **vl}
        changed = [k for k, v in mine.items() if theirs.get(k) != v]
        if changed or not state.resumable:
            raise ValueError(f"{path} is not a resumable checkpoint of this fine-tuning run (it differs in "
                             f"{changed or ['training state']}); resume with the options it was written with")
        self.model.encoder.load_state_dict(state.state_dict)
        self.model.head.load_state_dict(vl["head_state_dict"])
        self.optimizer.load_state_dict(state.optimizer)
        if self.scaler is not None and state.scaler:
            self.scaler.load_state_dict(state.scaler)
        set_rng_state(state.rng[0])
        self.skips = Counter(state.skips[0] if state.skips else {})
        self.step, self.epoch, self.batch_in_epoch = state.step, state.epoch, state.batch_in_epoch
        self.last_checkpoint, self.saved_step = path, self.step
        log.info("resumed from %s at step %d (epoch %d, batch %d)", path, self.step, self.epoch, self.batch_in_epoch)

    def _loader(self, epoch: int, start: int):
        return make_loader(self.train_task, self.transform, self.tokenizer, self.cfg.batch_size,
                           workers=self.cfg.workers, seed=self.cfg.seed, epoch=epoch, start_batch=start)

    def _total_steps(self) -> int:
        per_epoch = self._loader(0, 0).num_batches  # a batch larger than the data fails here
        return self.cfg.steps if self.cfg.steps is not None else per_epoch * self.cfg.epochs

    def run(self) -> dict[str, Any]:
        self.paths.remove_partial_files()
        self.metrics = MetricsWriter(self.out, self.step, self.cfg.tensorboard, train_fields=TRAIN_FIELDS,
                                     val_fields=VAL_FIELDS)
        start_step, started = self.step, time.monotonic()
        self.last_loss, self.val_step = float("nan"), -1
        try:
            with StopSignals() as signals, Progress(self.total_steps, self.step, self.cfg.progress) as bar:
                stopped = self._epochs(signals, bar, started)
                if self.last_checkpoint is None or self.saved_step != self.step:
                    self._save()
                final = self._final_eval() if stopped == "completed" else None
        finally:
            self.metrics.close()
        elapsed = time.monotonic() - started
        return {"steps": self.step, "start_step": start_step, "total_steps": self.total_steps, "stopped": stopped,
                "final_loss": self.last_loss, "final_val": final, "time_s": elapsed,
                "samples_per_s": (self.step - start_step) * self.cfg.batch_size / max(elapsed, 1e-9),
                "skipped": dict(self.skips), "checkpoint": str(self.last_checkpoint), "output_dir": str(self.out)}

    def _epochs(self, signals: StopSignals, bar: Progress, started: float) -> str:
        budget = None if self.cfg.max_minutes is None else self.cfg.max_minutes * 60
        while self.step < self.total_steps:
            loader = self._loader(self.epoch, self.batch_in_epoch)
            epoch_skips, steps_before = self.skips.copy(), self.step
            for batch in loader:
                self._train_step(batch, bar, loader.next_batch)
                self.skips = epoch_skips + Counter(loader.skips)
                reason = "signal" if signals.requested else None
                if budget is not None and time.monotonic() - started >= budget:
                    reason = "time budget"
                if reason or self.step >= self.total_steps:
                    if reason:
                        log.info("stopping at step %d (%s); writing a checkpoint", self.step, reason)
                        return reason
                    break
            self.skips = epoch_skips + Counter(loader.skips)
            if self.step == steps_before and loader.start_batch == 0:
                raise ValueError(f"epoch {self.epoch} of {self.cfg.task!r} gave no usable batch "
                                 f"(skipped: {dict(self.skips) or 'none'})")
            if self.step < self.total_steps:
                self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        return "completed"

    def _train_step(self, batch, bar: Progress, next_batch: int) -> None:
        tick = time.monotonic()
        lr = lr_at(self.step, self.cfg.lr, self.cfg.warmup_steps, self.total_steps)
        set_lr(self.optimizer, lr)
        loss, norm = train_step(self.model, self.optimizer, batch, self.train_task.objective, self.device,
                                self.autocast, self.scaler, self.cfg.grad_clip)
        where = f"step {self.step + 1} (epoch {self.epoch}, batch {next_batch})"
        if not math.isfinite(loss):
            self._diverged(f"loss is {loss} at {where}")
        if self.scaler is None and not math.isfinite(norm):
            self._diverged(f"gradient norm is {norm} at {where}")
        self.step, self.batch_in_epoch, self.last_loss = self.step + 1, next_batch, loss
        rate = len(batch[0]) / max(time.monotonic() - tick, 1e-9)
        self.metrics.train({"step": self.step, "epoch": self.epoch, "loss": self.last_loss, "lr": lr,
                            "grad_norm": norm, "samples_per_s": rate, "elapsed_s": bar.elapsed})
        bar.update(loss=self.last_loss, lr=lr, rate=rate)
        if self.cfg.save_every and self.step % self.cfg.save_every == 0:
            self._save()
        if self.cfg.val_every and self.step % self.cfg.val_every == 0 and self.step < self.total_steps:
            self._validate(self.cfg.val_samples)

    def _diverged(self, what: str) -> None:
        good = self.last_checkpoint or "none (no checkpoint was written yet)"
        raise TrainingDiverged(f"{what}; stopping without saving. The last good checkpoint is {good}. "
                               "Try a lower --lr or --grad-clip 1.0.")

    def _save(self) -> None:
        cfg, model = self.cfg, self.model
        state = Checkpoint(
            model=self.name, model_config=model.encoder.cfg.to_dict(), state_dict=model.encoder.state_dict(),
            vl={"task": cfg.task, "answers": self.train_task.answers, "head": model.head_cfg.to_dict(),
                "head_state_dict": model.head.state_dict(), "freeze_encoders": cfg.freeze_encoders},
            optimizer=self.optimizer.state_dict(),
            scheduler={"step": self.step, "base_lr": cfg.lr, "warmup_steps": cfg.warmup_steps,
                       "total_steps": self.total_steps},
            scaler=self.scaler.state_dict() if self.scaler else None, rng=[rng_state()],
            skips=[dict(self.skips)], step=self.step, epoch=self.epoch, batch_in_epoch=self.batch_in_epoch,
            world_size=1, batch_size=cfg.batch_size, accum_freq=1, config=cfg.to_dict())
        self.paths.save(state, cfg.keep_checkpoints)
        self.last_checkpoint, self.saved_step = self.paths.latest, self.step

    def _validate(self, limit: int) -> tuple[dict[str, float], list[dict]]:
        loader = make_loader(self.val_task, self.transform, self.tokenizer, self.cfg.batch_size,
                             workers=self.cfg.workers, train=False, limit=limit)
        metrics, preds = evaluate(self.model, self.val_task, loader, self.device, self.autocast)
        self.metrics.val({"step": self.step, "epoch": self.epoch, "val_loss": metrics["loss"], **metrics})
        log.info("step %d: val %s", self.step, format_metrics(metrics))
        return metrics, preds

    def _final_eval(self) -> dict[str, Any]:
        metrics, preds = self._validate(self.cfg.val_samples)
        path = write_results(metrics, preds if self.cfg.predictions else None, self.out, self.val_task,
                             self.name, str(self.last_checkpoint))
        return {**metrics, "results": str(path)}
