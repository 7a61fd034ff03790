"""Comparing models over seeds: mean ± sd, the two-standard-deviation rule, comparison tables.

The rule used everywhere in hiclip (demo report, vision–language study): with per-seed values
``a`` and ``b`` of two models, a difference is called real when

    |mean(a) − mean(b)| > 2 · sqrt((sd(a)² + sd(b)²) / 2)

(sd: sample standard deviation over seeds; the pooled sd of the two). With fewer than two
seeds on either side nothing is called real. A score beats a fixed baseline when
``mean − baseline > 2 · sd``.
"""
from __future__ import annotations

import statistics
from typing import Sequence

from .results import markdown_table  # noqa: F401  (re-exported: the tables of comparisons)

Table = dict[str, dict[str, list[float]]]
"""metric label -> model label -> one value per seed."""


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
        return head + [f"Δ ({a} − {b})", "> 2 sd?"]
    return head + [f"Δ {a} − {b}" for a, b in pairs]


def comparison_rows(table: Table, models: Sequence[str], pairs: Sequence[tuple[str, str]],
                    baselines: dict[str, float] | None = None) -> list[list[str]]:
    """One row per metric: each model's mean ± sd, the baseline (when ``baselines`` is given),
    then the difference of every pair (a − b). With one pair a last column says whether the
    difference exceeds 2 sd (``**yes**`` / ``no`` / ``n/a (1 seed)``); with several pairs a
    difference beyond 2 sd is set in bold."""
    rows = []
    for label, per_model in table.items():
        row = [label] + [fmt(per_model.get(m)) for m in models]
        if baselines is not None:
            row.append(fmt(baselines.get(label)))
        for a, b in pairs:
            va, vb = per_model.get(a), per_model.get(b)
            if not (va and vb):
                row += ["—", "—"] if len(pairs) == 1 else ["—"]
                continue
            diff = f"{mean_sd(va)[0] - mean_sd(vb)[0]:+.3f}"
            s = significant(va, vb)
            if len(pairs) == 1:
                row += [diff, "n/a (1 seed)" if s is None else ("**yes**" if s else "no")]
            else:
                row.append(f"**{diff}**" if s else diff)
        rows.append(row)
    return rows
