"""The demo report: metric table with mean ± std over seeds, verdicts, curves, bars, trees, groups.

Written as ``report.md`` and ``report.html`` (the same content; images are PNG files
beside them). A difference is called significant when it exceeds two standard
deviations: ``|mean_a - mean_b| > 2 * sqrt((sd_a² + sd_b²) / 2)`` (the pooled standard
deviation of the two models over seeds); with one seed nothing is called significant.
"""
from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any, Sequence

import markdown
import numpy as np
import open_clip
import torch

from .. import __version__, factory
from ..checkpoint import RunPaths, run_name
from ..eval.comparison import (beyond_baseline, comparison_header, comparison_rows, markdown_table, mean_sd,
                            significant)
from ..vl.study import format_study
from .figures import hierarchy_pictures, plot_bars, plot_curves

# (label, task, dataset, metric key); read from `hiclip eval` records
EVAL_METRICS = [
    ("zero-shot shape acc", "zeroshot_classification", "world/shape", "acc1"),
    ("zero-shot colour acc", "zeroshot_classification", "world/colour", "acc1"),
    ("zero-shot size acc", "zeroshot_classification", "world/size", "acc1"),
    ("zero-shot count acc", "zeroshot_classification", "world/count", "acc1"),
    ("zero-shot held-out combos acc", "zeroshot_classification", "world/holdout", "acc1"),
    ("retrieval image→text R@1", "zeroshot_retrieval", "world", "text_retrieval_recall@1"),
    ("retrieval text→image R@1", "zeroshot_retrieval", "world", "image_retrieval_recall@1"),
    ("compositional acc (all)", "compositional", "world", "acc"),
    ("compositional: attribute swap", "compositional", "world", "acc_attribute_swap"),
    ("compositional: relation swap", "compositional", "world", "acc_relation_swap"),
    ("compositional: attribute replace", "compositional", "world", "acc_attribute_replace"),
]


def collect(out: Path, models: tuple[str, ...], seeds: list[int]) -> dict[str, dict[str, list[float]]]:
    """metric label -> model -> one value per seed (eval records and induction reports)."""
    table: dict[str, dict[str, list[float]]] = {}
    for model in models:
        for seed in seeds:
            name = run_name(model, seed)
            records = json.loads((out / "eval" / name / "records.json").read_text())
            found = {(r["task"], r["dataset"]): r["metrics"] for r in records}
            for label, task, dataset, key in EVAL_METRICS:
                value = found.get((task, dataset), {}).get(key)
                if value is not None:
                    table.setdefault(label, {}).setdefault(model, []).append(float(value))
            induce = json.loads((out / "induce" / f"{name}.json").read_text())
            for label, value in _induce_metrics(induce).items():
                table.setdefault(label, {}).setdefault(model, []).append(value)
    return table


def _induce_metrics(report: dict[str, Any]) -> dict[str, float]:
    """Induction scores on the test split, every read-out setting chosen on the validation split."""
    if report.get("no_hierarchy"):
        return {}
    t, g = report["trees"], report["groups"]
    chosen = g["chosen"]["layer"]
    return {
        "caption trees: bracket F1 (val-chosen read-out)": t["induced"]["corpus_f1"],
        "caption trees: bracket F1 (top-down, τ 0.5)": t.get("fixed_readout", t["induced"])["corpus_f1"],
        "  baseline right-branching F1": t["right_branching"]["corpus_f1"],
        "  baseline left-branching F1": t["left_branching"]["corpus_f1"],
        "  baseline random-tree F1": t["random"]["corpus_f1"],
        "caption trees: noun phrases found (recall)": t["label_recall"]["NP"]["recall"],
        "image groups: ARI (val-chosen layer and τ)": g["chosen"]["ari"],
        "  baseline blocks ARI (better of 2×2, 4×4)": max(g["baseline_blocks2"]["ari"], g["baseline_blocks4"]["ari"]),
        "image groups: best IoU (val-chosen layer, τ 0.5)": g["best_iou"][chosen],
    }


def comparison_pairs(models: Sequence[str]) -> list[tuple[str, str]]:
    """The pairs (a, b) whose difference a − b the report tests.

    Two models: the pair itself. More: every pair that differs in exactly one of *hierarchy*
    and *objective* (HiCLIP − CLIP, HiDeCLIP − DeCLIP, DeCLIP − CLIP, HiDeCLIP − HiCLIP), the
    model with the hierarchy / the DeCLIP objective first; when no such pair exists, the first
    model against each other one."""
    models = list(models)
    if len(models) == 2:
        return [(models[0], models[1])]
    traits = {m: (cfg.has_hierarchy, cfg.objective) for m in models for cfg in [factory.load_config(m)]}
    pairs = []
    for a in models:
        for b in models:
            (ha, oa), (hb, ob) = traits[a], traits[b]
            if (ha and not hb and oa == ob) or (ha == hb and oa == "declip" and ob == "clip"):
                pairs.append((a, b))
    return pairs or [(models[0], m) for m in models[1:]]


