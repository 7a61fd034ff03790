"""Scores for induced trees (unlabeled bracket F1) and groups (ARI, mean best IoU), with baselines.

Brackets: spans are half-open word spans; trivial spans (single words, the whole
sentence) are excluded and duplicates removed. Corpus-level P/R/F1 sum matches and
counts over sentences; sentence-level P/R/F1 are averaged over the sentences that
have at least one non-trivial gold span (the others are counted in
``n_sentence_skipped``). A ratio with a zero denominator is 0.

Groups: gold object masks are reduced to the patch grid with :func:`masks_to_grid`;
per layer, ARI (:func:`adjusted_rand`: the value of ``sklearn.metrics.adjusted_rand_score``)
over all patches and mean best IoU (for each gold region, the best IoU with any predicted region, averaged over
gold regions). Gold regions exclude the background by default.
All report functions return dicts of floats / ints / lists of floats, JSON-ready.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nltk
import numpy as np
from hiclip.induce.trees import Tree

Span = tuple[int, int]


def read_trees(path: str | Path) -> list[nltk.Tree]:
    """Bracketed (PTB-style) trees, one per line; the leaves give the sentence.

    Trailing blank lines are ignored; a blank or unparsable line elsewhere is an error
    naming it, so tree i always comes from line i+1.
    """
    lines = Path(path).read_text(encoding="utf-8").rstrip("\n").split("\n")
    trees = []
    for number, line in enumerate(lines, start=1):
        try:
            trees.append(nltk.Tree.fromstring(line))
        except ValueError as err:
            raise ValueError(f"{path}, line {number}: expected one bracketed tree, got {line!r} ({err})") from None
    return trees


def constituents(tree: nltk.Tree) -> list[tuple[nltk.Tree, Span]]:
    """Every subtree of an nltk tree with its word span, in post-order (preterminals included)."""
    out: list[tuple[nltk.Tree, Span]] = []

    def walk(node: nltk.Tree | str, start: int) -> int:
        if isinstance(node, str):
            return start + 1
        end = start
        for child in node:
            end = walk(child, end)
        out.append((node, (start, end)))
        return end

    walk(tree, 0)
    return out


def nltk_spans(tree: nltk.Tree) -> set[Span]:
    """Word spans of every constituent of an nltk tree (labels ignored; preterminals give single words)."""
    return {span for _, span in constituents(tree)}


def nontrivial(spans: set[Span], n_words: int) -> set[Span]:
    """Spans without single words and the whole sentence (0, n_words)."""
    return {s for s in spans if s[1] - s[0] > 1 and s != (0, n_words)}


def left_branching_spans(n_words: int) -> set[Span]:
    """((w0 w1) w2) …: spans (0, k) for k = 2..n."""
    return {(0, k) for k in range(2, n_words + 1)}


def right_branching_spans(n_words: int) -> set[Span]:
    """w0 (w1 (w2 …)): spans (k, n) for k = 0..n-2."""
    return {(k, n_words) for k in range(0, n_words - 1)}


def random_spans(n_words: int, rng: np.random.Generator) -> set[Span]:
    """A random binary tree: each span of >= 2 words splits at a uniformly drawn point."""
    out, stack = set(), [(0, n_words)]
    while stack:
        start, end = stack.pop()
        if end - start < 2:
            continue
        out.add((start, end))
        cut = int(rng.integers(start + 1, end))
        stack += [(start, cut), (cut, end)]
    return out


def _ratio(num: float, den: float) -> float:
    return float(num) / den if den else 0.0


def _f1(p: float, r: float) -> float:
    return _ratio(2 * p * r, p + r)


def span_f1(pred: Sequence[set[Span]], gold: Sequence[set[Span]], lengths: Sequence[int]) -> dict[str, float]:
    """Bracket scores of predicted vs gold span sets for sentences of ``lengths`` words."""
    match = n_pred = n_gold = 0
    sentence = []
    for p_all, g_all, n in zip(pred, gold, lengths, strict=True):
        p, g = nontrivial(p_all, n), nontrivial(g_all, n)
        hit = len(p & g)
        match, n_pred, n_gold = match + hit, n_pred + len(p), n_gold + len(g)
        if g:
            sp, sr = _ratio(hit, len(p)), _ratio(hit, len(g))
            sentence.append((sp, sr, _f1(sp, sr)))
    cp, cr = _ratio(match, n_pred), _ratio(match, n_gold)
    mean = np.mean(sentence, axis=0) if sentence else np.zeros(3)
    return {
        "corpus_precision": cp, "corpus_recall": cr, "corpus_f1": _f1(cp, cr),
        "sentence_precision": float(mean[0]), "sentence_recall": float(mean[1]), "sentence_f1": float(mean[2]),
        "n_sentences": len(lengths), "n_sentence_skipped": len(lengths) - len(sentence),
    }


def _words(tree: Tree | nltk.Tree) -> list[str]:
    return tree.leaves() if isinstance(tree, nltk.Tree) else tree.words


def _spans(tree: Tree | nltk.Tree) -> set[Span]:
    return nltk_spans(tree) if isinstance(tree, nltk.Tree) else tree.spans()


def bracket_f1(pred: Sequence[Tree | nltk.Tree], gold: Sequence[nltk.Tree]) -> dict[str, float]:
    """Bracket scores of predicted trees against gold trees (same sentences, same order).

    Words are compared case-insensitively; a mismatch is a ValueError naming the line
    (gold tree i is line i+1 of a :func:`read_trees` file).
    """
    return GoldBrackets(gold).f1(pred)


class GoldBrackets:
    """Gold trees' words and spans, read once, to score many predictions of the same sentences
    (the read-out search scores 81 read-outs of one set of captions)."""

    def __init__(self, gold: Sequence[nltk.Tree]):
        self.words = [[w.lower() for w in g.leaves()] for g in gold]
        self.spans = [nltk_spans(g) for g in gold]

    def f1(self, pred: Sequence[Tree | nltk.Tree], keep: Sequence[int] | None = None) -> dict[str, float]:
        """:func:`bracket_f1` of ``pred`` against the gold trees ``keep`` (default: all, in order);
        ``pred[k]`` is the prediction for gold tree ``keep[k]``."""
        keep = range(len(self.words)) if keep is None else keep
        if len(pred) != len(keep):
            raise ValueError(f"expected as many predicted as gold trees, got {len(pred)} and {len(keep)}")
        for p, i in zip(pred, keep):
            pw = [w.lower() for w in _words(p)]
            if pw != self.words[i]:
                raise ValueError(f"line {i + 1}: gold tree words {self.words[i]} do not match the sentence {pw}")
        return span_f1([_spans(p) for p in pred], [self.spans[i] for i in keep], [len(self.words[i]) for i in keep])


def bracket_report(
    pred: Sequence[Tree | nltk.Tree], gold: Sequence[nltk.Tree], draws: int = 5, seed: int = 0
) -> dict[str, Any]:
    """Induced trees beside left-, right-branching and random-tree baselines (mean of
    ``draws`` seeded draws) on the same sentences. Predicted trees marked ``truncated``
    are skipped with their gold trees and counted in ``n_truncated_skipped``."""
    if len(pred) != len(gold):
        raise ValueError(f"expected as many predicted as gold trees, got {len(pred)} and {len(gold)}")
    keep = [i for i, p in enumerate(pred) if not getattr(p, "truncated", False)]
    gold_kept = [gold[i] for i in keep]
    lengths = [len(g.leaves()) for g in gold_kept]
    gold_spans = [nltk_spans(g) for g in gold_kept]
    rng = np.random.default_rng(seed)
    randoms = [span_f1([random_spans(n, rng) for n in lengths], gold_spans, lengths) for _ in range(draws)]
    return {
        "induced": bracket_f1([pred[i] for i in keep], gold_kept),
        "left_branching": span_f1([left_branching_spans(n) for n in lengths], gold_spans, lengths),
        "right_branching": span_f1([right_branching_spans(n) for n in lengths], gold_spans, lengths),
        "random": {k: float(np.mean([r[k] for r in randoms])) for k in randoms[0]} if randoms else {},
        "n_truncated_skipped": len(pred) - len(keep),
    }


def masks_to_grid(masks: Any, rows: int, cols: int) -> np.ndarray:
    """Gold object masks (K, Hpx, Wpx) -> patch labels (rows, cols) int64.

    Patch (r, c) covers pixel rows floor(r*Hpx/rows) … and likewise columns. Its label
    is k+1 for the object k covering the most of its pixels, or 0 (background) when the
    pixels in no mask are at least as many (ties go to background, then the lower k).
    """
    m = np.asarray(masks).astype(bool)
    if m.ndim != 3 or m.shape[1] < rows or m.shape[2] < cols or rows < 1 or cols < 1:
        raise ValueError(f"expected masks (K, Hpx>={rows}, Wpx>={cols}), got {m.shape}")
    layers = np.concatenate([~m.any(axis=0, keepdims=True), m]).astype(np.int64)  # (K+1, Hpx, Wpx)
    r0 = (np.arange(rows) * m.shape[1]) // rows
    c0 = (np.arange(cols) * m.shape[2]) // cols
    counts = np.add.reduceat(np.add.reduceat(layers, r0, axis=1), c0, axis=2)  # (K+1, rows, cols)
    return counts.argmax(axis=0)


def best_iou(pred: Any, gold: Any, include_background: bool = False) -> float:
    """Mean over gold regions (H, W) of the best IoU with a predicted region (H, W); NaN
    when there is no gold region (e.g. background only and it is excluded)."""
    p, g = np.asarray(pred).ravel(), np.asarray(gold).ravel()
    if p.shape != g.shape:
        raise ValueError(f"expected predicted and gold labels of one shape, got {np.shape(pred)} and {np.shape(gold)}")
    classes = np.unique(g)
    inter = contingency(g, p)  # (gold regions, predicted regions)
    union = inter.sum(axis=1, keepdims=True) + inter.sum(axis=0, keepdims=True) - inter
    best = (inter / union).max(axis=1)
    best = best if include_background else best[classes != 0]
    return float(best.mean()) if best.size else float("nan")


def contingency(a: Any, b: Any) -> np.ndarray:
    """(classes of a, classes of b) int64 counts of co-occurring labels, classes in sorted order:
    ``sklearn.metrics.cluster.contingency_matrix(a, b)``, dense."""
    ca, ia = np.unique(np.asarray(a).ravel(), return_inverse=True)
    cb, ib = np.unique(np.asarray(b).ravel(), return_inverse=True)
    if ia.size != ib.size:
        raise ValueError(f"expected label arrays of one size, got {ia.size} and {ib.size}")
    counts = np.bincount(ia.ravel() * cb.size + ib.ravel(), minlength=ca.size * cb.size)
    return counts.astype(np.int64).reshape(ca.size, cb.size)


def adjusted_rand(labels_true: Any, labels_pred: Any) -> float:
    """Hubert and Arabie's adjusted Rand index of two labellings (flattened): the value of
    ``sklearn.metrics.adjusted_rand_score`` (the same integer pair counts and the same final
    formula, so the same float). Hand-written because sklearn's per-call input validation took
    three quarters of the demo's induction time over tens of thousands of 64-patch calls
    (docs/benchmarks.md). Empty or identical partitions give 1.0, as sklearn's."""
    cont = contingency(labels_true, labels_pred)
    n = int(cont.sum())
    if n == 0:
        return 1.0
    squares = int((cont ** 2).sum())
    fp = int((cont @ cont.sum(axis=0)).sum()) - squares
    fn = int((cont.T @ cont.sum(axis=1)).sum()) - squares
    tp, tn = squares - n, n * n - fp - fn - squares
    if fn == 0 and fp == 0:
        return 1.0
    return 2.0 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn))


