"""Where a demo folder keeps what, and the typed records read back from it.

One place names every path of a demo folder (:class:`DemoLayout`); the pipeline writes there,
the report, the figures, ``hiclip report`` and ``experiments/`` read there::

    OUT/demo.json                      the DemoConfig of the last report (DemoConfig.from_dict)
    OUT/plan.json                      the step plan (Plan)
    OUT/wall_time.json                 {"seconds": wall time summed over invocations}
    OUT/data/{train,val,test}.csv      with ``--data``: the splits (hiclip.data.splits.write_splits), splits.json
    OUT/runs/<model>-s<seed>/          a `hiclip train` run (checkpoint.RunPaths), its summary.json (RunSummary)
    OUT/eval/<model>-s<seed>/records.json   `hiclip eval` records of the run
    OUT/induce/<model>-s<seed>.json    the run's `hiclip induce-eval` report
    OUT/vl/study.json                  the fine-tuning study (``--vl``), hiclip.vl.run_vl_study's layout below it
    OUT/figures/                       the report's pictures; pictures.json lists the trees and groups drawn (Pictures)
    OUT/report.md, report.html
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..checkpoint import RunPaths, run_name
from ..induce.run import flatten_report


@dataclass(frozen=True)
class DemoLayout:
    """The paths of one demo folder (module docstring); runs are named ``<model>-s<seed>``."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def run(self, model: str, seed: int) -> RunPaths:
        return RunPaths(self.root / "runs" / run_name(model, seed))

    def summary(self, model: str, seed: int) -> Path:
        return self.run(model, seed).root / "summary.json"

    def eval_records(self, model: str, seed: int) -> Path:
        return self.root / "eval" / run_name(model, seed) / "records.json"

    def induce_report(self, model: str, seed: int) -> Path:
        return self.root / "induce" / f"{run_name(model, seed)}.json"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def config(self) -> Path:
        return self.root / "demo.json"

    @property
    def plan(self) -> Path:
        return self.root / "plan.json"

    @property
    def wall_time(self) -> Path:
        return self.root / "wall_time.json"

    @property
    def vl(self) -> Path:
        return self.root / "vl"

    @property
    def vl_study(self) -> Path:
        return self.vl / "study.json"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    @property
    def pictures(self) -> Path:
        return self.figures / "pictures.json"

    @property
    def report(self) -> Path:
        return self.root / "report.md"


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    tmp.replace(path)


def _read(path: Path) -> Any:
    return json.loads(path.read_text())


@dataclass
class Plan:
    """The step plan: ``steps`` per run on every machine; the measured seconds per step of each
    model only estimate the training time. ``config``: the options of the invocation that wrote it."""

    steps: int
    seconds_per_step: dict[str, float]
    estimated_train_minutes: float | None = None
    config: dict[str, Any] | None = None

    @classmethod
    def read(cls, path: Path) -> "Plan":
        d = _read(path)
        return cls(d["steps"], d["seconds_per_step"], d.get("estimated_train_minutes"), d.get("config"))

    def write(self, path: Path) -> None:
        write_json(path, asdict(self))


@dataclass
class RunSummary:
    """What the report needs of a training run's summary (``hiclip.train.train``'s return value)."""

    steps: int
    final_loss: float
    pairs_per_s: float
    time_s: float
    val_i2t_r1: float | None = None

    @classmethod
    def read(cls, path: Path) -> "RunSummary":
        d = _read(path)
        return cls(d["steps"], d["final_loss"], d["pairs_per_s"], d["time_s"], (d.get("final_val") or {}).get("i2t_r1"))


@dataclass
class Pictures:
    """The caption trees and image groups drawn for the report: (caption, induced, gold) image
    paths relative to the demo folder."""

    model: str
    seed: int
    trees: list[tuple[str, str, str]] = field(default_factory=list)
    groups: list[tuple[str, str, str]] = field(default_factory=list)

    @classmethod
    def read(cls, path: Path) -> "Pictures":
        d = _read(path)
        return cls(d["model"], d["seed"], [tuple(x) for x in d["trees"]], [tuple(x) for x in d["groups"]])

    def write(self, path: Path) -> None:
        write_json(path, asdict(self))


EvalMetrics = dict[tuple[str, str], dict[str, float]]
"""(task, dataset) -> the metrics of one `hiclip eval` record."""


def read_eval(path: Path) -> EvalMetrics:
    return {(r["task"], r["dataset"]): r["metrics"] for r in _read(path)}


def read_induce(path: Path) -> dict[str, Any]:
    """An induce report's headline scores (:func:`hiclip.induce.run.flatten_report`); {} for a model
    without hierarchy."""
    return flatten_report(_read(path))


def read_wall_time(path: Path) -> float:
    """Seconds of demo wall time summed over invocations (0 before the first report)."""
    return _read(path)["seconds"] if path.is_file() else 0.0