def metric_rows(table: dict[str, dict[str, list[float]]], models: Sequence[str],
                pairs: Sequence[tuple[str, str]] | None = None) -> list[list[str]]:
    """Markdown rows: metric, each model's mean ± sd, then the pairs' differences
    (:func:`hiclip.eval.comparison.comparison_rows`); ``pairs`` defaults to (first, second)."""
    return comparison_rows(table, models, pairs or [(models[0], models[1])])


def verdicts(table: dict[str, dict[str, list[float]]], models: Sequence[str],
             pairs: Sequence[tuple[str, str]] | None = None) -> list[str]:
    """Plain sentences on the quality goals, with the numbers: every pair on retrieval and
    compositional accuracy, every hierarchy model's trees and groups against their baselines."""
    out = []
    for a, b in pairs or [(models[0], models[1])]:
        for label in ("compositional acc (all)", "retrieval image→text R@1", "retrieval text→image R@1"):
            va, vb = table.get(label, {}).get(a), table.get(label, {}).get(b)
            if not (va and vb):
                continue
            d = mean_sd(va)[0] - mean_sd(vb)[0]
            s = significant(va, vb)
            word = "beats" if d > 0 else "does not beat"
            if s is None:
                how = "(one seed: no significance test)"
            elif s:
                how = "by more than two standard deviations" if d > 0 else "and loses by more than two standard deviations"
            else:
                how = "but not by two standard deviations" if d > 0 else ""
            out.append(f"{a} {word} {b} on {label}: {mean_sd(va)[0]:.3f} vs {mean_sd(vb)[0]:.3f} ({d:+.3f}) {how}".strip()
                       + ".")
    tree = "caption trees: bracket F1 (val-chosen read-out)"
    for a in models:
        for label, base, what in ((tree, "  baseline random-tree F1", "random-tree"),
                                  (tree, "  baseline left-branching F1", "left-branching"),
                                  (tree, "  baseline right-branching F1", "right-branching"),
                                  ("image groups: ARI (val-chosen layer and τ)",
                                   "  baseline blocks ARI (better of 2×2, 4×4)", "block-partition")):
            v, bv = table.get(label, {}).get(a), table.get(base, {}).get(a)
            if v and bv:
                m, sd, bm = mean_sd(v)[0], mean_sd(v)[1], mean_sd(bv)[0]
                beyond = beyond_baseline(v, bm)
                word = "beats" if m > bm else "does not beat"
                how = "" if beyond is None else (" by more than two standard deviations" if beyond
                                                 else " but not by two standard deviations" if m > bm else "")
                out.append(f"{a}'s {label.split(':')[0]} ({label.split(': ')[1]}) {word} the {what} baseline{how}: "
                           f"{m:.3f} ± {sd:.3f} vs {bm:.3f}.")
    return out


def environment() -> dict[str, str]:
    return {"hiclip": __version__, "torch": torch.__version__, "open_clip": open_clip.__version__,
            "numpy": np.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "threads": str(torch.get_num_threads())}


def _table(header: list[str], rows: list[list[str]]) -> str:
    return markdown_table(header, rows, left=1)


def vl_section(out: Path, pairs: Sequence[tuple[str, str]]) -> list[str]:
    """The report's fine-tuning section from ``out/vl/study.json`` (the demo's ``--vl`` stage)."""
    path = out / "vl" / "study.json"
    if not path.is_file():
        return []
    study = json.loads(path.read_text())
    c = study["config"]
    return [f"## Vision–language fine-tuning (world-vqa, world-ve)\n",
            f"The pretrained runs of seed(s) {sorted({x for v in study['seeds'].values() for x in v})} "
            f"fine-tuned alike ({c['steps']} steps of {c['batch_size']}, "
            f"{c['head']} head, lr {c['lr']} with ×{c['lr_mult_fusion']} fusion and ×{c['lr_mult_head']} head, "
            f"{'frozen' if c['freeze_encoders'] else 'trained'} encoders, its pretraining seed as the fine-tuning "
            f"seed) on {c['world_samples']} training examples per task, then scored on {c['eval_samples']} test and "
            "held-out examples. *text only*: the question-only / hypothesis-only baseline. "
            + (f"Fine-tuning and scoring took {study['time_s'] / 60:.1f} min, summed over the runs.\n"
               if study.get("time_s") is not None else "\n"),
            format_study(study, [p for p in pairs if all(m in study["seeds"] for m in p)]), ""]


def _chance(out: Path, model: str, seed: int) -> dict[str, float]:
    records = json.loads((out / "eval" / run_name(model, seed) / "records.json").read_text())
    comp = next((r["metrics"] for r in records if r["task"] == "compositional"), {})
    return {label: comp[key.replace("acc", "chance", 1)] for label, task, _, key in EVAL_METRICS
            if task == "compositional" and key.replace("acc", "chance", 1) in comp}


