"""Controls and diagnostics of induced hierarchies (docs/design.md §2.4): what the links do per
layer, and what a grouping that needs no model achieves.

* :func:`raw_links` — each layer's own link ``â^l = (a^l − a^{l−1}) / (1 − a^{l−1})`` recovered from
  the cumulative ones (NaN where the previous layer had already joined the edge, ``a^{l−1} = 1``).
* :func:`indifference` — the links of the paper's neighbour softmax when a token has no preference
  (``p = 1/k`` for k neighbours): ``sqrt(1/(k_i k_j))``, 1/2 on a chain, ≈ 0.28 on an 8×8 grid.
* :func:`patch_colours` / :func:`colour_links` — a no-model grouping: adjacent patches linked by the
  similarity of their mean colours, ``1 − |c_i − c_j|₂ / √3``; its threshold is chosen on validation
  like the model's.
* :func:`gap_table` — mean raw link per layer by the part-of-speech pair of the gold gap ("DT|JJ").
* :func:`edge_table` — mean raw link per layer by image edge type: inside one object, on an object's
  boundary, between two background patches.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import nltk
import numpy as np
from PIL import Image

from .trees import word_links, word_spans


def raw_links(cum: np.ndarray, axis: int = 0) -> np.ndarray:
    """Cumulative links (layers along ``axis``) -> each layer's own links, same shape (float64)."""
    a = np.moveaxis(np.asarray(cum, dtype=np.float64), axis, 0)
    prev = np.concatenate([np.zeros_like(a[:1]), a[:-1]])
    room = 1.0 - prev
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(room > 1e-12, (a - prev) / room, np.nan)
    return np.moveaxis(out, 0, axis)


def indifference(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Neighbour-softmax links with no preference on a rows×cols grid: h (H, W-1), v (H-1, W)."""
    k = np.full((rows, cols), 4.0)
    k[0] -= 1
    k[-1] -= 1
    k[:, 0] -= 1
    k[:, -1] -= 1
    return np.sqrt(1.0 / (k[:, :-1] * k[:, 1:])), np.sqrt(1.0 / (k[:-1] * k[1:]))


def patch_colours(image: Image.Image, rows: int, cols: int) -> np.ndarray:
    """Mean RGB in [0, 1] of each of rows×cols patches of ``image``: (H, W, 3) (box-filtered resize)."""
    small = image.convert("RGB").resize((cols, rows), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float64) / 255.0


def colour_links(colours: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Patch colours (..., H, W, 3) -> similarity links h (..., H, W-1), v (..., H-1, W) in [0, 1]."""
    c = np.asarray(colours, dtype=np.float64)
    h = 1.0 - np.linalg.norm(c[..., :, 1:, :] - c[..., :, :-1, :], axis=-1) / np.sqrt(3.0)
    v = 1.0 - np.linalg.norm(c[..., 1:, :, :] - c[..., :-1, :, :], axis=-1) / np.sqrt(3.0)
    return h, v


def _table(sums: dict[str, np.ndarray], counts: dict[str, np.ndarray], top: int | None) -> dict[str, Any]:
    order = sorted(sums, key=lambda key: -counts[key].max())[:top]
    return {key: {"count": int(counts[key].max()),
                  "mean_raw_link": [float(s / c) if c else None for s, c in zip(sums[key], counts[key])]}
            for key in order}


def gap_table(items: Sequence[tuple[np.ndarray, list[int], bool]], gold: Sequence[nltk.Tree],
              decoder: Any = None, top: int = 12) -> dict[str, Any]:
    """Mean raw word link per layer by gold gap type ``"POS_left|POS_right"`` (the ``top`` most
    frequent): ``{gap: {"count", "mean_raw_link": [per layer]}}``. ``items`` are
    :func:`hiclip.induce.run.caption_links` rows, ``gold`` their gold trees (POS preterminals)."""
    sums: dict[str, np.ndarray] = defaultdict(lambda: 0)
    counts: dict[str, np.ndarray] = defaultdict(lambda: 0)
    for (links, ids, truncated), tree in zip(items, gold, strict=True):
        tags = [tag for _, tag in tree.pos()]
        spans = word_spans(ids, decoder)
        if truncated or len(spans) != len(tags) or len(spans) < 2:
            continue
        raw = raw_links(word_links(links, spans))  # (L, M-1)
        for g in range(raw.shape[1]):
            key = f"{tags[g]}|{tags[g + 1]}"
            ok = ~np.isnan(raw[:, g])
            sums[key] = sums[key] + np.where(ok, raw[:, g], 0.0)
            counts[key] = counts[key] + ok
    return _table(sums, counts, top)


def edge_table(h: np.ndarray, v: np.ndarray, gold: Sequence[np.ndarray]) -> dict[str, Any]:
    """Mean raw link per layer by edge type against gold patch labels (H, W) (0 = background):
    ``inside`` (one object), ``boundary`` (different labels), ``background`` (both 0).
    h (B, L, H, W-1), v (B, L, H-1, W) cumulative."""
    rh, rv = raw_links(h, axis=1), raw_links(v, axis=1)
    g = np.stack(gold)  # (B, H, W)
    pairs = [(g[:, :, :-1], g[:, :, 1:], rh), (g[:, :-1], g[:, 1:], rv)]
    sums: dict[str, np.ndarray] = defaultdict(lambda: 0)
    counts: dict[str, np.ndarray] = defaultdict(lambda: 0)
    for left, right, raw in pairs:
        kinds = {"inside": (left == right) & (left > 0), "boundary": left != right,
                 "background": (left == 0) & (right == 0)}
        for name, sel in kinds.items():
            vals = np.moveaxis(raw, 1, -1)[sel]  # (edges, L)
            ok = ~np.isnan(vals)
            sums[name] = sums[name] + np.where(ok, vals, 0.0).sum(0)
            counts[name] = counts[name] + ok.sum(0)
    return _table(sums, counts, None)
