"""From a model to hierarchies: caption trees and image groups for `hiclip parse`, `hiclip groups`
and `hiclip induce-eval` (the model's link read-out -> :mod:`trees` / :mod:`groups` -> :mod:`scores`).
"""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..data.skips import Skip, check_caption
from .groups import group_labels
from .scores import bracket_report, group_report, masks_to_grid, read_trees
from .trees import Tree, induce_tree

_WORD = re.compile(r"\w", re.UNICODE)


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def parseable(text: str) -> None:
    """A caption with words to parse, by training's caption check plus a word: ValueError otherwise."""
    try:
        check_caption(text)
    except Skip as s:
        raise ValueError(f"caption {text!r}: {s.reason}, nothing to parse") from None
    if not _WORD.search(text):
        raise ValueError(f"caption {text!r} is only punctuation: nothing to parse")


@torch.no_grad()
def caption_trees(model: Any, tokenizer: Any, captions: Sequence[str], threshold: float = 0.5,
                  batch_size: int = 256, progress: bool = False) -> tuple[list[Tree], float]:
    """Induce a tree per caption. Returns (trees, seconds spent in the encoder forward pass).

    Captions longer than the context are truncated by the tokenizer; their tree is
    marked ``truncated`` (printed with a trailing "…").
    """
    for c in captions:
        parseable(c)
    ctx = model.context_length
    trees, forward_s = [], 0.0
    for start in tqdm(range(0, len(captions), batch_size), desc="captions", disable=not progress):
        chunk = list(captions[start:start + batch_size])
        tokens = tokenizer(chunk).to(_device_of(model))
        t0 = time.perf_counter()
        _, hier = model.encode_text(tokens, return_hierarchy=True)
        forward_s += time.perf_counter() - t0
        links = hier.links.float().cpu().numpy()
        for b, text in enumerate(chunk):
            n = int(hier.lengths[b])
            ids = tokens[b, 1:1 + n].tolist()
            truncated = len(tokenizer.encode(text)) > ctx - 2
            trees.append(induce_tree(links[b, :, :max(n - 1, 0)], ids, threshold, truncated,
                                     decoder=tokenizer.decoder))
    return trees, forward_s


@torch.no_grad()
def image_groups(model: Any, transform: Callable, images: Sequence[Image.Image], threshold: float = 0.5,
                 batch_size: int = 128, progress: bool = False) -> tuple[list[np.ndarray], float]:
    """Per image the per-layer region labels (L, H, W). Returns (labels, encoder seconds)."""
    out, forward_s = [], 0.0
    for start in tqdm(range(0, len(images), batch_size), desc="images", disable=not progress):
        batch = torch.stack([transform(im) for im in images[start:start + batch_size]]).to(_device_of(model))
        t0 = time.perf_counter()
        _, hier = model.encode_image(batch, return_hierarchy=True)
        forward_s += time.perf_counter() - t0
        out.extend(group_labels(hier.h.float().cpu().numpy(), hier.v.float().cpu().numpy(), threshold))
    return out, forward_s


def induce_eval(model: Any, transform: Callable, tokenizer: Any, n: int = 500, threshold: float = 0.5,
                seed: int = 0, split: str = "test", gold_trees: str | Path | None = None,
                progress: bool = True) -> dict[str, Any]:
    """Score induced caption trees and image groups against gold structure.

    Captions and gold trees come from the embedded world's ``split`` (``n`` samples,
    rendered at the model's image size), or from ``gold_trees``: a file of PTB-style
    bracketed trees, one per line, whose leaves are the sentence. Images and gold masks
    come from the embedded world. Returns a JSON-ready dict with the scores, the
    baselines and the time of induction vs the encoder forward passes.
    """
    from ..data.world import ShapesWorld
    import nltk

    size = model.cfg.vision_cfg.image_size
    world = ShapesWorld(split=split, size=n, image_size=size, seed=seed)
    samples = [world[i] for i in tqdm(range(n), desc="rendering", disable=not progress)]
    if gold_trees is not None:
        gold = read_trees(gold_trees)
        captions = [" ".join(t.leaves()) for t in gold]
    else:
        gold = [nltk.Tree.fromstring(s.tree) for s in samples]
        captions = [s.caption for s in samples]
    report: dict[str, Any] = {"n_captions": len(captions), "n_images": n, "threshold": threshold}
    if model.cfg.text_cfg.hierarchy.enabled:
        t0 = time.perf_counter()
        trees, fwd = caption_trees(model, tokenizer, captions, threshold, progress=progress)
        report["trees"] = bracket_report(trees, gold, seed=seed)
        report["trees"]["timing_s"] = {"encoder": fwd, "induction": time.perf_counter() - t0 - fwd}
        report["examples"] = [str(t) for t in trees[:5]]
    if model.cfg.vision_cfg.hierarchy.enabled:
        t0 = time.perf_counter()
        labels, fwd = image_groups(model, transform, [s.image for s in samples], threshold, progress=progress)
        grid = model.visual.grid
        gold_grids = [masks_to_grid(s.masks, *grid) for s in samples]
        report["groups"] = group_report(labels, gold_grids)
        report["groups"]["timing_s"] = {"encoder": fwd, "induction": time.perf_counter() - t0 - fwd}
    return report


def format_report(report: dict[str, Any]) -> str:
    """A short plain-text table of an :func:`induce_eval` report."""
    lines = []
    if "trees" in report:
        t = report["trees"]
        lines.append(f"Caption trees ({report['n_captions']} captions, unlabeled bracket F1, corpus / sentence):")
        for name in ("induced", "left_branching", "right_branching", "random"):
            r = t[name]
            lines.append(f"  {name:16s} F1 {r['corpus_f1']:.3f} / {r['sentence_f1']:.3f}   "
                         f"P {r['corpus_precision']:.3f}  R {r['corpus_recall']:.3f}")
    if "groups" in report:
        g = report["groups"]
        lines.append(f"Image groups ({g['n_images']} images; per layer, low -> high):")
        lines.append("  ARI       " + "  ".join(f"{x:.3f}" for x in g["ari"]))
        lines.append("  best IoU  " + "  ".join(f"{x:.3f}" if x is not None else "  -  " for x in g["best_iou"]))
        for name in [k for k in g if k.startswith("baseline_")]:
            b = g[name]
            lines.append(f"  {name[9:]:8s}  ARI {b['ari']:.3f}  best IoU {b['best_iou']:.3f}")
    return "\n".join(lines)