def write_report(cfg: Any, plan: dict[str, Any], elapsed_s: float) -> Path:
    """Assemble ``report.md`` / ``report.html`` under ``cfg.out`` from the stages' outputs."""
    out, models, seeds = Path(cfg.out), tuple(cfg.models), cfg.seed_list
    table = collect(out, models, seeds)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    plot_curves(out, models, seeds, out / "figures" / "curves.png")
    zs = [lab for lab, task, _, _ in EVAL_METRICS if task == "zeroshot_classification"]
    comp = [lab for lab, task, _, _ in EVAL_METRICS if task == "compositional"]
    plot_bars(table, zs, models, out / "figures" / "zeroshot.png", "zero-shot accuracy (embedded world, test split)")
    plot_bars(table, comp, models, out / "figures" / "compositional.png",
              "compositional accuracy (true caption beats every hard negative)", _chance(out, models[0], seeds[0]))
    hier_model = next((m for m in models if factory.load_config(m).has_hierarchy), None)
    pictures = {"trees": [], "groups": []}
    if hier_model:
        ckpt = RunPaths(out / "runs" / run_name(hier_model, seeds[0])).latest
        net, _, transform = factory.create_model_and_transforms(hier_model, ckpt, device="cpu")
        pictures = hierarchy_pictures(net.eval(), transform, factory.get_tokenizer(hier_model), out)
    summaries = {run_name(m, s): json.loads((out / "runs" / run_name(m, s) / "summary.json").read_text())
                 for m in models for s in seeds}
    train_s = sum(v["time_s"] for v in summaries.values())
    pairs = comparison_pairs(models)
    md = [f"# {' vs '.join(models)} on the embedded world\n",
          f"{', '.join(models[:-1])} and {models[-1]}, trained alike ({plan['steps']} steps of {cfg.batch_size} pairs, "
          f"lr {cfg.lr}, seeds {seeds}) and evaluated on held-out splits. Values are mean ± standard deviation "
          f"over {len(seeds)} seed(s); a difference is marked significant when it exceeds two pooled standard "
          "deviations.\n",
          "## What it shows\n", *[f"- {v}" for v in verdicts(table, models, pairs)], "",
          "## All metrics\n", *(["Differences beyond 2 sd are in bold.\n"] if len(pairs) > 1 else []),
          _table(comparison_header(models, pairs), metric_rows(table, models, pairs)), "",
          *vl_section(out, pairs),
          "## Training\n", "![curves](figures/curves.png)\n",
          _table(["run", "steps", "final loss", "val R@1 i→t", "pairs/s", "time (s)"],
                 [[k, str(v["steps"]), f"{v['final_loss']:.3f}",
                   f"{(v.get('final_val') or {}).get('i2t_r1', float('nan')):.3f}",
                   f"{v['pairs_per_s']:.1f}", f"{v['time_s']:.0f}"] for k, v in summaries.items()]), "",
          "## Zero-shot and compositional accuracy\n", "![zero-shot](figures/zeroshot.png)\n",
          "![compositional](figures/compositional.png)\n"]
    if pictures["trees"]:
        md += [f"## Caption trees of {hier_model} (seed {seeds[0]}), left: induced, right: gold\n"]
        for caption, pred, gold in pictures["trees"]:
            md += [f"*{caption}*\n", f"![induced]({pred}) ![gold]({gold})\n"]
        md += [f"## Image groups of {hier_model}: regions per layer (low → high), and the gold objects\n"]
        for caption, pred, gold in pictures["groups"]:
            md += [f"*{caption}*\n", f"![groups]({pred}) ![gold]({gold})\n"]
    env = environment()
    md += ["## How this was made\n", "```", *cfg.commands, "```\n",
           f"Steps per run: {plan['steps']}, a fixed plan (the same on every machine"
           + "".join(f"; measured {s:.2f} s per step of {m}" for m, s in plan["seconds_per_step"].items())
           + f"). Tree read-outs and image-group layers and thresholds were chosen on the validation split and "
           f"scored on the test split. Training took {train_s / 60:.1f} min in all; the whole demo {elapsed_s / 60:.1f} min of "
           "wall time (summed over invocations, when it was interrupted and rerun).\n",
           "Versions: " + ", ".join(f"{k} {v}" for k, v in env.items()) + "\n",
           "This is a tiny model on synthetic data: it shows what the method does under control, "
           "not what it does on YFCC15M.\n"]
    text = "\n".join(md)
    path = out / "report.md"
    path.write_text(text)
    body = markdown.markdown(text, extensions=["tables", "fenced_code"])
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}"
             "img{max-width:48%;vertical-align:top}")
    path.with_suffix(".html").write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>hiclip demo</title>"
                                         f"<style>{style}</style></head><body>{body}</body></html>")
    return path
