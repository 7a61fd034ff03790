"""The demo report: metric table with mean ± sd over seeds and p-values, verdicts, curves, bars,
trees, groups; and the same tables for ``hiclip report`` (:mod:`hiclip.demo.results`).

Written as ``report.md`` and ``report.html`` (the same content; images are PNG files
beside them). A difference is called significant when it exceeds two standard
deviations: ``|mean_a - mean_b| > 2 * sqrt((sd_a² + sd_b²) / 2)`` (the pooled standard
deviation of the two models over seeds); with one seed nothing is called significant.
Welch's two-sided p-value stands beside it (:mod:`hiclip.eval.comparison`).
"""
from __future__ import annotations

import dataclasses
import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import markdown
import numpy as np
import open_clip
import torch

from .. import __version__, factory
from ..eval.comparison import (Table, beyond_baseline, comparison_header, comparison_rows, fmt_p, markdown_table,
                               mean_sd, significant, welch_p)
from ..vl.study import VLStudyConfig, format_study, study_items
from .config import DemoConfig
from .figures import plot_bars, plot_curves
from .layout import DemoLayout, Pictures, Plan, RunSummary, read_eval, read_induce, read_wall_time

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


# with --data (a user's images): the test split's retrieval, zero-shot on --classes; dataset None: the
# record of that task, whatever the dataset's path
DATA_METRICS = [
    ("retrieval image→text R@1", "zeroshot_retrieval", None, "text_retrieval_recall@1"),
    ("retrieval text→image R@1", "zeroshot_retrieval", None, "image_retrieval_recall@1"),
    ("retrieval image→text R@5", "zeroshot_retrieval", None, "text_retrieval_recall@5"),
    ("retrieval text→image R@5", "zeroshot_retrieval", None, "image_retrieval_recall@5"),
    ("zero-shot acc (--classes folder)", "zeroshot_classification", None, "acc1"),
]


def eval_metrics(cfg: DemoConfig) -> list[tuple[str, str, str | None, str]]:
    """The eval metrics the report reads for a demo on ``cfg.data``."""
    return EVAL_METRICS if cfg.world else DATA_METRICS


# (label, key of hiclip.induce.run.flatten_report); read from `hiclip induce-eval` reports
INDUCE_METRICS = [
    ("caption trees: bracket F1 (val-chosen read-out)", "tree_f1"),
    ("caption trees: bracket F1 (top-down, τ 0.5)", "tree_f1_topdown"),
    ("  baseline right-branching F1", "right_branching_f1"),
    ("  baseline left-branching F1", "left_branching_f1"),
    ("  baseline random-tree F1", "random_f1"),
    ("caption trees: noun phrases found (recall)", "np_recall"),
    ("image groups: ARI (val-chosen links, layer and τ)", "ari"),
    ("  cumulative links only (val-chosen layer and τ)", "ari_cumulative"),
    ("  baseline blocks ARI (better of 2×2, 4×4)", "blocks_ari"),
    ("  control: no-model colour grouping ARI (val-chosen τ)", "colour_ari"),
    ("image groups: best IoU (val-chosen layer, τ 0.5)", "best_iou"),
]


def collect(layout: DemoLayout, models: Sequence[str], seeds: Sequence[int],
            metrics: Sequence[tuple[str, str, str | None, str]] = tuple(EVAL_METRICS)) -> Table:
    """metric label -> model -> one value per seed (eval records and induction reports)."""
    table: Table = {}
    for model in models:
        for seed in seeds:
            found = read_eval(layout.eval_records(model, seed))
            for label, task, dataset, key in metrics:
                record = (found.get((task, dataset), {}) if dataset is not None else
                          next((m for (t, _), m in found.items() if t == task), {}))
                value = record.get(key)
                if value is not None:
                    table.setdefault(label, {}).setdefault(model, []).append(float(value))
            scores = read_induce(layout.induce_report(model, seed))
            for label, key in INDUCE_METRICS:
                if scores.get(key) is not None:
                    table.setdefault(label, {}).setdefault(model, []).append(float(scores[key]))
    return table


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


