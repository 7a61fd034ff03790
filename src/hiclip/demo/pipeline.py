"""The main job: train HiCLIP-Tiny and CLIP-Tiny alike on the embedded world, evaluate both,
induce hierarchies, and write a report (`make demo`, `hiclip demo`).

Every stage writes its result under ``DemoConfig.out`` and is skipped when rerun, so an
interrupted demo continues where it stopped (training itself resumes from its latest
checkpoint).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import factory
from ..config import option
from ..checkpoint import RunPaths, run_name
from ..runlock import folder_lock
from ..eval.run import evaluate_model
from ..induce.run import induce_eval
from ..train.config import TrainConfig
from ..train.loop import train
from ..vl.study import VLStudyConfig, run_vl_study
from .report import write_report

EVAL_TASKS = ("zeroshot_classification", "zeroshot_retrieval", "compositional")


@dataclass
class DemoConfig:
    """Options of the demo; the defaults are the recipe the README's numbers come from.

    ``vl``: also fine-tune every pretrained run on world-vqa and world-ve
    (:func:`hiclip.vl.run_vl_study`, ``vl_steps`` steps on ``vl_samples`` generated examples per
    task, scored on ``vl_eval_samples`` test and held-out examples) and add the accuracies to
    the report."""

    out: str = option("demo_out", "output directory")
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
        unknown = [m for m in self.models if m not in factory.list_models()]
        if unknown:
            raise ValueError(f"unknown model(s) {', '.join(unknown)}; `hiclip models` lists them")

    @property
    def seed_list(self) -> list[int]:
        return [self.seed + i for i in range(self.seeds)]


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    tmp.replace(path)


def train_config(cfg: DemoConfig, model: str, seed: int, steps: int) -> TrainConfig:
    """The demo's training recipe for one run (the ablations in experiments/ use it too)."""
    return TrainConfig(output_dir=str(Path(cfg.out) / "runs" / run_name(model, seed)), model=model, seed=seed,
                       steps=steps, batch_size=cfg.batch_size, lr=cfg.lr, warmup_steps=cfg.warmup_steps,
                       workers=cfg.workers, resume="latest", save_every=max(steps // 4, 1),
                       val_every=max(steps // 8, 1), val_samples=cfg.val_samples, device=cfg.device, progress=cfg.progress,
                       tensorboard=True)


def seconds_per_step(model: str, batch_size: int, device: str, repeats: int = 2) -> float:
    """A quick probe of one training step of ``model`` on random data (forward + backward + AdamW)."""
    torch.manual_seed(0)
    net = factory.create_model(model, device=device).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    size, ctx = net.cfg.vision_cfg.image_size, net.context_length
    images = torch.randn(batch_size, 3, size, size, device=device)
    tokens = torch.zeros(batch_size, ctx, dtype=torch.long, device=device)
    tokens[:, 0], tokens[:, 1:16], tokens[:, 16] = 49406, 320, 49407

    def step() -> None:
        out = net(images, tokens)
        loss = -(out["image_features"] * out["text_features"]).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    t0 = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - t0) / repeats


def plan_steps(cfg: DemoConfig, timed: dict[str, float] | None = None) -> dict[str, Any]:
    """The step plan: ``cfg.steps`` for every run, on every machine. The timing probe only
    estimates how long training will take here (printed up front); it never changes the plan.
    ``timed``: seconds per step already measured (models in it are not timed again)."""
    per_step = dict(timed or {})
    per_step |= {m: seconds_per_step(m, cfg.batch_size, cfg.device) for m in cfg.models if m not in per_step}
    overhead = 1.15  # data pipeline, validation and checkpoints on top of the bare step
    estimate = overhead * cfg.seeds * cfg.steps * sum(per_step[m] for m in cfg.models)
    return {"steps": cfg.steps, "seconds_per_step": per_step, "estimated_train_minutes": estimate / 60}


def _load_plan(cfg: DemoConfig, path: Path) -> dict[str, Any]:
    """The stored plan of an earlier (interrupted or smaller) demo in the same folder, with any
    new model's step timed; a new plan when there is none. Another step count in the same folder
    is an error: its runs were scheduled for the stored one."""
    stored = json.loads(path.read_text()) if path.is_file() else {"steps": cfg.steps, "seconds_per_step": {}}
    if stored["steps"] != cfg.steps:
        raise ValueError(f"{path.parent} holds a demo planned for {stored['steps']} steps per run, not "
                         f"{cfg.steps}: use another --out for another plan (or --steps {stored['steps']})")
    if any(m not in stored["seconds_per_step"] for m in cfg.models):
        print("timing one training step of each model, to estimate the run time ...", flush=True)
    plan = plan_steps(cfg, stored["seconds_per_step"])
    if plan["seconds_per_step"] != stored["seconds_per_step"]:
        _write_json(path, plan | {"config": asdict(cfg)})
    return plan


def run_vl_stage(cfg: DemoConfig) -> dict[str, Any]:
    """Fine-tune every pretrained run alike on the world's VQA and entailment tasks
    (results under ``cfg.out/vl``; finished runs are skipped on a rerun)."""
    out = Path(cfg.out)
    checkpoints = {m: {s: str(RunPaths(out / "runs" / run_name(m, s)).latest) for s in cfg.seed_list}
                   for m in cfg.models}
    return run_vl_study(checkpoints, VLStudyConfig(out=str(out / "vl"), steps=cfg.vl_steps,
                                                   batch_size=cfg.batch_size, world_samples=cfg.vl_samples,
                                                   eval_samples=cfg.vl_eval_samples, workers=cfg.workers,
                                                   device=cfg.device, progress=cfg.progress))


_T0 = time.monotonic()


def _stage(n: int, total: int, what: str) -> None:
    print(f"\n[{n}/{total}] {time.monotonic() - _T0:6.0f}s  {what}", flush=True)


def run_demo(cfg: DemoConfig) -> Path:
    """Run (or continue) the demo; returns the path of ``report.md``."""
    with folder_lock(cfg.out):  # one writer per demo folder
        return _run_demo(cfg)


def _run_demo(cfg: DemoConfig) -> Path:
    out = Path(cfg.out)
    started = time.time()
    plan = _load_plan(cfg, out / "plan.json")
    steps = plan["steps"]
    print(f"plan: {len(cfg.models)} models x {cfg.seeds} seeds x {steps} steps of {cfg.batch_size} pairs; "
          f"training is expected to take about {plan['estimated_train_minutes']:.0f} min on this machine", flush=True)
    runs = [(m, s) for s in cfg.seed_list for m in cfg.models]
    total, n = 3 * len(runs) + 1 + int(cfg.vl), 0
    for model, seed in runs:
        name = run_name(model, seed)
        done = out / "runs" / name / "summary.json"
        n += 1
        _stage(n, total, f"train {model}, seed {seed}, {steps} steps of {cfg.batch_size}")
        if not done.is_file():
            summary = train(train_config(cfg, model, seed, steps))
            if summary["steps"] < steps:
                raise RuntimeError(f"training {name} stopped at step {summary['steps']} ({summary['stopped']}); "
                                   "rerun the demo to continue")
            _write_json(done, summary)
    for model, seed in runs:
        name = run_name(model, seed)
        ckpt = RunPaths(out / "runs" / name).latest
        eval_path, induce_path = out / "eval" / name / "records.json", out / "induce" / f"{name}.json"
        loaded = None
        if not (eval_path.is_file() and induce_path.is_file()):  # one load serves both stages
            loaded = factory.load_for_inference(model, ckpt, cfg.device)
        n += 1
        _stage(n, total, f"evaluate {name}")
        if not eval_path.is_file():
            net, transform, tokenizer = loaded
            records = evaluate_model(net, transform, tokenizer, model_name=model, pretrained=str(ckpt),
                                     tasks=EVAL_TASKS, datasets=("world",), output_dir=eval_path.parent,
                                     verbose=False, batch_size=128, device=cfg.device,
                                     world_size=cfg.eval_samples, seed=0,
                                     world_image_size=net.cfg.vision_cfg.image_size)
            _write_json(eval_path, records)
        n += 1
        _stage(n, total, f"induce hierarchies of {name}")
        if not induce_path.is_file():
            net, transform, tokenizer = loaded
            report = (induce_eval(net, transform, tokenizer, n=cfg.induce_samples, seed=0, progress=cfg.progress,
                                  tune_split="val") if net.has_hierarchy else {"no_hierarchy": True})
            _write_json(induce_path, report)
    if cfg.vl:
        n += 1
        _stage(n, total, f"fine-tune every run on world-vqa and world-ve, {cfg.vl_steps} steps each")
        run_vl_stage(cfg)
    n += 1
    _stage(n, total, "write the report")
    timing_path = out / "wall_time.json"
    before = json.loads(timing_path.read_text())["seconds"] if timing_path.is_file() else 0.0
    _write_json(timing_path, {"seconds": before + time.time() - started})
    path = write_report(cfg, plan, elapsed_s=before + time.time() - started)
    print(f"\nreport: {path}  (and {path.with_suffix('.html')})")
    return path
