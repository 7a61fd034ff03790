"""The demo pipeline end to end with a budget of seconds, its resumption, and the report's statistics."""
import json


from hiclip.demo import DemoConfig, run_demo
from hiclip.demo.report import _significant, metric_rows, verdicts


def test_significance_rule_hand_cases():
    assert _significant([1.0], [0.0]) is None  # one seed: no test
    # means 0.6 vs 0.5, sds 0.01: pooled sd 0.01, difference 0.1 > 0.02
    assert _significant([0.59, 0.60, 0.61], [0.49, 0.50, 0.51]) is True
    # sds 0.1: difference 0.1 < 0.2
    assert _significant([0.5, 0.6, 0.7], [0.4, 0.5, 0.6]) is False


def test_rows_and_verdicts_report_a_loss_plainly():
    table = {"retrieval image→text R@1": {"H": [0.30, 0.31, 0.32], "C": [0.50, 0.51, 0.52]}}
    (row,) = metric_rows(table, ("H", "C"))
    assert row == ["retrieval image→text R@1", "0.310 ± 0.010", "0.510 ± 0.010", "-0.200", "**yes**"]
    (sentence,) = verdicts(table, ("H", "C"))
    assert "does not beat" in sentence and "loses by more than two standard deviations" in sentence


def test_demo_runs_with_a_tiny_budget_and_resumes(tmp_path):
    cfg = DemoConfig(out=str(tmp_path / "demo"), budget_minutes=None, steps=2, seeds=2, eval_samples=16,
                     induce_samples=8, val_samples=16,
                     batch_size=8, workers=0, progress=False, commands=["pytest"])
    report = run_demo(cfg)
    text = report.read_text()
    assert "| zero-shot shape acc |" in text and "caption trees: bracket F1" in text
    assert report.with_suffix(".html").read_text().startswith("<!doctype html>")
    for name in ("curves", "zeroshot", "compositional", "tree0", "tree0-gold", "groups0", "groups0-gold"):
        assert (tmp_path / "demo" / "figures" / f"{name}.png").stat().st_size > 0
    summary = json.loads((tmp_path / "demo" / "runs" / "HiCLIP-Tiny-s1" / "summary.json").read_text())
    assert summary["steps"] == 2
    # rerun: every stage is found done, nothing retrains
    stamp = (tmp_path / "demo" / "runs" / "CLIP-Tiny-s0" / "checkpoints" / "latest.pt").stat().st_mtime_ns
    run_demo(cfg)
    assert (tmp_path / "demo" / "runs" / "CLIP-Tiny-s0" / "checkpoints" / "latest.pt").stat().st_mtime_ns == stamp