def metric_rows(table: Table, models: Sequence[str],
                pairs: Sequence[tuple[str, str]] | None = None) -> list[list[str]]:
    """Markdown rows: metric, each model's mean ± sd, then the pairs' differences
    (:func:`hiclip.eval.comparison.comparison_rows`); ``pairs`` defaults to (first, second)."""
    return comparison_rows(table, models, pairs or [(models[0], models[1])])


def verdicts(table: Table, models: Sequence[str],
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
            p = welch_p(va, vb)
            p_text = "" if p is None else f", Welch p {fmt_p(p)}"
            out.append(f"{a} {word} {b} on {label}: {mean_sd(va)[0]:.3f} vs {mean_sd(vb)[0]:.3f} ({d:+.3f}{p_text}) "
                       f"{how}".strip() + ".")
    tree = "caption trees: bracket F1 (val-chosen read-out)"
    for a in models:
        for label, base, what in ((tree, "  baseline random-tree F1", "random-tree"),
                                  (tree, "  baseline left-branching F1", "left-branching"),
                                  (tree, "  baseline right-branching F1", "right-branching"),
                                  ("image groups: ARI (val-chosen links, layer and τ)",
                                   "  baseline blocks ARI (better of 2×2, 4×4)", "block-partition"),
                                  ("image groups: ARI (val-chosen links, layer and τ)",
                                   "  control: no-model colour grouping ARI (val-chosen τ)", "no-model colour")):
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


@dataclass
class DemoResults:
    """Everything the report says about one demo folder, read back from it."""

    layout: DemoLayout
    cfg: DemoConfig
    plan: Plan
    table: Table
    pairs: list[tuple[str, str]]
    summaries: dict[str, RunSummary]

    @classmethod
    def read(cls, layout: DemoLayout, cfg: DemoConfig | None = None, plan: Plan | None = None) -> "DemoResults":
        """``cfg`` defaults to the folder's stored config (``demo.json``, else the plan's)."""
        plan = plan or Plan.read(layout.plan)
        cfg = cfg or stored_config(layout, plan)
        models, seeds = tuple(cfg.models), cfg.seed_list
        return cls(layout, cfg, plan, collect(layout, models, seeds, eval_metrics(cfg)), comparison_pairs(models),
                   {layout.run(m, s).root.name: RunSummary.read(layout.summary(m, s)) for m in models for s in seeds})

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(self.cfg.models)


def stored_config(layout: DemoLayout, plan: Plan | None = None) -> DemoConfig:
    """The options a demo folder was made with: ``demo.json`` (written with every report), else the
    config stored in its plan by the first invocation. ValueError when it holds neither."""
    if layout.config.is_file():
        return DemoConfig.from_dict(json.loads(layout.config.read_text()))
    plan = plan or (Plan.read(layout.plan) if layout.plan.is_file() else None)
    if plan is None or plan.config is None:
        raise ValueError(f"{layout.root} is not a demo folder (no demo.json, no plan.json with a config)")
    return DemoConfig.from_dict(plan.config)


def data_line(res: DemoResults) -> str:
    """Where the pairs came from (``--data``): the spec, the split rule and the counts."""
    if res.cfg.world:
        return ""
    record = res.layout.data / "splits.json"
    if record.is_file():
        stored = json.loads(record.read_text())
        counts = ", ".join(f"{n} {s}" for s, n in stored["counts"].items())
        skipped = sum(stored.get("skipped", {}).values())
        how = (f"split {'/'.join(str(round(100 * f)) for f in stored['fractions'])} by a stable hash of each image "
               f"({counts} pairs" + (f"; {skipped} unusable samples skipped" if skipped else "") + ")")
    else:
        how = "with its given train / val / test splits"
    classes = f"; zero-shot classification on `{res.cfg.classes}`" if res.cfg.classes else ""
    return (f"Data: `{res.cfg.data}`, {how}; validation during training on the val split, every score on the "
            f"test split{classes}. There are no gold hierarchies here, so none are induced or scored.\n")


def intro(res: DemoResults) -> str:
    models, seeds = res.models, res.cfg.seed_list
    return (f"{', '.join(models[:-1])} and {models[-1]}, trained alike ({res.plan.steps} steps of "
            f"{res.cfg.batch_size} pairs, lr {res.cfg.lr}, seeds {seeds}) and evaluated on held-out splits. Values "
            f"are mean ± standard deviation over {len(seeds)} seed(s); a difference is marked significant when it "
            "exceeds two pooled standard deviations, and p is Welch's two-sided t-test over the seeds.\n")


def verdict_lines(res: DemoResults) -> list[str]:
    return [*[f"- {v}" for v in verdicts(res.table, res.models, res.pairs)], ""]


def metrics_table(res: DemoResults) -> list[str]:
    """The table of every metric, with its note on bold (several pairs)."""
    return [*(["Differences beyond 2 sd are in bold; Welch's p in brackets.\n"] if len(res.pairs) > 1 else []),
            _table(comparison_header(res.models, res.pairs), metric_rows(res.table, res.models, res.pairs)), ""]


def headline(res: DemoResults) -> list[str]:
    """The verdicts and the table of every metric (markdown lines): the README's headline block."""
    return verdict_lines(res) + metrics_table(res)


def training_table(res: DemoResults) -> str:
    return _table(["run", "steps", "final loss", "val R@1 i→t", "pairs/s", "time (s)"],
                  [[k, str(v.steps), f"{v.final_loss:.3f}",
                    f"{v.val_i2t_r1 if v.val_i2t_r1 is not None else float('nan'):.3f}",
                    f"{v.pairs_per_s:.1f}", f"{v.time_s:.0f}"] for k, v in res.summaries.items()])


def commands_block(res: DemoResults) -> list[str]:
    """The commands that made the folder, as a code block."""
    return ["```", *res.cfg.commands, "```\n"]


def how_made(res: DemoResults, elapsed_s: float) -> list[str]:
    """The plan, the read-out choices and the times (markdown lines)."""
    train_s = sum(v.time_s for v in res.summaries.values())
    return [f"Steps per run: {res.plan.steps}, a fixed plan (the same on every machine"
            + "".join(f"; measured {s:.2f} s per step of {m}" for m, s in res.plan.seconds_per_step.items())
            + ("). Tree read-outs and image-group layers and thresholds were chosen on the validation split and "
               "scored on the test split." if res.cfg.world else ").")
            + f" Training took {train_s / 60:.1f} min in all; the whole demo {elapsed_s / 60:.1f} "
            "min of wall time (summed over invocations, when it was interrupted and rerun).\n"]


def study_config(study: dict) -> VLStudyConfig:
    """The typed config of a stored study (fields of other versions ignored)."""
    known = {f.name for f in dataclasses.fields(VLStudyConfig)}
    values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in study["config"].items() if k in known}
    return VLStudyConfig(**values)


