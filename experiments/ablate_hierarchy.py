"""Ablations behind the hierarchy defaults (docs/design.md §5), on the world's validation split.

Each variant changes one thing of HiCLIP-Tiny (or is a CLIP-Tiny baseline); every variant
trains with the demo's recipe for the same steps and seeds, then is scored on the
*validation* split only: caption-tree F1 (every read-out, its thresholds chosen on the
first half of the validation captions and scored on the second), image-group ARI per
layer, retrieval R@1 and compositional accuracy. Defaults are chosen from this table,
never from the test split.

    python experiments/ablate_hierarchy.py train  --out ablation_out   # ~2 min a run on 2 quiet cores
    python experiments/ablate_hierarchy.py eval   --out ablation_out
    python experiments/ablate_hierarchy.py table  --out ablation_out   # -> ablation_out/table.md

Every phase skips what is already done, so an interrupted run continues. The base is the
current HiCLIP-Tiny config (bidirectional text since the table in design §5 chose it; that table's
rows were trained on the causal base of the time, and the `bidirectional` row then is the `hiclip`
row now). A variant's config is written at its first run and kept, so later seeds train the same
model even if the built-in configs change in between.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from hiclip.checkpoint import RunPaths
from hiclip.config import load_config
from hiclip.demo.layout import DemoLayout

BASE, CLIP = "HiCLIP-Tiny", "CLIP-Tiny"


def _set(path: str, value):
    def change(cfg: dict) -> None:
        *parents, leaf = path.split(".")
        for key in parents:
            cfg = cfg.setdefault(key, {})
        cfg[leaf] = value
    return change


BUDGET = [0.2, 0.4, 0.6, 0.8]
"""The budget rows' shares of edges merged per hierarchy layer."""

VARIANTS: dict[str, tuple[str, list]] = {
    # name: (base model, changes to its config dict)
    "hiclip": (BASE, []),
    "specials_out": (BASE, [_set("text_cfg.specials_in_chain", False)]),
    "specials_out_text_avg": (BASE, [_set("text_cfg.specials_in_chain", False), _set("text_cfg.pool", "avg")]),
    "pool_tok": (BASE, [_set("vision_cfg.pool", "tok")]),
    "pool_tok_avg": (BASE, [_set("vision_cfg.pool", "tok_avg")]),
    "causal": (BASE, [_set("text_cfg.causal", True)]),
    "renormalized": (BASE, [_set("vision_cfg.hierarchy.renormalize", True),
                            _set("text_cfg.hierarchy.renormalize", True)]),
    "link_dim_8": (BASE, [_set("vision_cfg.hierarchy.dim", 8), _set("text_cfg.hierarchy.dim", 8)]),
    "link_dim_128": (BASE, [_set("vision_cfg.hierarchy.dim", 128), _set("text_cfg.hierarchy.dim", 128)]),
    "layers_6": (BASE, [_set("vision_cfg.layers", 6), _set("text_cfg.layers", 6)]),
    # link rules (docs/design.md §1.2); "softmax" is the paper's rule, spelled out so that the row
    # keeps its meaning when the default changes
    **{rule: (BASE, [_set("vision_cfg.hierarchy.link", rule), _set("text_cfg.hierarchy.link", rule)])
       for rule in ("softmax", "softmax_none", "sigmoid", "distance")},
    **{f"{rule}_renormalized": (BASE, [_set("vision_cfg.hierarchy.link", rule), _set("text_cfg.hierarchy.link", rule),
                                       _set("vision_cfg.hierarchy.renormalize", True),
                                       _set("text_cfg.hierarchy.renormalize", True)])
       for rule in ("softmax_none", "sigmoid", "distance")},
    "constituent": (BASE, [_set("constituent_loss", 0.5)]),  # the span–image constituent loss (design §1.8)
    "distance_constituent": (BASE, [_set("vision_cfg.hierarchy.link", "distance"),
                                    _set("text_cfg.hierarchy.link", "distance"), _set("constituent_loss", 0.5)]),
    # the per-sample link budget (design §1.2): distance links at fixed shares of standardised scores,
    # evenly spaced over the 4 hierarchy layers (not tuned)
    **{name: (BASE, [_set("vision_cfg.hierarchy.link", "distance"), _set("text_cfg.hierarchy.link", "distance"),
                     _set("vision_cfg.hierarchy.budget", BUDGET), _set("text_cfg.hierarchy.budget", BUDGET),
                     *([_set("constituent_loss", 0.5)] if name.endswith("constituent") else [])])
       for name in ("distance_budget", "distance_budget_constituent")},
    # the constituent loss against the best-matching image group (design §1.8, constituent_target
    # "groups"), on spans of 2-4 tokens (all spans cost 5x a HiCLIP-Tiny step), on either link rule
    "groups": (BASE, [_set("constituent_loss", 0.5), _set("constituent_target", "groups"),
                      _set("constituent_max_span", 4)]),
    "distance_groups": (BASE, [_set("vision_cfg.hierarchy.link", "distance"), _set("text_cfg.hierarchy.link", "distance"),
                               _set("constituent_loss", 0.5), _set("constituent_target", "groups"),
                               _set("constituent_max_span", 4)]),
    # a control, not a variant: the base model at its initialisation (seeded), through the same read-outs
    "untrained": (BASE, []),
    "clip": (CLIP, []),
    "clip_causal": (CLIP, [_set("text_cfg.causal", True)]),
}

