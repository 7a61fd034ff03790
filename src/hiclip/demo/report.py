"""The demo report: metric table with mean ± std over seeds, verdicts, curves, bars, trees, groups.

Written as ``report.md`` and ``report.html`` (the same content; images are PNG files
beside them). A difference is called significant when it exceeds two standard
deviations: ``|mean_a - mean_b| > 2 * sqrt((sd_a² + sd_b²) / 2)`` (the pooled standard
deviation of the two models over seeds); with one seed nothing is called significant.
"""
from __future__ import annotations

import json
import platform
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from ..checkpoint import RunPaths, run_name

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


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), (statistics.stdev(values) if len(values) > 1 else float("nan"))


def _significant(a: list[float], b: list[float]) -> bool | None:
    """|mean difference| > 2 pooled standard deviations; None with fewer than 2 seeds."""
    if len(a) < 2 or len(b) < 2:
        return None
    (ma, sa), (mb, sb) = _mean_sd(a), _mean_sd(b)
    return bool(abs(ma - mb) > 2 * np.sqrt((sa ** 2 + sb ** 2) / 2))


def _fmt(values: list[float] | None) -> str:
    if not values:
        return "—"
    m, s = _mean_sd(values)
    return f"{m:.3f}" if np.isnan(s) else f"{m:.3f} ± {s:.3f}"


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


def metric_rows(table: dict[str, dict[str, list[float]]], models: tuple[str, ...]) -> list[list[str]]:
    """Markdown rows: metric, each model's mean ± sd, difference (first − second), > 2 sd?"""
    rows = []
    a, b = models[0], models[1]
    for label, per_model in table.items():
        va, vb = per_model.get(a), per_model.get(b)
        diff, sig = "—", "—"
        if va and vb:
            diff = f"{np.mean(va) - np.mean(vb):+.3f}"
            s = _significant(va, vb)
            sig = "n/a (1 seed)" if s is None else ("**yes**" if s else "no")
        rows.append([label, _fmt(va), _fmt(vb), diff, sig])
    return rows


def verdicts(table: dict[str, dict[str, list[float]]], models: tuple[str, ...]) -> list[str]:
    """Plain sentences on the quality goal (issue 6), with the numbers."""
    a, b = models[0], models[1]
    out = []
    for label in ("compositional acc (all)", "retrieval image→text R@1", "retrieval text→image R@1"):
        va, vb = table.get(label, {}).get(a), table.get(label, {}).get(b)
        if not (va and vb):
            continue
        d = np.mean(va) - np.mean(vb)
        s = _significant(va, vb)
        word = "beats" if d > 0 else "does not beat"
        if s is None:
            how = "(one seed: no significance test)"
        elif s:
            how = "by more than two standard deviations" if d > 0 else "and loses by more than two standard deviations"
        else:
            how = "but not by two standard deviations" if d > 0 else ""
        out.append(f"{a} {word} {b} on {label}: {np.mean(va):.3f} vs {np.mean(vb):.3f} ({d:+.3f}) {how}".strip() + ".")
    tree = "caption trees: bracket F1 (val-chosen read-out)"
    for label, base, what in ((tree, "  baseline random-tree F1", "random-tree"),
                              (tree, "  baseline left-branching F1", "left-branching"),
                              (tree, "  baseline right-branching F1", "right-branching"),
                              ("image groups: ARI (val-chosen layer and τ)", "  baseline blocks ARI (better of 2×2, 4×4)",
                               "block-partition")):
        v, bv = table.get(label, {}).get(a), table.get(base, {}).get(a)
        if v and bv:
            beyond = _beyond_baseline(v, float(np.mean(bv)))
            word = "beats" if np.mean(v) > np.mean(bv) else "does not beat"
            how = "" if beyond is None else (" by more than two standard deviations" if beyond
                                             else " but not by two standard deviations" if np.mean(v) > np.mean(bv) else "")
            out.append(f"{a}'s {label.split(':')[0]} ({label.split(': ')[1]}) {word} the {what} baseline{how}: "
                       f"{np.mean(v):.3f} ± {_mean_sd(v)[1]:.3f} vs {np.mean(bv):.3f}.")
    return out


def _beyond_baseline(values: list[float], baseline: float) -> bool | None:
    """Mean over seeds above a fixed baseline by more than two standard deviations (None: 1 seed)."""
    if len(values) < 2:
        return None
    m, s = _mean_sd(values)
    return bool(m - baseline > 2 * s)


def environment() -> dict[str, str]:
    import open_clip
    import torch
    from .. import __version__
    return {"hiclip": __version__, "torch": torch.__version__, "open_clip": open_clip.__version__,
            "numpy": np.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "threads": str(torch.get_num_threads())}


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _chance(out: Path, model: str, seed: int) -> dict[str, float]:
    records = json.loads((out / "eval" / run_name(model, seed) / "records.json").read_text())
    comp = next((r["metrics"] for r in records if r["task"] == "compositional"), {})
    return {label: comp[key.replace("acc", "chance", 1)] for label, task, _, key in EVAL_METRICS
            if task == "compositional" and key.replace("acc", "chance", 1) in comp}


def write_report(cfg: Any, plan: dict[str, Any], elapsed_s: float) -> Path:
    """Assemble ``report.md`` / ``report.html`` under ``cfg.out`` from the stages' outputs."""
    import markdown

    from .. import factory
    from .figures import hierarchy_pictures, plot_bars, plot_curves

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
    md = [f"# HiCLIP vs CLIP on the embedded world\n",
          f"{models[0]} and {models[1]}, trained alike ({plan['steps']} steps of {cfg.batch_size} pairs, "
          f"lr {cfg.lr}, seeds {seeds}) and evaluated on held-out splits. Values are mean ± standard deviation "
          f"over {len(seeds)} seed(s); a difference is marked significant when it exceeds two pooled standard "
          "deviations.\n",
          "## What it shows\n", *[f"- {v}" for v in verdicts(table, models)], "",
          "## All metrics\n",
          _table(["metric", models[0], models[1], f"Δ ({models[0]} − {models[1]})", "> 2 sd?"],
                 metric_rows(table, models)), "",
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
           "scored on the test split. Training took {train_s / 60:.1f} min in all; the whole demo {elapsed_s / 60:.1f} min of "
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
