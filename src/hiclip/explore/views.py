"""What the explorer shows, as plain functions (no gradio): a caption's tree and its links per
layer, an image's groups per layer, the world's examples, and the default model.

Every view takes a :class:`Panel` (one loaded model), so two checkpoints are shown side by side
by calling the same function on each.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from .. import factory
from ..checkpoint import RunPaths, read_info, run_name
from ..data.world import ShapesWorld
from ..induce.draw import draw_tree, new_figure, overlay
from ..induce.run import caption_links, image_groups, trees_from_links
from ..induce.trees import Readout, Tree, word_links, word_spans
from ..model import HiCLIP

DEMO_OUT = Path("demo_out")
"""Where ``make demo`` writes (``hiclip demo --out demo_out``)."""


def demo_checkpoint(out: Path = DEMO_OUT, model: str = "HiCLIP-Tiny", seed: int = 0) -> Path:
    """The demo's last checkpoint of ``model`` trained with ``seed``; FileNotFoundError saying how to get one."""
    path = RunPaths(out / "runs" / run_name(model, seed)).latest
    if not path.is_file():
        raise FileNotFoundError(f"no model given and no demo checkpoint at {path}: run `make demo` first, "
                                "or pass --model CKPT")
    return path


@dataclass
class Panel:
    """One model of the explorer: ``label`` names it on the page; ``random`` when its weights
    are a fresh initialisation (a bare config name)."""
    label: str
    model: HiCLIP
    transform: Callable
    tokenizer: Callable
    random: bool


def load_panel(spec: str, device: str = "cpu") -> Panel:
    """A model by name, ``local-dir:`` folder, JSON config or checkpoint path (``--model``)."""
    name, weights = factory.resolve_model(spec)
    model, transform, tokenizer = factory.load_for_inference(name, weights, device)
    random = weights is None and not name.startswith(factory.LOCAL_DIR)
    if not model.has_hierarchy:
        raise ValueError(f"{spec}: a plain CLIP model has no hierarchy to explore; use a HiCLIP-* model")
    return Panel(panel_label(spec, name, weights), model, transform, tokenizer, random)


def panel_label(spec: str, name: str, weights: str | Path | None) -> str:
    """"HiCLIP-Tiny (random weights)", or the model with its training step and the file's last three
    path parts ("HiCLIP-Tiny, step 800: HiCLIP-Tiny-s0/checkpoints/latest.pt"), or the ``local-dir:`` name."""
    if name.startswith(factory.LOCAL_DIR):
        return name
    if weights is None:
        return f"{spec} (random weights)"
    step = read_info(weights).get("step")
    return f"{name}{'' if step is None else f', step {step}'}: {'/'.join(Path(weights).parts[-3:])}"


def caption_view(panel: Panel, caption: str, method: str = "topdown", threshold: float = 0.5
                 ) -> tuple[Tree, np.ndarray, list[str]]:
    """-> (the caption's tree by ``method`` at ``threshold``, its word links (L, M-1), its M words).

    A caption without words: ValueError (:func:`hiclip.induce.run.parseable`)."""
    if not panel.model.cfg.text_cfg.has_hierarchy:
        raise ValueError(f"{panel.label}: no hierarchy in the text tower")
    items, _ = caption_links(panel.model, panel.tokenizer, [caption])
    (tree,) = trees_from_links(items, Readout(method, threshold), panel.tokenizer.decoder)
    links, ids, _ = items[0]
    spans = word_spans(ids, panel.tokenizer.decoder)
    return tree, word_links(links, spans), tree.words


def links_figure(links: np.ndarray, words: list[str], threshold: float, title: str = "") -> Figure:
    """Word links (L, M-1) as a heat map: one row per layer (lowest at the bottom), one column per
    gap between neighbouring words, each cell printed; cells at or above ``threshold`` framed."""
    layers, gaps = links.shape
    fig = new_figure(max(4.0, 0.9 * gaps + 1.5), max(2.0, 0.45 * layers + 1.2))
    ax = fig.add_subplot()
    ax.imshow(links, origin="lower", cmap="viridis", vmin=0, vmax=1, aspect="auto")
    for (layer, gap), value in np.ndenumerate(links):
        ax.text(gap, layer, f"{value:.2f}", ha="center", va="center", fontsize=7,
                color="black" if value > 0.6 else "white")
        if value >= threshold:
            ax.add_patch(_frame(gap, layer))
    ax.set_xticks(range(gaps), [f"{a}|{b}" for a, b in zip(words, words[1:])], rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(layers), [f"layer {l}" for l in range(layers)], fontsize=8)
    ax.set_title(title or f"links between neighbouring words (framed: ≥ {threshold:g})", fontsize=9)
    fig.tight_layout()
    return fig


def _frame(x: float, y: float):
    from matplotlib.patches import Rectangle
    return Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.5)


def tree_picture(tree: Tree) -> Image.Image:
    """The tree as :func:`hiclip.induce.draw.draw_tree` draws it (words at the leaves, nodes
    labelled with the layer they formed at), as an RGB image."""
    buf = io.BytesIO()
    draw_tree(tree, buf)  # matplotlib writes PNG to a file object
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def image_view(panel: Panel, image: Image.Image, threshold: float = 0.5
               ) -> tuple[list[Image.Image], list[int]]:
    """The image's groups per layer, lowest first: overlays on the crop the model saw, and the
    number of regions of each layer."""
    if not panel.model.cfg.vision_cfg.has_hierarchy:
        raise ValueError(f"{panel.label}: no hierarchy in the image tower")
    rgb = image.convert("RGB")
    (labels,), _ = image_groups(panel.model, panel.transform, [rgb], threshold)
    view = factory.unnormalise(panel.transform(rgb))
    return [overlay(view, lab) for lab in labels], [len(np.unique(lab)) for lab in labels]


def world_examples(folder: Path, n: int = 6, image_size: int = 64, seed: int = 0) -> list[tuple[Path, str]]:
    """The first ``n`` scenes of the world's validation split, written as PNGs under ``folder``:
    [(image file, its caption)]."""
    world = ShapesWorld(split="val", size=n, image_size=image_size, seed=seed)
    out = []
    for i in range(n):
        sample = world[i]
        path = Path(folder) / f"world-val-{i}.png"
        sample.image.save(path)
        out.append((path, sample.caption))
    return out
