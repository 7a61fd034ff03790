"""Does pretraining help reasoning? Fine-tune several pretrained models alike on the world's
VQA and visual-entailment tasks and compare them, with text-only baselines.

``run_vl_study(checkpoints, cfg)``: ``checkpoints[label][seed]`` is a pretrained checkpoint
(or a model name: random initialisation). Each is fine-tuned on every task of ``cfg.tasks``
with the same budget, data and options, its seed as the fine-tuning seed, then evaluated on
the test and held-out splits. The recipe (every field of :class:`VLStudyConfig` but where and
how fast it runs) is stored in ``cfg.out/recipe.json``; continuing with another is an error.
Runs live in ``cfg.out/<label>-s<seed>/<task>/`` (:func:`run_folder`), with the per-example
predictions of their test and held-out scoring beside the results (:func:`item_scores`, for
paired comparisons of single runs); a rerun skips finished evaluations and resumes unfinished
fine-tuning. The returned ``table`` maps a
metric label ("world-vqa acc: colour") to ``{label: [value per seed]}``, the layout of the
demo report's tables; ``baselines`` maps the same labels to the question-only /
hypothesis-only accuracy (``hiclip.vl.baselines``), which does not depend on the model.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..checkpoint import run_name
from ..eval.comparison import Items, comparison_header, comparison_rows, markdown_table
from .baselines import text_only_baseline
from .config import FinetuneConfig
from .evaluate import scores_by_metric
from .finetune import finetune
from .run import evaluate_checkpoint
from .tasks import load_task

SPLITS = ("test", "holdout")
# fields that only say where and how fast a study runs; every other field is its recipe
_PLACE_FIELDS = ("out", "workers", "device", "threads", "progress")


@dataclass
class VLStudyConfig:
    """The fine-tuning budget and evaluation shared by every run of a study."""

    out: str = "vl_study"
    tasks: tuple[str, ...] = ("world-vqa", "world-ve")
    steps: int = 600
    batch_size: int = 64
    lr: float = 1e-4
    lr_mult_fusion: float = 5.0
    lr_mult_head: float = 10.0
    warmup_steps: int | None = None  # None: 10 % of the steps
    head: str = "fusion"
    freeze_encoders: bool = False
    world_samples: int = 20_000
    eval_samples: int = 1000
    workers: int = 1
    device: str = "cpu"
    threads: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.warmup_steps is None:
            self.warmup_steps = max(self.steps // 10, 1)


def _label(task: str, split: str, key: str) -> str:
    what = "acc" if key == "accuracy" else f"acc: {key.removeprefix('accuracy_')}"
    return f"{task} {what}" + (" (held-out combos)" if split == "holdout" else "")


def _labels(task: str, split: str, metrics: dict) -> dict[str, str]:
    """The metric keys a study reports for a split (per type on the test split only) -> their labels."""
    return {k: _label(task, split, k) for k in metrics
            if k == "accuracy" or (k.startswith("accuracy_") and split == "test")}


def _flatten(task: str, split: str, metrics: dict[str, float]) -> dict[str, float]:
    return {label: metrics[k] for k, label in _labels(task, split, metrics).items()}


def run_folder(out: str | Path, label: str, seed: int, task: str) -> Path:
    """Where a study keeps the fine-tuning of ``label``'s ``seed`` on ``task``."""
    return Path(out) / run_name(label, seed) / task


def item_scores(folder: Path, task: str) -> dict[str, dict[str, float]]:
    """Per-example scores of one finished run (``folder``: :func:`run_folder`), by the metric labels
    of its table: label -> {example id (as JSON): score}; {} for a run without prediction files
    (one of an earlier version)."""
    out: dict[str, dict[str, float]] = {}
    for split in SPLITS:
        for path in sorted(folder.glob(f"{task.split(':')[0]}-{split}_*.predictions.jsonl")):
            rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
            types = [r["type"] for r in rows]
            ids = scores_by_metric([json.dumps(r["id"]) for r in rows], types)
            scores = scores_by_metric([r["score"] for r in rows], types)
            for key, label in _labels(task, split, scores).items():
                out[label] = dict(zip(ids[key], scores[key]))
    return out