def block_labels(rows: int, cols: int, k: int) -> np.ndarray:
    """A regular k×k block partition of a rows×cols grid: labels (rows, cols)."""
    r = (np.arange(rows) * k) // rows
    c = (np.arange(cols) * k) // cols
    return r[:, None] * k + c[None, :]


def layer_scores(labels: Any, gold: Any, include_background: bool = False) -> dict[str, list[float]]:
    """Per-layer ARI and best IoU of labels (L, H, W) against gold (H, W)."""
    lab, g = np.asarray(labels), np.asarray(gold)
    if lab.ndim != 3 or lab.shape[1:] != g.shape:
        raise ValueError(f"expected labels (L, H, W) and gold (H, W), got {lab.shape} and {g.shape}")
    return {
        "ari": [adjusted_rand(g, layer) for layer in lab],
        "best_iou": [best_iou(layer, g, include_background) for layer in lab],
    }


def _mean_layers(rows: list[list[float]]) -> list[float | None]:
    """Per-column mean over rows ignoring NaN; None (JSON null) for an all-NaN column."""
    arr = np.asarray(rows, dtype=np.float64)
    keep = ~np.isnan(arr)
    return [float(np.nanmean(arr[:, j])) if keep[:, j].any() else None for j in range(arr.shape[1])]


