"""Pictures of induced trees and region hierarchies (matplotlib Agg, PIL).

Region colours: a region is coloured by the smallest (row-major) patch index it
contains, from a fixed palette over patch indices, so when regions merge the merged
region keeps the colour of the one holding the smaller index.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw

from hiclip.induce.trees import Tree


def new_figure(width: float, height: float) -> Figure:
    """A figure on the Agg canvas (no pyplot, no global backend change)."""
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _layout(tree: Tree, xy: dict[int, tuple[float, float]]) -> tuple[float, float]:
    """Leaves at (word index, 0); a node above its children's mean x, one above the highest child."""
    if not tree.children:
        xy[id(tree)] = (float(tree.span[0]), 0.0)
    else:
        kids = [_layout(c, xy) for c in tree.children]
        xy[id(tree)] = (float(np.mean([k[0] for k in kids])), max(k[1] for k in kids) + 1.0)
    return xy[id(tree)]


def _draw_node(ax: Any, tree: Tree, xy: dict[int, tuple[float, float]]) -> None:
    x, y = xy[id(tree)]
    if not tree.children:
        ax.text(x, y, tree.words[0], ha="center", va="top", rotation=30 if len(tree.words[0]) > 6 else 0)
        return
    for child in tree.children:
        cx, cy = xy[id(child)]
        ax.plot([x, cx], [y, cy], color="0.4", lw=1, zorder=1)
        _draw_node(ax, child, xy)
    label = "–" if tree.layer is None else str(tree.layer)
    ax.text(x, y, label, ha="center", va="center", zorder=2, bbox={"boxstyle": "circle", "fc": "white", "ec": "0.4"})


def draw_tree(tree: Tree, path: str | Path) -> None:
    """Save a tree picture (format from the suffix: .png, .svg, …): words at the leaves,
    internal nodes labelled with the layer at which they formed ("–": never merged)."""
    xy: dict[int, tuple[float, float]] = {}
    _, height = _layout(tree, xy)
    n_words = tree.span[1] - tree.span[0]
    fig = new_figure(max(3.0, 0.8 * n_words), max(2.0, 0.6 * (height + 2)))
    ax = fig.add_subplot()
    _draw_node(ax, tree, xy)
    ax.set_xlim(tree.span[0] - 0.7, tree.span[1] - 0.3)
    ax.set_ylim(-1.0, height + 0.5)
    ax.set_axis_off()
    ax.set_title(str(tree), fontsize=8)
    fig.savefig(path, bbox_inches="tight")


def _palette(n: int) -> np.ndarray:
    """n fixed, well-spread RGB colours (n, 3) uint8 (golden-ratio hue steps)."""
    hsv = [((i * 0.618034) % 1.0, 0.75 if i % 2 else 0.95, 0.95 if i % 3 else 0.75) for i in range(n)]
    rgb = [colorsys.hsv_to_rgb(*c) for c in hsv]
    return (np.asarray(rgb) * 255).astype(np.uint8)


def _region_colours(labels: np.ndarray) -> np.ndarray:
    """labels (H, W) -> colours (H, W, 3): each region coloured by its smallest patch index."""
    flat = labels.ravel()
    first = np.full(flat.max() + 1, flat.size)
    np.minimum.at(first, flat, np.arange(flat.size))
    return _palette(flat.size)[first[flat]].reshape(*labels.shape, 3)


def overlay(image: Image.Image, labels: Any, cell: int | None = None, alpha: float = 0.45) -> Image.Image:
    """The image resized to the grid (H·cell, W·cell) with regions of labels (H, W) blended
    over it and black borders between patches of different regions."""
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise ValueError(f"expected labels (H, W), got shape {lab.shape}")
    rows, cols = lab.shape
    cell = cell or max(4, 256 // max(rows, cols))
    base = np.asarray(image.convert("RGB").resize((cols * cell, rows * cell)), dtype=np.float64)
    colour = np.repeat(np.repeat(_region_colours(lab), cell, axis=0), cell, axis=1)
    out = Image.fromarray(((1 - alpha) * base + alpha * colour).astype(np.uint8))
    pen = ImageDraw.Draw(out)
    for r, c in zip(*np.nonzero(lab[:, :-1] != lab[:, 1:])):
        pen.line([((c + 1) * cell, r * cell), ((c + 1) * cell, (r + 1) * cell)], fill=(0, 0, 0), width=2)
    for r, c in zip(*np.nonzero(lab[:-1, :] != lab[1:, :])):
        pen.line([(c * cell, (r + 1) * cell), ((c + 1) * cell, (r + 1) * cell)], fill=(0, 0, 0), width=2)
    return out


def _check_labels(labels: Any) -> np.ndarray:
    lab = np.asarray(labels)
    if lab.ndim != 3 or not np.issubdtype(lab.dtype, np.integer) or lab.min(initial=0) < 0:
        raise ValueError(f"expected non-negative integer labels (L, H, W), got {lab.dtype} {lab.shape}")
    return lab


def draw_groups(image: Image.Image, labels: Any, path: str | Path, layers: Sequence[int] | None = None) -> None:
    """Save one panel per layer (all, or ``layers``) of labels (L, H, W) over the image."""
    lab = _check_labels(labels)
    chosen = list(range(len(lab))) if layers is None else list(layers)
    if not chosen or any(not 0 <= l < len(lab) for l in chosen):
        raise ValueError(f"expected layers in 0..{len(lab) - 1}, got {chosen}")
    fig = new_figure(3.0 * len(chosen), 3.3)
    for i, layer in enumerate(chosen):
        ax = fig.add_subplot(1, len(chosen), i + 1)
        ax.imshow(overlay(image, lab[layer]))
        ax.set_title(f"layer {layer}: {len(np.unique(lab[layer]))} regions", fontsize=9)
        ax.set_axis_off()
    fig.savefig(path, bbox_inches="tight")


def groups_gif(image: Image.Image, labels: Any, path: str | Path, duration_ms: int = 700) -> None:
    """Save an animated GIF with one frame per layer of labels (L, H, W), looping."""
    lab = _check_labels(labels)
    frames = []
    for layer in range(len(lab)):
        frame = overlay(image, lab[layer])
        pen = ImageDraw.Draw(frame)
        pen.text((4, 4), f"layer {layer}", fill=(255, 255, 255), stroke_width=1, stroke_fill=(0, 0, 0))
        frames.append(frame)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=duration_ms, loop=0)