def _one_run(model: str, seed: int, task: str, cfg: VLStudyConfig, out: Path) -> tuple[dict[str, float], float | None]:
    """-> (metrics by label, seconds of fine-tuning and evaluation; None for a run of an earlier version)."""
    done = out / "study_metrics.json"
    if done.is_file():
        stored = json.loads(done.read_text())
        return (stored["metrics"], stored["time_s"]) if "metrics" in stored else (stored, None)
    started = time.monotonic()
    ft = FinetuneConfig(task=task, output_dir=str(out), model=model, seed=seed, steps=cfg.steps,
                        batch_size=cfg.batch_size, lr=cfg.lr, lr_mult_fusion=cfg.lr_mult_fusion,
                        lr_mult_head=cfg.lr_mult_head, warmup_steps=cfg.warmup_steps, head=cfg.head,
                        freeze_encoders=cfg.freeze_encoders, world_samples=cfg.world_samples, workers=cfg.workers,
                        device=cfg.device, threads=cfg.threads, progress=cfg.progress, resume="latest",
                        save_every=max(cfg.steps // 2, 1), val_every=0, val_samples=min(cfg.eval_samples, 500))
    summary = finetune(ft)
    if summary["stopped"] != "completed":
        raise RuntimeError(f"fine-tuning {out} stopped early ({summary['stopped']}); rerun to continue")
    flat: dict[str, float] = {}
    for split in SPLITS:
        metrics = evaluate_checkpoint(summary["checkpoint"], split, samples=cfg.eval_samples,
                                      batch_size=cfg.batch_size, workers=cfg.workers, device=cfg.device,
                                      predictions=True)
        flat.update(_flatten(task, split, metrics))
    seconds = time.monotonic() - started
    done.write_text(json.dumps({"metrics": flat, "time_s": seconds}, indent=2))
    return flat, seconds


def _baselines(cfg: VLStudyConfig, out: Path) -> dict[str, float]:
    path = out / "baselines.json"
    if path.is_file():
        return json.loads(path.read_text())
    result: dict[str, float] = {}
    for task in cfg.tasks:
        train = load_task(task, "train", 32, cfg.world_samples)
        for split in SPLITS:
            result.update(_flatten(task, split, text_only_baseline(train, load_task(task, split, 32,
                                                                                   cfg.eval_samples))))
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    return result


def _recipe(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in _PLACE_FIELDS}


def _check_recipe(cfg: VLStudyConfig, out: Path) -> None:
    """Store the recipe of a study at its first run; a rerun with another recipe in the same folder is
    an error, since its finished runs would be mixed with new ones trained otherwise."""
    path, older = out / "recipe.json", out / "study.json"  # a study of an earlier version has only the latter
    recipe = _recipe(json.loads(json.dumps(asdict(cfg))))
    stored = (json.loads(path.read_text()) if path.is_file()
              else _recipe(json.loads(older.read_text())["config"]) if older.is_file() else None)
    if stored is not None:
        changed = sorted(k for k in recipe.keys() | stored.keys() if recipe.get(k) != stored.get(k))
        if changed:
            what = ", ".join(f"{k} {stored.get(k)!r} -> {recipe.get(k)!r}" for k in changed)
            raise ValueError(f"{out} holds a fine-tuning study with another recipe ({what}): "
                             "use another output folder, or remove it to start over")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(recipe, indent=2))


def run_vl_study(checkpoints: dict[str, dict[int, str]], cfg: VLStudyConfig = VLStudyConfig()) -> dict[str, Any]:
    """Fine-tune and evaluate every (label, seed) on every task (module docstring).

    -> ``{"table": {metric: {label: [per seed]}}, "baselines": {metric: value}, "seeds": {label: [seeds]},
    "config": ..., "time_s": ...}``, ``time_s`` the seconds of fine-tuning and evaluation summed over
    the runs (stored with each run, so that a continued or shared study counts every run once; None
    when a run of an earlier version did not store it); also written to ``cfg.out/study.json``.
    """
    out = Path(cfg.out)
    _check_recipe(cfg, out)
    table: dict[str, dict[str, list[float]]] = {}
    times: list[float | None] = []
    for label, by_seed in checkpoints.items():
        for seed, model in sorted(by_seed.items()):
            for task in cfg.tasks:
                metrics, seconds = _one_run(str(model), seed, task, cfg, run_folder(out, label, seed, task))
                times.append(seconds)
                for metric, value in metrics.items():
                    table.setdefault(metric, {}).setdefault(label, []).append(value)
    result = {"table": table, "baselines": _baselines(cfg, out),
              "seeds": {label: sorted(s) for label, s in checkpoints.items()}, "config": asdict(cfg),
              "time_s": None if None in times else sum(times)}
    (out / "study.json").write_text(json.dumps(result, indent=2))
    return result


def format_study(result: dict[str, Any], pairs: list[tuple[str, str]] | None = None, items: Items | None = None) -> str:
    """A markdown table: metric, each label's mean ± sd over seeds, the text-only baseline, and the
    difference of every pair (a, b) with the 2-sd rule and its p-value (:mod:`hiclip.eval.comparison`;
    ``items``: per-example scores of single-seed runs, for a paired bootstrap); ``pairs``
    defaults to (first, second) for two labels, none otherwise."""
    labels = list(result["seeds"])
    if pairs is None:
        pairs = [(labels[0], labels[1])] if len(labels) == 2 else []
    return markdown_table(comparison_header(labels, pairs, baseline="text only"),
                          comparison_rows(result["table"], labels, pairs, baselines=result["baselines"], items=items),
                          left=1)


def study_items(out: str | Path, result: dict[str, Any]) -> Items:
    """Per-example scores of the labels run with one seed only, aligned on the examples every such
    run scored: metric label -> label -> scores (:data:`hiclip.eval.comparison.Items`)."""
    single = {label: seeds[0] for label, seeds in result["seeds"].items() if len(seeds) == 1}
    found: dict[str, dict[str, dict[str, float]]] = {}
    for label, seed in single.items():
        for task in result["config"]["tasks"]:
            for metric, scores in item_scores(run_folder(out, label, seed, task), task).items():
                found.setdefault(metric, {})[label] = scores
    items: Items = {}
    for metric, by_label in found.items():
        common = sorted(set.intersection(*(set(s) for s in by_label.values())))
        items[metric] = {label: [s[i] for i in common] for label, s in by_label.items()}
    return items
