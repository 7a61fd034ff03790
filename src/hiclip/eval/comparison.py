"""Comparing models over seeds: mean ± sd, the two-standard-deviation rule, comparison tables.

The rule used everywhere in hiclip (demo report, vision–language study): with per-seed values
``a`` and ``b`` of two models, a difference is called real when

    |mean(a) − mean(b)| > 2 · sqrt((sd(a)² + sd(b)²) / 2)

(sd: sample standard deviation over seeds; the pooled sd of the two). With fewer than two
seeds on either side nothing is called real. A score beats a fixed baseline when
``mean − baseline > 2 · sd``.

Beside the rule, tables give p-values one can quote: Welch's two-sided t-test over seeds
(:func:`welch_p`; with 3 against 3 seeds the 2-sd rule sits near p = 0.07), and, for a
comparison of single runs scored on the same test items, a paired bootstrap over the items
(:func:`paired_bootstrap`: p-value and 95 % interval of the difference).
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

from .results import markdown_table  # noqa: F401  (re-exported: the tables of comparisons)

Table = dict[str, dict[str, list[float]]]
"""metric label -> model label -> one value per seed."""

Items = dict[str, dict[str, list[float]]]
"""metric label -> model label -> one score per test item (of a single-seed run), items in the same order."""


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (nan with one value, both nan with none)."""
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else float("nan"))


def significant(a: Sequence[float], b: Sequence[float]) -> bool | None:
    """|mean difference| > 2 pooled standard deviations; None with fewer than 2 seeds on a side."""
    if len(a) < 2 or len(b) < 2:
        return None
    (ma, sa), (mb, sb) = mean_sd(a), mean_sd(b)
    return abs(ma - mb) > 2 * ((sa ** 2 + sb ** 2) / 2) ** 0.5


def welch_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p-value of Welch's t-test (unequal variances) of the two samples; None with fewer
    than 2 values on a side, nan when both have zero variance."""
    if len(a) < 2 or len(b) < 2:
        return None
    if statistics.pvariance(a) == 0 and statistics.pvariance(b) == 0:
        return float("nan")
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


@dataclass(frozen=True)
class Bootstrap:
    """A paired bootstrap of mean(a) − mean(b) over items: the difference, its 95 % percentile
    interval [low, high], and the two-sided p-value ``min(1, 2 · min(P(d* ≤ 0), P(d* ≥ 0)))``."""

    diff: float
    low: float
    high: float
    p: float


def paired_bootstrap(a: Sequence[float], b: Sequence[float], resamples: int = 10_000, seed: int = 0) -> Bootstrap:
    """Resample the items (pairs ``(a_i, b_i)``, the same test item scored by two models) with
    replacement ``resamples`` times, seeded; -> :class:`Bootstrap`."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or len(x) == 0:
        raise ValueError(f"paired scores need two equal-length, non-empty sequences, got {x.shape} and {y.shape}")
    d = x - y
    idx = np.random.default_rng(seed).integers(0, len(d), size=(resamples, len(d)))
    boot = d[idx].mean(axis=1)
    low, high = np.quantile(boot, [0.025, 0.975])
    p = min(1.0, 2 * min(float((boot <= 0).mean()), float((boot >= 0).mean())))
    return Bootstrap(float(d.mean()), float(low), float(high), p)


def fmt_p(p: float | None) -> str:
    """``0.032``, ``< 0.001``, or ``—`` (no test)."""
    if p is None or math.isnan(p):
        return "—"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def beyond_baseline(values: Sequence[float], baseline: float) -> bool | None:
    """Mean over seeds above a fixed baseline by more than two standard deviations (None: 1 seed)."""
    if len(values) < 2:
        return None
    m, s = mean_sd(values)
    return m - baseline > 2 * s


def fmt(values: Sequence[float] | float | None) -> str:
    """``0.310 ± 0.010`` over seeds, ``0.310`` for one value or a plain number, ``—`` for none."""
    if values is None or (not isinstance(values, (int, float)) and not values):
        return "—"
    if isinstance(values, (int, float)):
        return f"{values:.3f}"
    m, s = mean_sd(values)
    return f"{m:.3f}" if s != s else f"{m:.3f} ± {s:.3f}"


def comparison_header(models: Sequence[str], pairs: Sequence[tuple[str, str]],
                      baseline: str | None = None) -> list[str]:
    """The header matching :func:`comparison_rows`."""
    head = ["metric", *models] + ([baseline] if baseline else [])
    if len(pairs) == 1:
        (a, b), = pairs
        return head + [f"Δ ({a} − {b})", "> 2 sd?", "p"]
    return head + [f"Δ {a} − {b} (p)" for a, b in pairs]


def _pair_cells(va: Sequence[float], vb: Sequence[float], ia: Sequence[float] | None,
                ib: Sequence[float] | None) -> tuple[str, bool | None, str]:
    """(Δ, beyond 2 sd, p) of one pair: Welch's p over seeds, or with one seed a side and scores
    per item a paired bootstrap ("p (bootstrap, 95 % CI low to high)")."""
    diff = f"{mean_sd(va)[0] - mean_sd(vb)[0]:+.3f}"
    s = significant(va, vb)
    if s is None and ia is not None and ib is not None and len(ia) == len(ib) > 0:
        bs = paired_bootstrap(ia, ib)
        return diff, s, f"{fmt_p(bs.p)} (bootstrap over {len(ia)} items, 95 % CI {bs.low:+.3f} to {bs.high:+.3f})"
    return diff, s, fmt_p(welch_p(va, vb))


def comparison_rows(table: Table, models: Sequence[str], pairs: Sequence[tuple[str, str]],
                    baselines: dict[str, float] | None = None, items: Items | None = None) -> list[list[str]]:
    """One row per metric: each model's mean ± sd, the baseline (when ``baselines`` is given),
    then the difference of every pair (a − b). With one pair the next columns say whether the
    difference exceeds 2 sd (``**yes**`` / ``no`` / ``n/a (1 seed)``) and give its p-value
    (Welch over seeds; single-seed runs with per-item scores in ``items``: a paired bootstrap);
    with several pairs a difference beyond 2 sd is set in bold and its p-value follows in brackets."""
    rows = []
    for label, per_model in table.items():
        row = [label] + [fmt(per_model.get(m)) for m in models]
        if baselines is not None:
            row.append(fmt(baselines.get(label)))
        scored = (items or {}).get(label, {})
        for a, b in pairs:
            va, vb = per_model.get(a), per_model.get(b)
            if not (va and vb):
                row += ["—", "—", "—"] if len(pairs) == 1 else ["—"]
                continue
            diff, s, p = _pair_cells(va, vb, scored.get(a), scored.get(b))
            if len(pairs) == 1:
                row += [diff, "n/a (1 seed)" if s is None else ("**yes**" if s else "no"), p]
            else:
                row.append((f"**{diff}**" if s else diff) + ("" if p == "—" else f" ({p})"))
        rows.append(row)
    return rows