def study_pairs(labels: Sequence[str]) -> list[tuple[str, str]]:
    """The pairs a study table compares: the demo's rule for built-in models, else the first against each other."""
    if len(labels) < 2:
        return []
    if all(m in factory.list_models() for m in labels):
        return comparison_pairs(labels)
    return [(labels[0], m) for m in labels[1:]]


def study_text(folder: Path, study: dict, pairs: Sequence[tuple[str, str]]) -> list[str]:
    """A fine-tuning study (``folder/study.json``, :func:`hiclip.vl.run_vl_study`): what was done, and its
    table (single-seed runs compared by a paired bootstrap over their test items, where stored)."""
    c = study_config(study)
    tasks = " and ".join(c.tasks)
    return [f"The pretrained runs of seed(s) {sorted({x for v in study['seeds'].values() for x in v})} "
            f"fine-tuned alike on {tasks} ({c.steps} steps of {c.batch_size}, "
            f"{c.head} head, lr {c.lr} with ×{c.lr_mult_fusion} fusion and ×{c.lr_mult_head} head, "
            f"{'frozen' if c.freeze_encoders else 'trained'} encoders, its pretraining seed as the fine-tuning "
            f"seed) on {c.world_samples} training examples per task, then scored on {c.eval_samples} test and "
            "held-out examples. *text only*: the question-only / hypothesis-only baseline. "
            + (f"Fine-tuning and scoring took {study['time_s'] / 60:.1f} min, summed over the runs.\n"
               if study.get("time_s") is not None else "\n"),
            format_study(study, [p for p in pairs if all(m in study["seeds"] for m in p)],
                         items=study_items(folder, study)), ""]


