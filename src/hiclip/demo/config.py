"""The options of the demo (:func:`hiclip.demo.run_demo`, `hiclip demo`), apart from the pipeline so
that the report, the layout and the experiments read them without importing the training stack."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .. import factory
from ..config import option


@dataclass
class DemoConfig:
    """Options of the demo; the defaults are the recipe the README's numbers come from.

    ``vl``: also fine-tune every pretrained run on world-vqa and world-ve
    (:func:`hiclip.vl.run_vl_study`, ``vl_steps`` steps on ``vl_samples`` generated examples per
    task, scored on ``vl_eval_samples`` test and held-out examples) and add the accuracies to
    the report."""

    out: str = option("demo_out", "output directory")
    data: str = option("world", "image-caption set to train and test on: world (the embedded one, with gold "
                                "hierarchies, zero-shot and compositional tests), csv:FILE or wds:PATTERN (split "
                                "80/10/10 by a stable hash of each image; bad rows counted and skipped), or "
                                "csv:FOLDER holding train.csv, val.csv and test.csv (splits as given)")
    classes: str | None = option(None, "with --data: an image folder FOLDER/<class>/* (or with FOLDER/test) to "
                                       "score zero-shot classification on", metavar="FOLDER")
    seeds: int = option(3, "seeds per model, for mean ± sd")
    seed: int = option(0, "first seed")
    device: str = option("cpu", "torch device")
    models: tuple[str, ...] = option(("HiCLIP-Tiny", "CLIP-Tiny"), "built-in models trained alike; with more than "
                                     "two, the report compares every pair that differs only in hierarchy or only "
                                     "in objective, e.g. CLIP-Tiny HiCLIP-Tiny DeCLIP-Tiny HiDeCLIP-Tiny",
                                     metavar="MODEL")
    steps: int = option(200, "training steps per run: the same plan on every machine; the expected time is "
                             "printed before training")
    batch_size: int = option(64, "batch size of every training run", cli=False)
    lr: float = option(1e-3, "peak learning rate of both models")
    warmup_steps: int = option(40, "warm-up steps of every training run", cli=False)
    eval_samples: int = option(500, "samples per evaluation dataset")
    induce_samples: int = option(300, "captions / images scored for induced hierarchies; as many validation "
                                      "samples choose the read-outs")
    val_samples: int = option(256, "validation samples of every training run", cli=False)
    workers: int = option(1, "data-loading workers of every training run", cli=False)
    progress: bool = option(True, "show progress bars")
    commands: list[str] = field(default_factory=list, metadata={"cli": False})
    vl: bool = option(False, "also fine-tune every pretrained run on world-vqa and world-ve and report the "
                             "accuracies beside the text-only baselines")
    vl_steps: int = option(600, "fine-tuning steps per run and task with --vl (chosen on world-ve val; docs/design.md §4)")
    vl_samples: int = option(20_000, "generated training examples per VL task", cli=False)
    vl_eval_samples: int = option(1000, "test and held-out examples per VL task", cli=False)

    def __post_init__(self) -> None:
        """Bad values fail here, before the timing probe or any training."""
        for name in ("seeds", "steps", "batch_size", "eval_samples", "induce_samples", "val_samples", "vl_steps",
                     "vl_samples", "vl_eval_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "workers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not (self.data == "world" or self.data.startswith(("csv:", "wds:"))):
            raise ValueError(f"data must be world, csv:FILE, csv:FOLDER or wds:PATTERN, got {self.data!r}")
        if self.classes is not None and self.data == "world":
            raise ValueError("--classes scores a user's class folder; it goes with --data csv:... or wds:...")
        if self.vl and self.data != "world":
            raise ValueError("--vl fine-tunes on the world's VQA and entailment tasks; it needs --data world")
        unknown = [m for m in self.models if m not in factory.list_models()]
        if unknown:
            raise ValueError(f"unknown model(s) {', '.join(unknown)}; `hiclip models` lists them")

    @property
    def world(self) -> bool:
        """Whether the demo runs on the embedded world (else on the user's ``data``)."""
        return self.data == "world"

    @property
    def seed_list(self) -> list[int]:
        return [self.seed + i for i in range(self.seeds)]

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> "DemoConfig":
        """A config stored by an earlier demo (``asdict``); fields it lacks keep their defaults,
        fields this version does not know are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: (tuple(v) if k == "models" else v) for k, v in stored.items() if k in known}
        return cls(**values)
