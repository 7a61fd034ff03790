"""Read-out settings chosen on the validation split, and diagnostics of induced trees.

* :func:`readout_candidates` / :func:`choose_readout` — every caption-tree read-out
  (:class:`~hiclip.induce.trees.Readout`) on a grid of thresholds, scored by corpus
  bracket F1 against gold trees; the best one is kept (ties: the earlier candidate).
* :func:`choose_grouping` — the (layer, threshold) of image groups with the best mean ARI.
* :func:`label_recall`, :func:`root_splits`, :func:`mean_links` — what the trees get
  right per gold label, where the root splits, and how saturated the links are per layer.

Choosing on one split and scoring on another is the caller's job (``induce_eval`` chooses
on the world's validation split and scores the test split).
"""
from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import nltk
import numpy as np

from .groups import group_labels
from .scores import GoldBrackets, adjusted_rand, constituents
from .trees import Readout, Tree

THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
COLOUR_THRESHOLDS = (0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99)
"""Thresholds of the no-model colour grouping (similarity ``1 − |Δc|/√3``), chosen on validation."""
LABELS = ("NP", "PP", "VP", "S", "NP-DT")
"""Gold labels scored by :func:`label_recall`; ``NP-DT`` is a noun phrase without its determiner."""


def readout_candidates(n_layers: int) -> list[Readout]:
    """The read-out grid searched on validation (top-down first, so it wins ties)."""
    out = [Readout("topdown", threshold=t) for t in THRESHOLDS]
    out += [Readout("tree_transformer", down=d, side=s, min_layer=m)
            for d in (0.6, 0.7, 0.8, 0.9) for s in (0.5, 0.6, 0.7, 0.8) for m in range(n_layers)]
    out += [Readout("aggregate", flat=f * n_layers) for f in (0.0, 0.05, 0.1, 0.2, 0.3, 0.4)]
    return out


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for the block (restored after, even on error).

    The read-out search builds ~2 million small acyclic tree objects (reference counting frees
    them); each batch of survivors triggers a full collection that rescans the process's whole
    heap (torch, the model, the world), 63 % of the search's time. Nothing it builds is cyclic."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def choose_readout(trees_of: Any, candidates: Sequence[Readout], gold: Sequence[nltk.Tree]
                   ) -> tuple[Readout, list[tuple[str, float]]]:
    """Best read-out by corpus F1. ``trees_of(readout) -> list[Tree]`` induces the trees of the
    captions of ``gold``; truncated trees are skipped with their gold trees.
    Returns (best read-out, [(label, F1)] for every candidate)."""
    scores, brackets = [], GoldBrackets(gold)
    with cyclic_gc_paused():
        for readout in candidates:
            trees = trees_of(readout)
            keep = [i for i, t in enumerate(trees) if not t.truncated]
            scores.append(brackets.f1([trees[i] for i in keep], keep)["corpus_f1"])
    best = int(np.argmax(scores))
    return candidates[best], [(c.label(), f) for c, f in zip(candidates, scores)]


def choose_grouping(h: np.ndarray, v: np.ndarray, gold: Sequence[np.ndarray],
                    thresholds: Sequence[float] = THRESHOLDS) -> dict[str, Any]:
    """The (layer, threshold) with the best mean ARI of groups vs ``gold`` grids (H, W).

    h (B, L, H, W-1), v (B, L, H-1, W). Returns ``{"layer", "threshold", "ari", "table"}``
    with ``table[t][l]`` the mean ARI at threshold t and layer l."""
    table = []
    for t in thresholds:
        labels = group_labels(h, v, t)  # (B, L, H, W)
        table.append([float(np.mean([adjusted_rand(g, lab[layer])
                                      for lab, g in zip(labels, gold)])) for layer in range(h.shape[1])])
    arr = np.asarray(table)
    ti, layer = np.unravel_index(int(np.argmax(arr)), arr.shape)
    return {"layer": int(layer), "threshold": float(thresholds[ti]), "ari": float(arr[ti, layer]),
            "thresholds": list(thresholds), "table": table}


def ari_at(h: np.ndarray, v: np.ndarray, gold: Sequence[np.ndarray], layer: int, threshold: float) -> float:
    """Mean ARI of the groups of one layer at one threshold."""
    labels = group_labels(h[:, layer], v[:, layer], threshold)
    return float(np.mean([adjusted_rand(g, lab) for lab, g in zip(labels, gold)]))


def _labelled_spans(tree: nltk.Tree) -> list[tuple[str, tuple[int, int]]]:
    """(label, word span) of every constituent, plus ``NP-DT`` for a noun phrase whose first
    child is a determiner (its span without the determiner, when two or more words remain)."""
    out = []
    for node, (start, end) in constituents(tree):
        label = node.label().split("-")[0]
        out.append((label, (start, end)))
        first = node[0]
        if label == "NP" and isinstance(first, nltk.Tree) and first.label() == "DT" and end - start > 2:
            out.append(("NP-DT", (start + 1, end)))
    return out


def label_recall(pred: Sequence[Tree], gold: Sequence[nltk.Tree], labels: Sequence[str] = LABELS
                 ) -> dict[str, dict[str, float]]:
    """Per gold label, the share of its spans (2+ words, not the whole sentence) found among
    the predicted spans: ``{label: {"recall", "count"}}``."""
    found, total = Counter(), Counter()
    for p, g in zip(pred, gold, strict=True):
        spans, n = p.spans(), len(g.leaves())
        for label, span in _labelled_spans(g):
            if label in labels and span[1] - span[0] > 1 and span != (0, n):
                total[label] += 1
                found[label] += span in spans
    return {lab: {"recall": found[lab] / total[lab] if total[lab] else 0.0, "count": total[lab]} for lab in labels}


def root_splits(trees: Sequence[Tree], top: int = 10) -> list[tuple[str, int]]:
    """The most frequent word pairs across which the root splits ("w_left | w_right"),
    "(flat)" for a flat root; single-word captions are left out."""
    pairs = Counter()
    for t in trees:
        if len(t.children) == 2:
            cut = t.children[0].span[1]
            pairs[f"{t.words[cut - 1].lower()} | {t.words[cut].lower()}"] += 1
        elif t.children:
            pairs["(flat)"] += 1
    return pairs.most_common(top)


def mean_links(tables: Sequence[np.ndarray]) -> list[float]:
    """Mean link per layer over every link of every caption (tables (L, n-1) each)."""
    rows = [t for t in tables if t.size]
    return np.concatenate(rows, axis=1).mean(axis=1).tolist() if rows else []