def vl_section(layout: DemoLayout, pairs: Sequence[tuple[str, str]]) -> list[str]:
    """The report's fine-tuning section from the demo's ``--vl`` stage ([] without one)."""
    if not layout.vl_study.is_file():
        return []
    return ["## Vision–language fine-tuning (world-vqa, world-ve)\n",
            *study_text(layout.vl, json.loads(layout.vl_study.read_text()), pairs)]


def _chance(layout: DemoLayout, model: str, seed: int) -> dict[str, float]:
    comp = read_eval(layout.eval_records(model, seed)).get(("compositional", "world"), {})
    return {label: comp[key.replace("acc", "chance", 1)] for label, task, _, key in EVAL_METRICS
            if task == "compositional" and key.replace("acc", "chance", 1) in comp}


def _pictures(layout: DemoLayout) -> list[str]:
    """The trees and groups drawn when the hierarchies were induced (none for CLIP-only demos)."""
    if not layout.pictures.is_file():
        return []
    pics = Pictures.read(layout.pictures)
    md = [f"## Caption trees of {pics.model} (seed {pics.seed}), left: induced, right: gold\n"]
    for caption, pred, gold in pics.trees:
        md += [f"*{caption}*\n", f"![induced]({pred}) ![gold]({gold})\n"]
    md += [f"## Image groups of {pics.model}: regions per layer (low → high), and the gold objects\n"]
    for caption, pred, gold in pics.groups:
        md += [f"*{caption}*\n", f"![groups]({pred}) ![gold]({gold})\n"]
    return md


def write_report(cfg: DemoConfig, plan: Plan, elapsed_s: float | None = None) -> Path:
    """Assemble ``report.md`` / ``report.html`` in the demo folder ``cfg.out`` from the stages'
    outputs (``elapsed_s``: the demo's wall time, default the stored one)."""
    layout = DemoLayout(cfg.out)
    res = DemoResults.read(layout, cfg, plan)
    models, seeds = res.models, cfg.seed_list
    elapsed_s = read_wall_time(layout.wall_time) if elapsed_s is None else elapsed_s
    layout.figures.mkdir(parents=True, exist_ok=True)
    plot_curves(layout, models, seeds, layout.figures / "curves.png")
    zs = [lab for lab, task, _, _ in EVAL_METRICS if task == "zeroshot_classification"]
    comp = [lab for lab, task, _, _ in EVAL_METRICS if task == "compositional"]
    if cfg.world:
        plot_bars(res.table, zs, models, layout.figures / "zeroshot.png",
                  "zero-shot accuracy (embedded world, test split)")
        plot_bars(res.table, comp, models, layout.figures / "compositional.png",
                  "compositional accuracy (true caption beats every hard negative)", _chance(layout, models[0], seeds[0]))
    bars = (["## Zero-shot and compositional accuracy\n", "![zero-shot](figures/zeroshot.png)\n",
             "![compositional](figures/compositional.png)\n"] if cfg.world else [])
    env = environment()
    where = "the embedded world" if cfg.world else f"`{cfg.data}`"
    md = [f"# {' vs '.join(models)} on {where}\n", intro(res), data_line(res),
          "## What it shows\n", *verdict_lines(res), "## All metrics\n", *metrics_table(res),
          *vl_section(layout, res.pairs),
          "## Training\n", "![curves](figures/curves.png)\n", training_table(res), "",
          *bars, *_pictures(layout),
          "## How this was made\n", *commands_block(res), *how_made(res, elapsed_s),
          "Versions: " + ", ".join(f"{k} {v}" for k, v in env.items()) + "\n",
          ("This is a tiny model on synthetic data: it shows what the method does under control, "
           "not what it does on YFCC15M.\n" if cfg.world else
           "Tiny models trained briefly on this set alone: a like-for-like comparison of the two, not what "
           "either reaches when pretrained at scale.\n")]
    text = "\n".join(md)
    layout.report.write_text(text)
    body = markdown.markdown(text, extensions=["tables", "fenced_code"])
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}"
             "img{max-width:48%;vertical-align:top}")
    layout.report.with_suffix(".html").write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>hiclip demo</title>"
        f"<style>{style}</style></head><body>{body}</body></html>")
    return layout.report
