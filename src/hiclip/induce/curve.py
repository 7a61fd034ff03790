"""Hierarchy quality along training: caption-tree F1 and image-group ARI of every checkpoint
of a run (``hiclip induce-eval --checkpoints DIR``), as a table and a plot."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .. import factory
from ..checkpoint import RunPaths, read_info
from .draw import new_figure
from .run import induce_eval


def run_checkpoints(directory: str | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of the ``step_N.pt`` files of a run (its folder or its ``checkpoints/``
    folder), and of ``latest.pt`` when it holds a later step; sorted by step."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint folder not found: {directory}")
    run = RunPaths(directory.parent if directory.name == "checkpoints" else directory)
    found = dict(run.step_checkpoints())
    if run.latest.is_file():
        step = read_info(run.latest).get("step")
        if isinstance(step, int) and step not in found:
            found[step] = run.latest
    if not found:
        raise ValueError(f"no step_N.pt or latest.pt checkpoints in {run.checkpoints}")
    return sorted(found.items())


def checkpoint_curve(directory: str | Path, n: int = 300, tune_n: int | None = None, device: str = "cpu",
                     progress: bool = True) -> list[dict[str, Any]]:
    """Per checkpoint: step, tree F1 (read-out chosen on validation), top-down F1 and
    right-branching F1, and ARI at the layer and threshold chosen on validation (test split)."""
    rows = []
    for step, path in tqdm(run_checkpoints(directory), desc="checkpoints", disable=not progress):
        model, transform, tokenizer = factory.load_for_inference(str(path), None, device)
        report = induce_eval(model, transform, tokenizer, n=n, tune_n=tune_n, progress=False)
        row: dict[str, Any] = {"step": step, "checkpoint": str(path)}
        if "trees" in report:
            t = report["trees"]
            row |= {"tree_f1": t["induced"]["corpus_f1"], "readout": t["readout"],
                    "tree_f1_topdown": t.get("fixed_readout", t["induced"])["corpus_f1"],
                    "right_branching_f1": t["right_branching"]["corpus_f1"], "random_f1": t["random"]["corpus_f1"]}
        if "groups" in report:
            row["ari"] = report["groups"]["chosen"]["ari"]
        rows.append(row)
    return rows


def plot_curve(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Tree F1 (with its baselines) and ARI against the training step, one PNG."""
    fig = new_figure(6.4, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    steps = [r["step"] for r in rows]
    for key, label, style in (("tree_f1", "tree F1 (val-chosen read-out)", "o-"),
                              ("tree_f1_topdown", "tree F1 (top-down, τ 0.5)", "s--"),
                              ("right_branching_f1", "right-branching F1", ":"),
                              ("random_f1", "random-tree F1", ":"),
                              ("ari", "image groups ARI", "^-")):
        if all(key in r for r in rows):
            ax.plot(steps, [r[key] for r in rows], style, label=label)
    ax.set_xlabel("training step")
    ax.set_ylabel("score (test split)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def format_curve(rows: list[dict[str, Any]]) -> str:
    """The curve as a plain-text table."""
    lines = ["step    tree F1  top-down  right-br.  ARI"]
    for r in rows:
        cells = [f"{r[k]:.3f}" if k in r else "  -  " for k in ("tree_f1", "tree_f1_topdown", "right_branching_f1", "ari")]
        lines.append(f"{r['step']:<7d} " + "    ".join(cells))
    return "\n".join(lines)
