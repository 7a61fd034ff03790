"""The main job: train HiCLIP-Tiny and CLIP-Tiny alike on the embedded world, evaluate both,
induce hierarchies, and write a report (`make demo`, `hiclip demo`). With ``--data`` the same
study runs on the user's captioned images: split by a stable hash of each image (or as given),
trained alike, scored on the test split's retrieval (and zero-shot on ``--classes``); there is
no gold hierarchy there, so nothing is induced.

Every stage writes its result under ``DemoConfig.out`` (paths: :class:`DemoLayout`) and is
skipped when rerun, so an interrupted demo continues where it stopped (training itself resumes
from its latest checkpoint).
"""
from __future__ import annotations

import csv
import time
from dataclasses import asdict
from pathlib import Path

import torch

from .. import factory
from ..runlock import folder_lock
from ..eval.run import evaluate_model
from ..induce.run import induce_eval
from ..train.config import TrainConfig
from ..data.splits import write_splits
from ..train.loop import train
from ..vl.study import VLStudyConfig, run_vl_study
from .config import DemoConfig
from .figures import hierarchy_pictures
from .layout import DemoLayout, Plan, read_wall_time, write_json
from .report import stored_config, write_report

EVAL_TASKS = ("zeroshot_classification", "zeroshot_retrieval", "compositional")


def data_splits(cfg: DemoConfig) -> dict[str, Path] | None:
    """``{split: csv}`` of ``cfg.data`` (written once under ``OUT/data``); None on the world."""
    return None if cfg.world else write_splits(cfg.data, DemoLayout(cfg.out).data)


