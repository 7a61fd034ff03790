"""``train(cfg)``: the training run, from a data spec to checkpoints and metrics."""
from __future__ import annotations

import contextlib
import logging
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from ..checkpoint import Checkpoint, RunPaths, rng_state, set_rng_state
from ..config import ModelCfg
from ..data import loader as data_loader
from ..factory import create_model_and_transforms, get_tokenizer, load_config
from ..run_config import write_run_config
from ..runlock import folder_lock
from .config import TrainConfig
from .distributed import DistInfo, all_gather_objects, any_rank, barrier, cleanup, init_distributed, mean_over_ranks
from .evaluate import validate
from .metrics import MetricsWriter
from .progress import Progress, StopSignals
from .scheduler import lr_at, set_lr
from .optim import make_optimizer
from .objective import Objective, model_config
from .step import StepOptions, apply_gradients, autocast_factory, backward_step, make_scaler, unwrap

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The loss (or gradient norm) became NaN or infinite; the run stopped without saving."""


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


class _Run:
    """State of one run on one rank."""

    def __init__(self, cfg: TrainConfig, info: DistInfo, make_loader: Callable):
        self.cfg, self.info = cfg, info
        self.out = Path(cfg.output_dir)
        self.paths = RunPaths(self.out)
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
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.skips: Counter = Counter()
        self.last_checkpoint: Path | None = None
        self.saved_step, self.val_step = -1, -1
        if resume_path is not None:
            self._restore(model, resume_path)
        module = self.objective.module
        self.model = (DistributedDataParallel(module, device_ids=[info.device] if info.device.type == "cuda" else None)
                      if info.distributed else module)
        self.total_steps = self._total_steps()

    def _resume_path(self) -> Path | None:
        if self.cfg.resume:
            path = self.paths.resolve_resume(self.cfg.resume)
            if path is None:
                log.info("--resume latest: no checkpoint in %s yet; starting from scratch", self.paths.checkpoints)
            return path
        if self.paths.latest.exists() or self.paths.step_checkpoints():
            raise ValueError(f"{self.out} already holds checkpoints; pass --resume latest to continue that run "
                             "or choose another --output-dir")
        return None

    def _restore(self, model: torch.nn.Module, path: Path) -> None:
        state = Checkpoint.load(path)
        if not state.resumable:
            raise ValueError(f"{path} holds weights without training state; "
                             "to start from its weights use --pretrained instead of --resume")
        # compared as configs, so that a field added since the checkpoint (at its default) is no difference
        if ModelCfg.from_dict(state.model_config).to_dict() != model.cfg.to_dict():
            raise ValueError(f"{path} is a checkpoint of model {state.model!r}, whose config differs from "
                             f"this run's model {self.cfg.model!r}; resume with --model {state.model}")
        layout = {"world_size": self.info.world_size, "batch_size": self.cfg.batch_size,
                  "accum_freq": self.cfg.accum_freq}
        changed = ", ".join(f"{k}: {getattr(state, k)} -> {v}" for k, v in layout.items() if getattr(state, k) != v)
        if changed:
            raise ValueError(f"{path} was written with a different data layout ({changed}); "
                             "an exact resume needs the same world size, batch size and accum freq")
        model.load_state_dict(state.state_dict)
        self.optimizer.load_state_dict(state.optimizer)
        if self.opts.scaler is not None and state.scaler:
            self.opts.scaler.load_state_dict(state.scaler)
        set_rng_state(state.rng[self.info.rank])
        self.objective.load_state_dict(state.objective or None)
        self.skips = Counter(state.skips[self.info.rank] if state.skips else {})
        self.step, self.epoch, self.batch_in_epoch = state.step, state.epoch, state.batch_in_epoch
        self.last_checkpoint, self.saved_step = path, self.step
        if self.info.is_main:
            log.info("resumed from %s at step %d (epoch %d, batch %d)", path, self.step, self.epoch,
                     self.batch_in_epoch)

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

    def run(self) -> dict[str, Any]:
        main = self.info.is_main
        if main:
            self.paths.remove_partial_files()
            write_run_config(self.cfg, self.out)
        self.metrics = MetricsWriter(self.out, self.step, self.cfg.tensorboard, self.objective.terms) if main else None
        start_step, started = self.step, time.monotonic()
        self.last_val: dict[str, float] | None = None
        self.last_loss = float("nan")
        try:
            with StopSignals() as signals, Progress(self.total_steps, self.step, main and self.cfg.progress) as bar:
                if start_step == 0:
                    self._validate()
                stopped = self._epochs(signals, bar, started)
                if self.saved_step != self.step:
                    self._save()
                if stopped == "completed" and self.val_step != self.step:  # a stop request must be quick
                    self._validate()
        finally:
            if self.metrics:
                self.metrics.close()
        elapsed = time.monotonic() - started
        skipped = sum((Counter(s) for s in all_gather_objects(dict(self.skips), self.info)), Counter())
        pairs = (self.step - start_step) * self.cfg.batch_size * self.cfg.accum_freq * self.info.world_size
        return {"steps": self.step, "start_step": start_step, "total_steps": self.total_steps, "epoch": self.epoch,
                "stopped": stopped, "final_loss": self.last_loss, "final_val": self.last_val,
                "time_s": elapsed, "pairs_per_s": pairs / max(elapsed, 1e-9), "skipped": dict(skipped),
                "checkpoint": str(self.last_checkpoint), "output_dir": str(self.out)}

    def _epochs(self, signals: StopSignals, bar: Progress, started: float) -> str:
        """Train until the step budget, a stop signal or the time budget; returns why it stopped."""
        budget = None if self.cfg.max_minutes is None else self.cfg.max_minutes * 60
        while self.step < self.total_steps:
            loader = self._loader(self.epoch, self.batch_in_epoch)
            epoch_skips, steps_before, fresh_epoch = self.skips.copy(), self.step, self.batch_in_epoch == 0
            batches = iter(loader)
            while self.step < self.total_steps:
                group = [b for _, b in zip(range(self.cfg.accum_freq), batches)]
                if any_rank(len(group) < self.cfg.accum_freq, self.info):
                    break
                self._train_step(group, bar)
                self.skips = epoch_skips + Counter(loader.skips)
                reason = "signal" if signals.requested else None
                if budget is not None and time.monotonic() - started >= budget:
                    reason = "time budget"
                if any_rank(reason is not None, self.info):
                    if self.info.is_main:
                        log.info("stopping at step %d (%s); writing a checkpoint", self.step, reason or "signal")
                    return reason or "signal"
            self.skips = epoch_skips + Counter(loader.skips)
            if self.step >= self.total_steps:
                break
            if fresh_epoch and self.step == steps_before:
                raise ValueError(f"epoch {self.epoch} of {self.cfg.data!r} gave fewer than {self.cfg.accum_freq} "
                                 f"batches of {self.cfg.batch_size}; lower --batch-size or add data")
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        return "completed"

    def _train_step(self, group: list, bar: Progress) -> None:
        tick = time.monotonic()
        lr = lr_at(self.step, self.cfg.lr, self.cfg.warmup_steps, self.total_steps)
        set_lr(self.optimizer, lr)
        terms = {k: float(mean_over_ranks(v, self.info))
                 for k, v in backward_step(self.model, group, self.opts, self.epoch).items()}
        loss = terms["loss"]
        where = f"step {self.step + 1} (epoch {self.epoch}, batch {self.batch_in_epoch + len(group)})"
        if not np.isfinite(loss):
            self._diverged(f"loss is {loss} at {where}")
        norm = apply_gradients(self.model, self.optimizer, self.opts)
        if self.opts.scaler is None and not np.isfinite(norm):
            self._diverged(f"gradient norm is {norm} at {where}")
        self.step, self.batch_in_epoch, self.last_loss = self.step + 1, self.batch_in_epoch + len(group), loss
        rate = self.cfg.batch_size * len(group) * self.info.world_size / max(time.monotonic() - tick, 1e-9)
        if self.metrics:
            self.metrics.train({"step": self.step, "epoch": self.epoch, **terms, "lr": lr,
                                "logit_scale": unwrap(self.model).logit_scale.exp().item(), "grad_norm": norm,
                                "samples_per_s": rate, "elapsed_s": bar.elapsed})
        bar.update(loss=loss, lr=lr, rate=rate)
        if self.cfg.save_every and self.step % self.cfg.save_every == 0:
            self._save()
        if self.val_spec is not None and self.step % self.cfg.val_every == 0:
            self._validate()

    def _diverged(self, what: str) -> None:
        good = self.last_checkpoint or "none (no checkpoint was written yet)"
        raise TrainingDiverged(f"{what}; stopping without saving. The last good checkpoint is {good}. "
                               "Try a lower --lr, --grad-clip 1.0 or --precision fp32.")

    def _save(self) -> None:
        per_rank = all_gather_objects((rng_state(), dict(self.skips)), self.info)
        if self.info.is_main:
            model = unwrap(self.model)
            state = Checkpoint(
                model=self.cfg.model, model_config=model.cfg.to_dict(), state_dict=model.state_dict(),
                optimizer=self.optimizer.state_dict(),
                scheduler={"step": self.step, "base_lr": self.cfg.lr, "warmup_steps": self.cfg.warmup_steps,
                           "total_steps": self.total_steps},
                scaler=self.opts.scaler.state_dict() if self.opts.scaler else None,
                rng=[r for r, _ in per_rank], skips=[s for _, s in per_rank],
                step=self.step, epoch=self.epoch, batch_in_epoch=self.batch_in_epoch,
                world_size=self.info.world_size, batch_size=self.cfg.batch_size,
                accum_freq=self.cfg.accum_freq, config=self.cfg.to_dict(), objective=self.objective.state_dict() or {})
            self.paths.save(state, self.cfg.keep_checkpoints)
        self.last_checkpoint, self.saved_step = self.paths.latest, self.step
        barrier(self.info)

    def _validate(self) -> None:
        if self.val_spec is None:
            return
        self.val_step = self.step
        if self.info.is_main:
            result = validate(unwrap(self.model), self._loader(0, 0, split="val"), self.info.device,
                              self.cfg.val_samples, self.opts.autocast)
            self.last_val = {"step": self.step, "epoch": self.epoch, **result}
            self.metrics.val(self.last_val)
            log.info("step %d: val loss %.4f, R@1 image->text %.3f, text->image %.3f",
                     self.step, result["val_loss"], result["i2t_r1"], result["t2i_r1"])
        barrier(self.info)
