"""hiclip.eval.comparison's p-values: Welch's t-test against the formula, the paired bootstrap
against exact enumeration and scipy's own bootstrap, and where the tables put them."""
import itertools

import numpy as np
import pytest
from scipy import stats

from hiclip.eval.comparison import comparison_header, comparison_rows, fmt_p, paired_bootstrap, welch_p


def test_welch_p_is_the_two_sided_welch_test():
    a, b = [0.61, 0.58, 0.63], [0.55, 0.57, 0.50, 0.52]
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    t = (np.mean(a) - np.mean(b)) / np.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    assert welch_p(a, b) == pytest.approx(2 * stats.t.sf(abs(t), df), rel=1e-9)
    assert welch_p([0.5], [0.4, 0.6]) is None  # one seed: no test
    assert np.isnan(welch_p([0.36, 0.36], [0.36, 0.36]))  # no variance on either side
    assert fmt_p(0.0004) == "< 0.001" and fmt_p(0.0456) == "0.046" and fmt_p(None) == "—"


def test_paired_bootstrap_matches_exact_enumeration():
    a, b = [1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0]  # d = 1, 0, 0, 1
    d = np.subtract(a, b)
    means = np.array([d[list(idx)].mean() for idx in itertools.product(range(4), repeat=4)])  # all 256 resamples
    exact_p = min(1.0, 2 * min((means <= 0).mean(), (means >= 0).mean()))
    bs = paired_bootstrap(a, b, resamples=20_000)
    assert bs.diff == 0.5
    assert bs.p == pytest.approx(exact_p, abs=0.01)  # exact: 2 * (1/2)^4 = 0.125
    assert (bs.low, bs.high) == (pytest.approx(np.quantile(means, 0.025), abs=1e-9), 1.0)


def test_paired_bootstrap_matches_scipy():
    rng = np.random.default_rng(3)
    a = (rng.random(300) < 0.62).astype(float)
    b = np.where(rng.random(300) < 0.8, a, 1 - a)  # correlated with a: the pairing matters
    ours = paired_bootstrap(a, b, resamples=20_000)
    theirs = stats.bootstrap((a, b), lambda x, y: x.mean() - y.mean(), paired=True, vectorized=False,
                             n_resamples=20_000, method="percentile", random_state=1)
    dist = theirs.bootstrap_distribution
    assert ours.low == pytest.approx(theirs.confidence_interval.low, abs=0.006)
    assert ours.high == pytest.approx(theirs.confidence_interval.high, abs=0.006)
    assert ours.p == pytest.approx(min(1.0, 2 * min((dist <= 0).mean(), (dist >= 0).mean())), abs=0.01)
    with pytest.raises(ValueError, match="equal-length"):
        paired_bootstrap([1.0, 0.0], [1.0])


def test_tables_put_welch_p_beside_the_rule_and_bootstrap_for_single_runs():
    table = {"m": {"A": [0.50, 0.51, 0.52], "B": [0.40, 0.45, 0.50]}, "one": {"A": [0.75], "B": [0.25]}}
    items = {"one": {"A": [1.0, 1.0, 1.0, 0.0], "B": [0.0, 1.0, 0.0, 0.0]}}
    assert comparison_header(["A", "B"], [("A", "B")])[-3:] == ["Δ (A − B)", "> 2 sd?", "p"]
    many, one = comparison_rows(table, ["A", "B"], [("A", "B")], items=items)
    assert many[-3:] == ["+0.060", "no", fmt_p(welch_p(table["m"]["A"], table["m"]["B"]))]
    bs = paired_bootstrap(items["one"]["A"], items["one"]["B"])
    assert one[-3:] == ["+0.500", "n/a (1 seed)",
                        f"{fmt_p(bs.p)} (bootstrap over 4 items, 95 % CI {bs.low:+.3f} to {bs.high:+.3f})"]
    (without,) = comparison_rows({"one": table["one"]}, ["A", "B"], [("A", "B")])
    assert without[-1] == "—"  # one seed and no per-item scores: no p-value