def train_config(cfg: DemoConfig, model: str, seed: int, steps: int) -> TrainConfig:
    """The demo's training recipe for one run (the ablations in experiments/ use it too)."""
    splits = data_splits(cfg)
    data = {} if splits is None else {"data": f"csv:{splits['train']}", "val_data": f"csv:{splits['val']}"}
    return TrainConfig(output_dir=str(DemoLayout(cfg.out).run(model, seed).root), model=model, seed=seed, **data,
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


def plan_steps(cfg: DemoConfig, timed: dict[str, float] | None = None) -> Plan:
    """The step plan: ``cfg.steps`` for every run, on every machine. The timing probe only
    estimates how long training will take here (printed up front); it never changes the plan.
    ``timed``: seconds per step already measured (models in it are not timed again)."""
    per_step = dict(timed or {})
    per_step |= {m: seconds_per_step(m, cfg.batch_size, cfg.device) for m in cfg.models if m not in per_step}
    overhead = 1.15  # data pipeline, validation and checkpoints on top of the bare step
    estimate = overhead * cfg.seeds * cfg.steps * sum(per_step[m] for m in cfg.models)
    return Plan(cfg.steps, per_step, estimate / 60)


def _load_plan(cfg: DemoConfig, layout: DemoLayout) -> Plan:
    """The stored plan of an earlier (interrupted or smaller) demo in the same folder, with any
    new model's step timed; a new plan when there is none. Another step count in the same folder
    is an error: its runs were scheduled for the stored one."""
    stored = Plan.read(layout.plan) if layout.plan.is_file() else Plan(cfg.steps, {})
    if stored.steps != cfg.steps:
        raise ValueError(f"{layout.root} holds a demo planned for {stored.steps} steps per run, not "
                         f"{cfg.steps}: use another --out for another plan (or --steps {stored.steps})")
    if any(m not in stored.seconds_per_step for m in cfg.models):
        print("timing one training step of each model, to estimate the run time ...", flush=True)
    plan = plan_steps(cfg, stored.seconds_per_step)
    if plan.seconds_per_step != stored.seconds_per_step:
        plan.config = asdict(cfg)
        plan.write(layout.plan)
    return plan


def run_vl_stage(cfg: DemoConfig) -> dict:
    """Fine-tune every pretrained run alike on the world's VQA and entailment tasks
    (results under ``cfg.out/vl``; finished runs are skipped on a rerun)."""
    layout = DemoLayout(cfg.out)
    checkpoints = {m: {s: str(layout.run(m, s).latest) for s in cfg.seed_list} for m in cfg.models}
    return run_vl_study(checkpoints, VLStudyConfig(out=str(layout.vl), steps=cfg.vl_steps,
                                                   batch_size=cfg.batch_size, world_samples=cfg.vl_samples,
                                                   eval_samples=cfg.vl_eval_samples, workers=cfg.workers,
                                                   device=cfg.device, progress=cfg.progress))


def picture_run(cfg: DemoConfig) -> tuple[str, int] | None:
    """The run whose trees and groups the report shows: the first model with a hierarchy, first seed."""
    model = next((m for m in cfg.models if factory.load_config(m).has_hierarchy), None)
    return None if model is None else (model, cfg.seed_list[0])


class _Stages:
    """Numbered stage lines, the seconds counted from the demo's start."""

    def __init__(self, total: int) -> None:
        self.total, self.n, self.t0 = total, 0, time.monotonic()

    def next(self, what: str) -> None:
        self.n += 1
        print(f"\n[{self.n}/{self.total}] {time.monotonic() - self.t0:6.0f}s  {what}", flush=True)


def run_demo(cfg: DemoConfig) -> Path:
    """Run (or continue) the demo; returns the path of ``report.md``."""
    with folder_lock(cfg.out):  # one writer per demo folder
        return _run_demo(cfg)


def _run_demo(cfg: DemoConfig) -> Path:
    layout = DemoLayout(cfg.out)
    layout.root.mkdir(parents=True, exist_ok=True)
    started = time.time()
    _check_data(cfg, layout)
    splits = data_splits(cfg)
    if splits is not None:
        counts = {s: _rows(f) for s, f in splits.items()}
        print(f"data {cfg.data}: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + f" pairs (in {layout.data})",
              flush=True)
    plan = _load_plan(cfg, layout)
    steps = plan.steps
    print(f"plan: {len(cfg.models)} models x {cfg.seeds} seeds x {steps} steps of {cfg.batch_size} pairs; "
          f"training is expected to take about {plan.estimated_train_minutes:.0f} min on this machine", flush=True)
    runs = [(m, s) for s in cfg.seed_list for m in cfg.models]
    stages = _Stages(3 * len(runs) + 1 + int(cfg.vl))
    for model, seed in runs:
        done = layout.summary(model, seed)
        stages.next(f"train {model}, seed {seed}, {steps} steps of {cfg.batch_size}")
        if not done.is_file():
            summary = train(train_config(cfg, model, seed, steps))
            if summary["steps"] < steps:
                raise RuntimeError(f"training {done.parent.name} stopped at step {summary['steps']} "
                                   f"({summary['stopped']}); rerun the demo to continue")
            write_json(done, summary)
    pictured = picture_run(cfg) if cfg.world else None
    for model, seed in runs:
        _evaluate_and_induce(cfg, layout, model, seed, stages, draw=(model, seed) == pictured)
    if cfg.vl:
        stages.next(f"fine-tune every run on world-vqa and world-ve, {cfg.vl_steps} steps each")
        run_vl_stage(cfg)
    stages.next("write the report")
    elapsed = read_wall_time(layout.wall_time) + time.time() - started
    write_json(layout.wall_time, {"seconds": elapsed})
    write_json(layout.config, asdict(cfg))
    path = write_report(cfg, plan, elapsed_s=elapsed)
    print(f"\nreport: {path}  (and {path.with_suffix('.html')})")
    return path


def _rows(path: Path) -> int:
    """Data rows of a split CSV (a caption may span lines: counted by the csv module)."""
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        return max(sum(1 for _ in csv.reader(f)) - 1, 0)


def _check_data(cfg: DemoConfig, layout: DemoLayout) -> None:
    """A folder's runs were trained on one data set: another ``--data`` needs another ``--out``."""
    if not layout.config.is_file() and not layout.plan.is_file():
        return
    try:
        stored = stored_config(layout)
    except ValueError:  # a plan without a config: an earlier version's folder, on the world
        return
    if stored.data != cfg.data:
        raise ValueError(f"{layout.root} holds a demo on data {stored.data!r}, not {cfg.data!r}: use another --out")


def eval_jobs(cfg: DemoConfig, splits: dict[str, Path] | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(tasks, datasets) the demo evaluates: the world's, or the test split's retrieval (and zero-shot
    on ``cfg.classes``)."""
    if splits is None:
        return EVAL_TASKS, ("world",)
    if cfg.classes is None:
        return ("zeroshot_retrieval",), (str(splits["test"]),)
    return ("zeroshot_retrieval", "zeroshot_classification"), (str(splits["test"]), cfg.classes)


def _evaluate_and_induce(cfg: DemoConfig, layout: DemoLayout, model: str, seed: int, stages: _Stages,
                         draw: bool) -> None:
    """Evaluate one run, induce its hierarchies and (``draw``) draw the report's trees and groups;
    one model load serves every stage still to do."""
    run = layout.run(model, seed)
    ckpt = run.latest
    eval_path, induce_path = layout.eval_records(model, seed), layout.induce_report(model, seed)
    todo = not (eval_path.is_file() and induce_path.is_file() and (not draw or layout.pictures.is_file()))
    net, transform, tokenizer = factory.load_for_inference(model, ckpt, cfg.device) if todo else (None,) * 3
    stages.next(f"evaluate {run.root.name}")
    if not eval_path.is_file():
        tasks, datasets = eval_jobs(cfg, data_splits(cfg))
        records = evaluate_model(net, transform, tokenizer, model_name=model, pretrained=str(ckpt),
                                 tasks=tasks, datasets=datasets, output_dir=eval_path.parent,
                                 verbose=False, batch_size=128, device=cfg.device,
                                 world_size=cfg.eval_samples, max_samples=None if cfg.world else cfg.eval_samples,
                                 seed=0, world_image_size=net.cfg.vision_cfg.image_size)
        write_json(eval_path, records)
    stages.next(f"induce hierarchies of {run.root.name}")
    if not induce_path.is_file():
        if not cfg.world:  # no gold trees or objects to score against
            report = {"no_gold": f"data {cfg.data} has no gold hierarchies; nothing was induced"}
        elif net.has_hierarchy:
            report = induce_eval(net, transform, tokenizer, n=cfg.induce_samples, seed=0, progress=cfg.progress,
                                 tune_split="val")
        else:
            report = {"no_hierarchy": True}
        write_json(induce_path, report)
    if draw and not layout.pictures.is_file():
        hierarchy_pictures(net, transform, tokenizer, layout, model, seed).write(layout.pictures)