UNTRAINED = "untrained"

RECIPE = dict(steps=200, batch_size=64, lr=1e-3, warmup_steps=40)
"""The demo's plan (hiclip.demo.DemoConfig): every variant trains exactly like the demo's models."""


def variant_config(name: str) -> dict:
    model, changes = VARIANTS[name]
    cfg = load_config(model).to_dict()
    for change in changes:
        change(cfg)
    return cfg


DEMO_RUNS = {"hiclip": "HiCLIP-Tiny", "clip": "CLIP-Tiny"}
"""Variants that are the demo's own models: their runs are the demo's (same recipe, same seeds)."""


def run_place(out: Path, name: str, demo_out: Path) -> tuple[DemoLayout, str]:
    """The demo-style folder that holds variant `name`'s runs, and its model name there: the demo's own
    runs for its models, else `out` (which keeps its runs as a demo folder does)."""
    return (DemoLayout(demo_out), DEMO_RUNS[name]) if name in DEMO_RUNS else (DemoLayout(out), name)


def run_dir(out: Path, name: str, seed: int, demo_out: Path) -> Path:
    """Where variant `name`'s run for `seed` lives (:func:`run_place`)."""
    layout, model = run_place(out, name, demo_out)
    return layout.run(model, seed).root


def summary_path(out: Path, name: str, seed: int, demo_out: Path) -> Path:
    """The summary a finished run of variant `name` leaves."""
    layout, model = run_place(out, name, demo_out)
    return layout.summary(model, seed)


