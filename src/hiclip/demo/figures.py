"""Pictures of the demo report: curves, bar charts, caption trees and image groups beside gold."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import nltk
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..data.world import ShapesWorld  # noqa: E402
from ..factory import unnormalise  # noqa: E402
from ..induce.draw import draw_groups, draw_tree, overlay  # noqa: E402
from ..induce.run import caption_trees, image_groups  # noqa: E402
from ..induce.scores import masks_to_grid  # noqa: E402
from ..induce.trees import Tree  # noqa: E402
from ..train.metrics import read_csv  # noqa: E402
from .layout import DemoLayout, Pictures  # noqa: E402


COLOURS = ("tab:red", "tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:gray",
           "tab:olive", "tab:cyan")
"""One colour per model, in the order of ``--models``."""


def _read(path: Path) -> list[dict[str, float]]:
    return read_csv(path) if path.is_file() else []


def _smooth(y: np.ndarray, k: int) -> np.ndarray:
    if len(y) < k or k < 2:
        return y
    return np.convolve(y, np.ones(k) / k, mode="valid")


def plot_curves(layout: DemoLayout, models: tuple[str, ...], seeds: list[int], path: Path) -> None:
    """Training loss (smoothed, mean over seeds), validation loss and R@1 of every model."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for colour, model in zip(COLOURS, models):
        runs = [layout.run(model, s).root for s in seeds]
        train = [_read(r / "metrics.csv") for r in runs]
        n = min(len(t) for t in train)
        if n:
            loss = np.mean([[row["loss"] for row in t[:n]] for t in train], axis=0)
            k = max(n // 40, 1)
            sm = _smooth(loss, k)
            axes[0].plot(np.arange(len(sm)) + k, sm, color=colour, label=model)
        val = [_read(r / "val.csv") for r in runs]
        m = min(len(v) for v in val)
        if m:
            steps = [row["step"] for row in val[0][:m]]
            for ax, key in ((axes[1], "val_loss"), (axes[2], "i2t_r1")):
                ys = np.array([[row[key] for row in v[:m]] for v in val])
                ax.plot(steps, ys.mean(0), "o-", color=colour, label=model)
                if len(val) > 1:
                    ax.fill_between(steps, ys.mean(0) - ys.std(0), ys.mean(0) + ys.std(0), color=colour, alpha=0.2)
    for ax, title in zip(axes, ("training loss (mean over seeds)", "validation loss", "validation R@1 image→text")):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_bars(table: dict[str, dict[str, list[float]]], labels: list[str], models: tuple[str, ...],
              path: Path, title: str, chance: dict[str, float] | None = None) -> None:
    """Grouped bars (mean ± sd over seeds) of ``labels`` for every model."""
    labels = [lab for lab in labels if lab in table]
    x = np.arange(len(labels))
    width = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(labels)), 4))
    for i, (colour, model) in enumerate(zip(COLOURS, models)):
        vals = [table[lab].get(model, [np.nan]) for lab in labels]
        means = [np.mean(v) for v in vals]
        sds = [np.std(v, ddof=1) if len(v) > 1 else 0 for v in vals]
        ax.bar(x + (i - (len(models) - 1) / 2) * width, means, width, yerr=sds, capsize=3, color=colour, label=model)
    if chance:
        for j, lab in enumerate(labels):
            if lab in chance:
                ax.hlines(chance[lab], j - 0.45, j + 0.45, colors="black", linestyles="dashed",
                          label="chance" if j == 0 else None)
    ax.set_xticks(x, [lab.replace("zero-shot ", "").replace("compositional: ", "") for lab in labels],
                  rotation=20, ha="right")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def gold_tree(text: str) -> Tree:
    """A PTB bracketed string -> :class:`Tree` over its words (labels dropped), for drawing."""
    def build(t: Any, start: int) -> Tree:
        if isinstance(t, str):
            return Tree((start, start + 1), [], None, [t])
        if len(t) == 1 and isinstance(t[0], str):  # preterminal
            return Tree((start, start + 1), [], None, [t[0]])
        kids, pos = [], start
        for child in t:
            node = build(child, pos)
            kids.append(node)
            pos = node.span[1]
        if len(kids) == 1:
            return kids[0]
        return Tree((start, pos), kids, None, [w for k in kids for w in k.words])
    return build(nltk.Tree.fromstring(text), 0)


def hierarchy_pictures(model: Any, transform: Any, tokenizer: Any, layout: DemoLayout, name: str, seed: int,
                       n: int = 3) -> Pictures:
    """Draw ``n`` caption trees and ``n`` image-group panels of ``model`` (run ``name``, ``seed``)
    beside the gold ones, into ``layout.figures``, for the samples of the world's test split that
    the report shows (world seed 0)."""
    pics = layout.figures
    pics.mkdir(parents=True, exist_ok=True)
    world = ShapesWorld("test", size=200, image_size=model.cfg.vision_cfg.image_size, seed=0)
    samples = sorted((world[i] for i in range(60)), key=lambda s: -len(s.objects))  # 2-3 objects first
    samples = [s for s in samples if 5 <= len(s.caption.split()) <= 12][:n] or samples[:n]
    trees, _ = caption_trees(model, tokenizer, [s.caption for s in samples])
    labels, _ = image_groups(model, transform, [s.image for s in samples])
    result = Pictures(name, seed)
    for i, (s, tree, lab) in enumerate(zip(samples, trees, labels)):
        draw_tree(tree, pics / f"tree{i}.png")
        draw_tree(gold_tree(s.tree), pics / f"tree{i}-gold.png")
        result.trees.append((s.caption, f"figures/tree{i}.png", f"figures/tree{i}-gold.png"))
        view = unnormalise(transform(s.image)).resize((256, 256))
        draw_groups(view, lab, pics / f"groups{i}.png")
        gold = masks_to_grid(s.masks, *lab.shape[1:])
        overlay(view, gold).save(pics / f"groups{i}-gold.png")
        result.groups.append((s.caption, f"figures/groups{i}.png", f"figures/groups{i}-gold.png"))
    return result