def group_report(
    labels: Sequence[Any], gold: Sequence[Any], include_background: bool = False, blocks: Sequence[int] = (2, 4)
) -> dict[str, Any]:
    """Mean per-layer ARI / best IoU over images (labels (L, H, W) and gold (H, W) each),
    beside a single-region and k×k block baselines. Images without a gold region have
    no best IoU; they are counted in ``n_no_gold_region`` (a mean over no image is None)."""
    if len(labels) != len(gold) or not labels:
        raise ValueError(f"expected equally many (>0) label maps and gold grids, got {len(labels)} and {len(gold)}")
    n_layers = {len(lab) for lab in labels}
    if len(n_layers) != 1:
        raise ValueError(f"expected label maps with one number of layers, got {sorted(n_layers)}")
    per = [layer_scores(lab, g, include_background) for lab, g in zip(labels, gold)]
    shapes = [np.shape(g) for g in gold]
    report: dict[str, Any] = {
        "ari": _mean_layers([s["ari"] for s in per]),
        "best_iou": _mean_layers([s["best_iou"] for s in per]),
        "n_images": len(per),
        "n_no_gold_region": int(sum(np.isnan(s["best_iou"][0]) for s in per)),
    }
    baselines = {"single": [np.zeros(s, dtype=np.int64) for s in shapes]}
    baselines |= {f"blocks{k}": [block_labels(*s, k) for s in shapes] for k in blocks}
    for name, maps in baselines.items():
        scores = [layer_scores(m[None], g, include_background) for m, g in zip(maps, gold)]
        report[f"baseline_{name}"] = {
            "ari": _mean_layers([s["ari"] for s in scores])[0],
            "best_iou": _mean_layers([s["best_iou"] for s in scores])[0],
        }
    return report
