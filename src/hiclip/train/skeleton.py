"""The run skeleton that pretraining (``hiclip.train.loop``) and fine-tuning (``hiclip.vl.finetune``)
share: where to resume, restoring the training state, the epoch loop and its stop reasons (step
budget, stop signal, time budget), one optimizer step, the divergence message and the checkpoint
save. A run subclasses :class:`RunSkeleton` and keeps only what differs: its loader, the gradients
of its objective, its validation and its checkpoint payload.

The subclass's ``__init__`` sets the attributes listed on :class:`RunSkeleton` (``cfg``, ``info``,
``paths``, ``model``, ``optimizer``, ``opts``) and then calls :meth:`RunSkeleton._start`.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint import Checkpoint, RunPaths, rng_state, set_rng_state
from ..run_config import write_run_config
from .distributed import DistInfo, all_gather_objects, any_rank, barrier
from .progress import Progress, StopSignals
from .scheduler import lr_at, set_lr
from .step import StepOptions, apply_gradients

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The loss (or gradient norm) became NaN or infinite; the run stopped without saving."""


class RunSkeleton:
    """One run on one rank. Set by the subclass before :meth:`_start`: ``cfg`` (a config with the
    shared training fields: ``resume``, ``lr``, ``warmup_steps``, ``batch_size``, ``save_every``,
    ``keep_checkpoints``, ``max_minutes``, ``progress``), ``info`` (:class:`DistInfo`), ``paths``
    (:class:`RunPaths`), ``model`` (the module stepped), ``optimizer`` and ``opts`` (:class:`StepOptions`).
    Hooks: :meth:`_loader`, :meth:`_gradients`, :meth:`_payload`, :meth:`_check_resume`,
    :meth:`_load_payload`; optional: :meth:`_validate`, :meth:`_metrics_row`, :meth:`_finish`.
    """

    cfg: Any
    info: DistInfo
    paths: RunPaths
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    opts: StepOptions
    accum_freq: int = 1
    data_name: str = "the data"

    # --- resume -----------------------------------------------------------------------------------
    def _resume_path(self) -> Path | None:
        """The checkpoint ``cfg.resume`` names (None: a fresh start); refuses a folder that already
        holds checkpoints unless asked to resume."""
        if self.cfg.resume:
            path = self.paths.resolve_resume(self.cfg.resume)
            if path is None and self.info.is_main:
                log.info("--resume latest: no checkpoint in %s yet; starting from scratch", self.paths.checkpoints)
            return path
        if self.paths.latest.exists() or self.paths.step_checkpoints():
            raise ValueError(f"{self.paths.root} already holds checkpoints; pass --resume latest to continue "
                             "that run or choose another --output-dir")
        return None

    def _start(self, resume_path: Path | None) -> None:
        """The counters of a fresh run, then the checkpoint's state when resuming."""
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.skips: Counter = Counter()
        self.last_checkpoint: Path | None = None
        self.saved_step, self.val_step = -1, -1
        if resume_path is not None:
            self._restore(resume_path)

    def _restore(self, path: Path) -> None:
        state = Checkpoint.load(path)
        self._check_resume(state, path)
        self._load_payload(state)
        self.optimizer.load_state_dict(state.optimizer)
        if self.opts.scaler is not None and state.scaler:
            self.opts.scaler.load_state_dict(state.scaler)
        set_rng_state(state.rng[self.info.rank])
        self.skips = Counter(state.skips[self.info.rank] if state.skips else {})
        self.step, self.epoch, self.batch_in_epoch = state.step, state.epoch, state.batch_in_epoch
        self.last_checkpoint, self.saved_step = path, self.step
        if self.info.is_main:
            log.info("resumed from %s at step %d (epoch %d, batch %d)", path, self.step, self.epoch,
                     self.batch_in_epoch)

    def _check_resume(self, state: Checkpoint, path: Path) -> None:
        """Raise ValueError when ``state`` is not a resumable checkpoint of this run."""
        raise NotImplementedError

    def _load_payload(self, state: Checkpoint) -> None:
        """Load the run's own part of ``state`` (model weights, objective or task head)."""
        raise NotImplementedError

    # --- the loop ---------------------------------------------------------------------------------
    def _loader(self, epoch: int, start_batch: int) -> Any:
        """The training batches of ``epoch`` from batch ``start_batch`` (with ``.skips``)."""
        raise NotImplementedError

    def run(self) -> dict[str, Any]:
        """Train to the end (or a stop) -> the run's summary (:meth:`_summary`). Rank 0 writes
        ``run_config.json`` and the metrics; a stop request ends the run with a checkpoint."""
        main = self.info.is_main
        if main:
            self.paths.remove_partial_files()
            write_run_config(self.cfg, self.paths.root)
        self.metrics = self._metrics_writer() if main else None
        start_step, started = self.step, time.monotonic()
        self.last_loss = float("nan")
        try:
            with StopSignals() as signals, Progress(self.total_steps, self.step, main and self.cfg.progress) as bar:
                if start_step == 0:
                    self._at_start()
                stopped = self._epochs(signals, bar, started)
                if self.saved_step != self.step:
                    self._save()
                final = self._finish(stopped)
        finally:
            if self.metrics:
                self.metrics.close()
        elapsed = time.monotonic() - started
        summary = {"steps": self.step, "start_step": start_step, "total_steps": self.total_steps,
                   "epoch": self.epoch, "stopped": stopped, "final_loss": self.last_loss, "final_val": final,
                   "time_s": elapsed}
        return summary | self._summary(start_step, elapsed) | {"checkpoint": str(self.last_checkpoint),
                                                               "output_dir": str(self.paths.root)}

    def _metrics_writer(self) -> Any:
        """The run's :class:`~hiclip.train.metrics.MetricsWriter` (rank 0)."""
        raise NotImplementedError

    def _at_start(self) -> None:
        """What a fresh run (step 0) does before its first step."""

    def _finish(self, stopped: str) -> Any:
        """What the run does after its last save (``final_val`` of the summary)."""
        return None

    def _summary(self, start_step: int, elapsed: float) -> dict[str, Any]:
        """The run's own summary fields (rates, skips)."""
        return {}

    def _epochs(self, signals: StopSignals, bar: Progress, started: float) -> str:
        """Train until the step budget, a stop signal or the time budget; returns why it stopped."""
        budget = None if self.cfg.max_minutes is None else self.cfg.max_minutes * 60
        while self.step < self.total_steps:
            loader = self._loader(self.epoch, self.batch_in_epoch)
            epoch_skips, steps_before, fresh_epoch = self.skips.copy(), self.step, self.batch_in_epoch == 0
            batches = iter(loader)
            while self.step < self.total_steps:
                group = [b for _, b in zip(range(self.accum_freq), batches)]
                if any_rank(len(group) < self.accum_freq, self.info):
                    break
                self._train_step(group, bar, loader)
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
                raise ValueError(self._empty_epoch_message())
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        return "completed"

    def _empty_epoch_message(self) -> str:
        return (f"epoch {self.epoch} of {self.data_name!r} gave fewer than {self.accum_freq} usable batches of "
                f"{self.cfg.batch_size} (skipped: {dict(self.skips) or 'none'}); lower --batch-size or add data")

    def _next_position(self, loader: Any, group: list) -> int:
        """The batch index in the epoch after ``group``."""
        return self.batch_in_epoch + len(group)

    def _train_step(self, group: list, bar: Progress, loader: Any) -> None:
        tick = time.monotonic()
        lr = lr_at(self.step, self.cfg.lr, self.cfg.warmup_steps, self.total_steps)
        set_lr(self.optimizer, lr)
        terms = self._gradients(group)
        loss = terms["loss"]
        position = self._next_position(loader, group)
        where = f"step {self.step + 1} (epoch {self.epoch}, batch {position})"
        if not np.isfinite(loss):
            self.optimizer.zero_grad(set_to_none=True)
            self._diverged(f"loss is {loss} at {where}")
        norm = apply_gradients(self.model, self.optimizer, self.opts)
        if self.opts.scaler is None and not np.isfinite(norm):
            self._diverged(f"gradient norm is {norm} at {where}")
        self.step, self.batch_in_epoch, self.last_loss = self.step + 1, position, loss
        rate = self._samples(group) * self.info.world_size / max(time.monotonic() - tick, 1e-9)
        if self.metrics:
            self.metrics.train({"step": self.step, "epoch": self.epoch, **terms, "lr": lr, **self._metrics_row(),
                                "grad_norm": norm, "samples_per_s": rate, "elapsed_s": bar.elapsed})
        bar.update(loss=loss, lr=lr, rate=rate)
        if self.cfg.save_every and self.step % self.cfg.save_every == 0:
            self._save()
        if self._validation_due():
            self._validate()

    def _gradients(self, group: list) -> dict[str, float]:
        """Forward and backward ``group`` (``accum_freq`` batches) -> the loss terms, ``"loss"`` first."""
        raise NotImplementedError

    def _samples(self, group: list) -> int:
        """Samples of this rank in ``group``."""
        return self.cfg.batch_size * len(group)

    def _metrics_row(self) -> dict[str, float]:
        """Extra columns of a training metrics row."""
        return {}

    def _validation_due(self) -> bool:
        return False

    def _validate(self) -> None:
        """Validate the model at this step (the default: no validation)."""

    def _diverged(self, what: str) -> None:
        good = self.last_checkpoint or "none (no checkpoint was written yet)"
        raise TrainingDiverged(f"{what}; stopping without saving. The last good checkpoint is {good}. "
                               "Try a lower --lr, --grad-clip 1.0 or --precision fp32.")

    # --- saving -----------------------------------------------------------------------------------
    def _payload(self) -> dict[str, Any]:
        """The run's own checkpoint fields: ``model``, ``model_config``, ``state_dict`` and
        ``objective`` or ``vl``."""
        raise NotImplementedError

    def _save(self) -> None:
        per_rank = all_gather_objects((rng_state(), dict(self.skips)), self.info)
        if self.info.is_main:
            cfg = self.cfg
            state = Checkpoint(
                **self._payload(), optimizer=self.optimizer.state_dict(),
                scheduler={"step": self.step, "base_lr": cfg.lr, "warmup_steps": cfg.warmup_steps,
                           "total_steps": self.total_steps},
                scaler=self.opts.scaler.state_dict() if self.opts.scaler else None,
                rng=[r for r, _ in per_rank], skips=[s for _, s in per_rank],
                step=self.step, epoch=self.epoch, batch_in_epoch=self.batch_in_epoch,
                world_size=self.info.world_size, batch_size=cfg.batch_size, accum_freq=self.accum_freq,
                config=cfg.to_dict())
            self.paths.save(state, cfg.keep_checkpoints)
        self.last_checkpoint, self.saved_step = self.paths.latest, self.step
        barrier(self.info)
