"""The demo pipeline end to end on a tiny plan, its resumption, the fixed step plan, and the report's statistics."""
import json

import pytest

from hiclip.demo import DemoConfig, pipeline, run_demo
from hiclip.demo.report import _beyond_baseline, _significant, metric_rows, verdicts


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
    cfg = DemoConfig(out=str(tmp_path / "demo"), steps=2, seeds=2, eval_samples=16,
                     induce_samples=8, val_samples=16,
                     batch_size=8, workers=0, progress=False, commands=["pytest"])
    report = run_demo(cfg)
    text = report.read_text()
    assert "| zero-shot shape acc |" in text and "caption trees: bracket F1 (val-chosen read-out)" in text
    induce = json.loads((tmp_path / "demo" / "induce" / "HiCLIP-Tiny-s0.json").read_text())
    assert induce["tune_split"] == "val" and induce["split"] == "test" and "chosen" in induce["groups"]
    assert report.with_suffix(".html").read_text().startswith("<!doctype html>")
    for name in ("curves", "zeroshot", "compositional", "tree0", "tree0-gold", "groups0", "groups0-gold"):
        assert (tmp_path / "demo" / "figures" / f"{name}.png").stat().st_size > 0
    summary = json.loads((tmp_path / "demo" / "runs" / "HiCLIP-Tiny-s1" / "summary.json").read_text())
    assert summary["steps"] == 2
    # rerun: every stage is found done, nothing retrains
    stamp = (tmp_path / "demo" / "runs" / "CLIP-Tiny-s0" / "checkpoints" / "latest.pt").stat().st_mtime_ns
    run_demo(cfg)
    assert (tmp_path / "demo" / "runs" / "CLIP-Tiny-s0" / "checkpoints" / "latest.pt").stat().st_mtime_ns == stamp


def test_step_plan_does_not_depend_on_machine_speed(monkeypatch):
    cfg = DemoConfig(steps=250)
    for seconds in (0.01, 100.0):  # a fast and a very slow machine
        monkeypatch.setattr(pipeline, "seconds_per_step", lambda *a, s=seconds, **k: s)
        plan = pipeline.plan_steps(cfg)
        assert plan["steps"] == 250
        assert plan["estimated_train_minutes"] == pytest.approx(1.15 * 3 * 250 * 2 * seconds / 60)


def test_baseline_verdict_needs_two_sd_margin():
    assert _beyond_baseline([0.30, 0.31, 0.32], 0.25) is True  # 0.31 - 0.25 > 2 * 0.01
    assert _beyond_baseline([0.20, 0.30, 0.40], 0.25) is False  # 0.05 < 2 * 0.1
    assert _beyond_baseline([0.5], 0.1) is None
    table = {"caption trees: bracket F1 (val-chosen read-out)": {"H": [0.30, 0.31, 0.32]},
             "  baseline random-tree F1": {"H": [0.13] * 3}, "  baseline left-branching F1": {"H": [0.11] * 3},
             "  baseline right-branching F1": {"H": [0.36] * 3}}
    out = verdicts(table, ("H", "C"))
    assert any("beats the random-tree baseline by more than two standard deviations" in v for v in out)
    assert any("does not beat the right-branching baseline" in v for v in out)