def _process_token(pid: int) -> str | None:
    """A token that names one process across PID reuse and reboots (Linux: boot id and the
    process's start time); None when the process does not exist."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        start = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None
    return f"{socket.gethostname()}:{boot}:{pid}:{start}"


def _claim_is_live(holder: str) -> bool:
    """Whether the process named in a claim still runs. Without /proc (not Linux) a claim is a bare
    PID, checked with a null signal; on Linux a bare PID (an older version's claim) cannot be
    checked, since the PID may name another process by now, and counts as gone."""
    if holder.count(":") == 3:
        pid = holder.split(":")[2]
        return pid.isdigit() and _process_token(int(pid)) == holder
    if not holder.isdigit() or _process_token(os.getpid()) is not None:
        return False
    try:
        os.kill(int(holder), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


def _claim(rd: Path) -> bool:
    """Take a run for this process (several processes may share the work): a claim file created
    exclusively, holding the claimer's process token (a bare PID without /proc). A claim whose
    process is gone is taken over (:func:`_claim_is_live`); its run resumes from the latest checkpoint."""
    rd.mkdir(parents=True, exist_ok=True)
    claim, mine = rd / "claim", _process_token(os.getpid()) or str(os.getpid())
    try:
        fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        if _claim_is_live(claim.read_text().strip()):
            return False  # another live process trains it
        claim.write_text(mine)
        return True
    os.write(fd, mine.encode())
    os.close(fd)
    return True


def train_all(out: Path, names: list[str], seeds: list[int], steps: int, demo_out: Path) -> None:
    from hiclip.demo.config import DemoConfig
    from hiclip.demo.pipeline import train_config
    from hiclip.train.loop import train

    (out / "configs").mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        for name in names:
            if name in DEMO_RUNS:
                if not summary_path(out, name, seed, demo_out).is_file():
                    print(f"{name}: run `hiclip demo --out {demo_out}` for its runs", flush=True)
                continue
            cfg_path = out / "configs" / f"{name}.json"
            if not cfg_path.is_file():  # fixed at the variant's first run: every seed trains the same model
                cfg_path.write_text(json.dumps(variant_config(name), indent=1))
            rd = run_dir(out, name, seed, demo_out)
            done = summary_path(out, name, seed, demo_out)
            if done.is_file() or not _claim(rd):
                continue
            if name == UNTRAINED:
                done.write_text(json.dumps({"steps": 0, "seed": seed}, indent=1))
                continue
            t0 = time.time()
            demo = DemoConfig(steps=steps, progress=False)
            summary = train(replace(train_config(demo, str(cfg_path), seed, steps), output_dir=str(rd)))
            if summary["steps"] < steps:  # interrupted (signal): the run resumes from its checkpoint next time
                print(f"{name} seed {seed}: stopped at step {summary['steps']} of {steps}", flush=True)
                return
            summary["wall_s"] = time.time() - t0
            done.write_text(json.dumps(summary, indent=1))
            print(f"{name} seed {seed}: {summary['steps']} steps in {summary['wall_s']:.0f}s", flush=True)


def eval_all(out: Path, names: list[str], seeds: list[int], n: int, demo_out: Path) -> None:
    from hiclip.eval.run import evaluate_model
    from hiclip.factory import load_for_inference
    from hiclip.induce.run import validation_report

    for seed in seeds:
        for name in names:
            rd = run_dir(out, name, seed, demo_out)
            path = rd / "val_scores.json"
            ckpt = None if name == UNTRAINED else RunPaths(rd).latest
            if path.is_file() or not summary_path(out, name, seed, demo_out).is_file():
                continue
            spec = DEMO_RUNS.get(name) or str(out / "configs" / f"{name}.json")  # as the run was trained
            torch.manual_seed(seed)  # the untrained control's initialisation
            model, transform, tokenizer = load_for_inference(spec, ckpt, "cpu")
            records = evaluate_model(model, transform, tokenizer, model_name=name,
                                     pretrained=str(ckpt) if ckpt else UNTRAINED,
                                     tasks=("zeroshot_retrieval", "compositional"), datasets=("world",),
                                     output_dir=rd / "eval", verbose=False, batch_size=128,
                                     world_size=n, seed=0, world_split="val",
                                     world_image_size=model.cfg.vision_cfg.image_size)
            scores = {}
            for r in records:
                m = r["metrics"]
                if r["task"] == "zeroshot_retrieval":
                    # CLIP_benchmark's names: "text retrieval" finds captions for an image (image→text)
                    scores["i2t_r1"], scores["t2i_r1"] = m["text_retrieval_recall@1"], m["image_retrieval_recall@1"]
                else:
                    scores["compositional"] = m["acc"]
            if model.has_hierarchy:
                scores |= validation_report(model, transform, tokenizer, n=n)
            path.write_text(json.dumps(scores, indent=1))
            print(f"{name} seed {seed}: {json.dumps({k: v for k, v in scores.items() if not isinstance(v, (dict, list))})}",
                  flush=True)


COLUMNS = [("tree_f1", "tree F1"), ("tree_f1_topdown", "tree F1 (top-down, τ 0.5)"),
           ("right_branching_f1", "right-branching F1"),
           ("ari", "ARI (val-chosen links, layer, τ)"), ("ari_cumulative", "ARI (cumulative links)"),
           ("colour_ari", "colour control ARI"), ("i2t_r1", "I→T R@1"), ("t2i_r1", "T→I R@1"),
           ("compositional", "compositional acc")]


def comparisons(data: dict[str, list[dict]], reference: str) -> str:
    """Every variant against ``reference``: difference of means, the 2-sd rule, Welch's two-sided p."""
    from hiclip.eval.comparison import significant, welch_p

    rows = [f"Against `{reference}` (difference of means; **bold**: beyond 2 pooled sd; Welch two-sided p):", "",
            "| variant | " + " | ".join(c[1] for c in COLUMNS) + " |", "|---|" + "---:|" * len(COLUMNS)]
    for name, runs in data.items():
        if name == reference or not runs:
            continue
        cells = []
        for key, _ in COLUMNS:
            a = [r[key] for r in runs if r.get(key) is not None]
            b = [r[key] for r in data[reference] if r.get(key) is not None]
            if not a or not b:
                cells.append("—")
                continue
            diff, p = float(np.mean(a) - np.mean(b)), welch_p(a, b)
            cell = f"{diff:+.3f}" + (f" (p {p:.2g})" if p is not None and p == p else "")
            cells.append(f"**{cell}**" if significant(a, b) else cell)
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def table(out: Path, names: list[str], seeds: list[int], demo_out: Path, reference: str = "softmax") -> str:
    rows = ["| variant | " + " | ".join(c[1] for c in COLUMNS) + " | seeds |",
            "|---|" + "---:|" * (len(COLUMNS) + 1)]
    data = {}
    for name in names:
        runs = [json.loads(p.read_text()) for s in seeds if (p := run_dir(out, name, s, demo_out) / "val_scores.json").is_file()]
        data[name] = runs
        cells = []
        for key, _ in COLUMNS:
            vals = [r[key] for r in runs if r.get(key) is not None]
            cells.append(f"{np.mean(vals):.3f} ± {np.std(vals, ddof=1) if len(vals) > 1 else 0:.3f}" if vals else "—")
        rows.append(f"| {name} | " + " | ".join(cells) + f" | {len(runs)} |")
    text = "\n".join(rows)
    if reference in data and data[reference]:
        text += "\n\n" + comparisons(data, reference)
    (out / "table.md").write_text(text + "\n")
    (out / "table.json").write_text(json.dumps(data, indent=1))
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("phase", choices=["train", "eval", "table", "all"])
    ap.add_argument("--out", default="ablation_out")
    ap.add_argument("--demo-out", default="demo_out", help="the demo's output folder (runs of hiclip / clip)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=RECIPE["steps"])
    ap.add_argument("--n", type=int, default=400, help="validation samples per score")
    args = ap.parse_args()
    out, seeds, demo_out = Path(args.out), list(range(args.seeds)), Path(args.demo_out)
    if args.phase in ("train", "all"):
        train_all(out, args.variants, seeds, args.steps, demo_out)
    if args.phase in ("eval", "all"):
        eval_all(out, args.variants, seeds, args.n, demo_out)
    if args.phase in ("table", "all"):
        print(table(out, args.variants, seeds, demo_out))


if __name__ == "__main__":
    main()
