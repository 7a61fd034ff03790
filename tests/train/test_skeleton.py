"""The run skeleton shared by pretraining and fine-tuning, on a toy run (a linear model, a fake
loader): the stop reasons, an exact resume, the divergence message, the logit-scale clamp and
the empty-epoch error, each against an independent computation."""
from __future__ import annotations

import dataclasses
import logging
import math
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from hiclip.checkpoint import Checkpoint, RunPaths
from hiclip.train.distributed import DistInfo
from hiclip.train.metrics import MetricsWriter
from hiclip.train.scheduler import lr_at
from hiclip.train.skeleton import RunSkeleton, TrainingDiverged
from hiclip.train.step import MAX_LOGIT_SCALE, StepOptions

BATCHES_PER_EPOCH = 3


@dataclasses.dataclass
class ToyCfg:
    output_dir: str
    steps: int = 7
    resume: str | None = None
    lr: float = 0.1
    warmup_steps: int = 2
    batch_size: int = 4
    save_every: int = 0
    keep_checkpoints: int = 2
    max_minutes: float | None = None
    progress: bool = False
    stop_after: int = 0  # raise SIGTERM (a stop request) in this step (1-based); 0: never
    nan_at: int = 0  # a NaN loss in this step; 0: never
    batches: int = BATCHES_PER_EPOCH

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def batch(epoch: int, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 * epoch + i)
    x = torch.randn(4, 3, generator=g)
    return x, x.sum(dim=1, keepdim=True)


class ToyLoader:
    def __init__(self, epoch: int, start: int, n: int):
        self.epoch, self.start, self.n, self.skips = epoch, start, n, Counter()

    def __iter__(self):
        for i in range(self.start, self.n):
            yield batch(self.epoch, i)


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 1)
        self.logit_scale = nn.Parameter(torch.tensor(MAX_LOGIT_SCALE + 1.0))  # above the bound: the clamp shows

    def forward(self, x):
        return self.lin(x) * self.logit_scale


class ToyRun(RunSkeleton):
    def __init__(self, cfg: ToyCfg):
        self.cfg, self.info, self.paths = cfg, DistInfo(), RunPaths(cfg.output_dir)
        resume = self._resume_path()
        torch.manual_seed(0)
        self.model = Toy()
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=cfg.lr)
        self.opts = StepOptions(self.info)
        self._start(resume)
        self.total_steps = cfg.steps

    def _check_resume(self, state, path):
        assert state.resumable

    def _load_payload(self, state):
        self.model.load_state_dict(state.state_dict)

    def _payload(self):
        return {"model": "toy", "model_config": {}, "state_dict": self.model.state_dict()}

    def _loader(self, epoch, start_batch):
        return ToyLoader(epoch, start_batch, self.cfg.batches)

    def _metrics_writer(self):
        return MetricsWriter(self.paths.root, self.step, False)

    def _gradients(self, group):
        (x, y), = group
        loss = ((self.model(x) - y) ** 2).mean()
        if self.step + 1 == self.cfg.nan_at:
            loss = loss * float("nan")
        loss.backward()
        if self.step + 1 == self.cfg.stop_after:
            signal.raise_signal(signal.SIGTERM)  # handled at once: a stop request in this step
        return {"loss": loss.item()}


def reference(steps: int, cfg: ToyCfg) -> dict[str, torch.Tensor]:
    """The same training written out plainly: epochs of BATCHES_PER_EPOCH batches, the warm-up +
    cosine learning rate, SGD, the clamp of ``logit_scale``."""
    torch.manual_seed(0)
    model = Toy()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    for step in range(steps):
        x, y = batch(step // cfg.batches, step % cfg.batches)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg.lr, cfg.warmup_steps, cfg.steps)
        ((model(x) - y) ** 2).mean().backward()
        opt.step()
        opt.zero_grad()
        with torch.no_grad():
            model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
    return model.state_dict()


def close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.allclose(a[k], b[k], rtol=1e-6, atol=1e-7) for k in a)


def test_a_run_matches_the_plain_loop_and_clamps_the_scale(tmp_path: Path):
    cfg = ToyCfg(str(tmp_path / "run"))
    summary = ToyRun(cfg).run()
    assert summary["stopped"] == "completed" and summary["steps"] == 7 and summary["epoch"] == 2
    state = Checkpoint.load(summary["checkpoint"])
    assert (state.step, state.epoch, state.batch_in_epoch) == (7, 2, 1)
    assert close(state.state_dict, reference(7, cfg))
    assert state.state_dict["logit_scale"] <= MAX_LOGIT_SCALE
    assert (tmp_path / "run" / "run_config.json").is_file()


def test_a_stop_request_saves_and_the_resume_is_exact(tmp_path: Path, caplog):
    out = str(tmp_path / "run")
    stopped = ToyRun(ToyCfg(out, stop_after=4)).run()
    assert stopped["stopped"] == "signal" and stopped["steps"] == 4
    assert Checkpoint.load(RunPaths(out).latest).step == 4
    with pytest.raises(ValueError, match="already holds checkpoints; pass --resume latest"):
        ToyRun(ToyCfg(out))
    with caplog.at_level(logging.INFO):
        resumed = ToyRun(ToyCfg(out, resume="latest")).run()
    assert "resumed from" in caplog.text and resumed["start_step"] == 4 and resumed["stopped"] == "completed"
    assert close(Checkpoint.load(resumed["checkpoint"]).state_dict, reference(7, ToyCfg(out)))


def test_resume_latest_in_an_empty_folder_starts_from_scratch(tmp_path: Path, caplog):
    with caplog.at_level(logging.INFO):
        summary = ToyRun(ToyCfg(str(tmp_path / "run"), resume="latest", steps=2)).run()
    assert "no checkpoint in" in caplog.text and summary["start_step"] == 0 and summary["steps"] == 2


def test_divergence_names_the_step_and_the_last_good_checkpoint(tmp_path: Path):
    out = str(tmp_path / "run")
    with pytest.raises(TrainingDiverged, match=r"loss is nan at step 3 \(epoch 0, batch 3\).*"
                                               r"none \(no checkpoint was written yet\).*--precision fp32"):
        ToyRun(ToyCfg(out, nan_at=3)).run()
    with pytest.raises(TrainingDiverged, match=r"loss is nan at step 5 \(epoch 1, batch 2\).*latest\.pt"):
        ToyRun(ToyCfg(out + "2", nan_at=5, save_every=2)).run()


def test_an_epoch_without_a_batch_is_an_error_not_a_hang(tmp_path: Path):
    with pytest.raises(ValueError, match="epoch 0 of 'the data' gave fewer than 1 usable batches of 4"):
        ToyRun(ToyCfg(str(tmp_path / "run"), batches=0)).run()


def test_the_saved_loss_matches_the_reference_loss(tmp_path: Path):
    summary = ToyRun(ToyCfg(str(tmp_path / "run"), steps=1)).run()
    torch.manual_seed(0)
    x, y = batch(0, 0)
    assert math.isclose(summary["final_loss"], ((Toy()(x) - y) ** 2).mean().item(), rel_tol=1e-6)
