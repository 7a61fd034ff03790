"""The demo pipeline end to end on a tiny plan, its resumption, the fixed step plan, and the report's statistics."""
import json
import re

import numpy as np
import pytest

from hiclip.demo import DemoConfig, DemoLayout, pipeline, run_demo
from hiclip.demo.report import comparison_pairs, metric_rows, verdicts
from hiclip.demo.results import BEGIN, END
from hiclip.eval.comparison import beyond_baseline as _beyond_baseline, fmt_p, significant as _significant
from scipy import stats


def _welch_by_hand(a, b):
    """Welch's t and the Welch–Satterthwaite degrees of freedom, written out; two-sided p from scipy's t."""
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    va = sum((x - ma) ** 2 for x in a) / (len(a) - 1) / len(a)
    vb = sum((x - mb) ** 2 for x in b) / (len(b) - 1) / len(b)
    t = (ma - mb) / (va + vb) ** 0.5
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return 2 * stats.t.sf(abs(t), df)


def test_significance_rule_hand_cases():
    assert _significant([1.0], [0.0]) is None  # one seed: no test
    # means 0.6 vs 0.5, sds 0.01: pooled sd 0.01, difference 0.1 > 0.02
    assert _significant([0.59, 0.60, 0.61], [0.49, 0.50, 0.51]) is True
    # sds 0.1: difference 0.1 < 0.2
    assert _significant([0.5, 0.6, 0.7], [0.4, 0.5, 0.6]) is False


def test_rows_and_verdicts_report_a_loss_plainly():
    table = {"retrieval image→text R@1": {"H": [0.30, 0.31, 0.32], "C": [0.50, 0.51, 0.52]}}
    (row,) = metric_rows(table, ("H", "C"))
    p = _welch_by_hand([0.30, 0.31, 0.32], [0.50, 0.51, 0.52])
    assert p < 0.001
    assert row == ["retrieval image→text R@1", "0.310 ± 0.010", "0.510 ± 0.010", "-0.200", "**yes**", "< 0.001"]
    (sentence,) = verdicts(table, ("H", "C"))
    assert "does not beat" in sentence and "loses by more than two standard deviations" in sentence
    assert "(-0.200, Welch p < 0.001)" in sentence


@pytest.mark.slow  # the whole demo, twice
def test_demo_runs_with_a_tiny_budget_and_resumes(tmp_path):
    cfg = DemoConfig(out=str(tmp_path / "demo"), steps=2, seeds=2, eval_samples=16,
                     induce_samples=8, val_samples=16,
                     batch_size=8, workers=0, progress=False, commands=["pytest"],
                     vl=True, vl_steps=2, vl_samples=32, vl_eval_samples=8)
    report = run_demo(cfg)
    text = report.read_text()
    study = json.loads((tmp_path / "demo" / "vl" / "study.json").read_text())
    assert study["seeds"] == {"HiCLIP-Tiny": [0, 1], "CLIP-Tiny": [0, 1]}
    assert len(study["table"]["world-ve acc"]["CLIP-Tiny"]) == 2
    assert "## Vision–language fine-tuning" in text and "| world-vqa acc: count |" in text
    assert "The pretrained runs of seed(s) [0, 1] fine-tuned alike" in text
    assert re.search(r"Training took \d+\.\d min in all; the whole demo \d+\.\d min", text)
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
    _check_results_page(tmp_path, text)


def _check_results_page(tmp_path, report_text):
    """`hiclip report` on the tiny demo folder and its fine-tuning study: the page repeats every table
    row of report.md, a row checked against the eval records, and the README block refilled in place."""
    from hiclip.cli import main
    demo, readme, page_path = tmp_path / "demo", tmp_path / "README.md", tmp_path / "docs" / "results.md"
    readme.write_text(f"intro\n{BEGIN}\nold numbers\n{END}\ntail\n")
    assert main(["report", str(demo), str(demo / "vl"), "--out", str(page_path), "--readme", str(readme)]) == 0
    page = page_path.read_text()
    rows = [line for line in report_text.split("\n") if line.startswith("| ")]
    assert rows and all(row in page for row in rows)
    assert "```\npytest\n```" in page and "## Fine-tuning study (`" in page
    values = {m: [next(r["metrics"]["acc"] for r in json.loads((demo / "eval" / f"{m}-s{s}" / "records.json").read_text())
                       if r["task"] == "compositional") for s in (0, 1)] for m in ("HiCLIP-Tiny", "CLIP-Tiny")}
    h, c = values["HiCLIP-Tiny"], values["CLIP-Tiny"]
    cells = [f"{np.mean(v):.3f} ± {np.std(v, ddof=1):.3f}" for v in (h, c)]
    p = "—" if np.var(h) == np.var(c) == 0 else fmt_p(_welch_by_hand(h, c))
    d, pooled = np.mean(h) - np.mean(c), np.sqrt((np.var(h, ddof=1) + np.var(c, ddof=1)) / 2)
    rule = "**yes**" if abs(d) > 2 * pooled else "no"
    assert f"| compositional acc (all) | {cells[0]} | {cells[1]} | {d:+.3f} | {rule} | {p} |" in page
    refilled = readme.read_text()
    assert refilled.startswith(f"intro\n{BEGIN}\n") and refilled.endswith(f"{END}\ntail\n")
    assert "old numbers" not in refilled and "| compositional acc (all) |" in refilled
    assert "hiclip report" in refilled.split(END)[0]  # the block names the command that refills it


def test_step_plan_does_not_depend_on_machine_speed(monkeypatch):
    cfg = DemoConfig(steps=250)
    for seconds in (0.01, 100.0):  # a fast and a very slow machine
        monkeypatch.setattr(pipeline, "seconds_per_step", lambda *a, s=seconds, **k: s)
        plan = pipeline.plan_steps(cfg)
        assert plan.steps == 250
        assert plan.estimated_train_minutes == pytest.approx(1.15 * 3 * 250 * 2 * seconds / 60)


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


def test_four_way_pairs_differ_in_one_thing():
    pairs = comparison_pairs(("CLIP-Tiny", "HiCLIP-Tiny", "DeCLIP-Tiny", "HiDeCLIP-Tiny"))
    assert sorted(pairs) == sorted([("HiCLIP-Tiny", "CLIP-Tiny"), ("HiDeCLIP-Tiny", "DeCLIP-Tiny"),
                                    ("DeCLIP-Tiny", "CLIP-Tiny"), ("HiDeCLIP-Tiny", "HiCLIP-Tiny")])
    assert comparison_pairs(("CLIP-Tiny", "HiCLIP-Tiny")) == [("CLIP-Tiny", "HiCLIP-Tiny")]  # two: as given


def test_rows_of_several_pairs_bold_only_real_differences():
    table = {"m": {"A": [0.50, 0.51, 0.52], "B": [0.30, 0.31, 0.32], "C": [0.45, 0.55, 0.65]}}
    (row,) = metric_rows(table, ("A", "B", "C"), [("A", "B"), ("A", "C")])
    # A − B = +0.200 with pooled sd 0.010: real; A − C = −0.040 with pooled sd ≈ 0.071: noise
    p_ab = _welch_by_hand(table["m"]["A"], table["m"]["B"])
    p_ac = _welch_by_hand(table["m"]["A"], table["m"]["C"])
    assert p_ab < 0.001 and 0.5 < p_ac < 0.6  # the 2-sd rule and Welch agree here
    assert row == ["m", "0.510 ± 0.010", "0.310 ± 0.010", "0.550 ± 0.100", "**+0.200** (< 0.001)",
                   f"-0.040 ({p_ac:.3f})"]
    sentences = verdicts({"compositional acc (all)": table["m"]}, ("A", "B", "C"), [("A", "B"), ("A", "C")])
    assert sentences[0].startswith("A beats B") and "by more than two standard deviations" in sentences[0]
    assert sentences[1].startswith("A does not beat C") and "two standard deviations" not in sentences[1]


def test_demo_refuses_another_plan_in_the_same_folder(tmp_path):
    (tmp_path / "plan.json").write_text(json.dumps({"steps": 200, "seconds_per_step": {"HiCLIP-Tiny": 1.0}}))
    with pytest.raises(ValueError, match="planned for 200 steps"):
        run_demo(DemoConfig(out=str(tmp_path), steps=800, progress=False))


def test_demo_cli_rejects_unknown_models_and_another_plan(tmp_path, capsys):
    from hiclip.cli import main
    assert main(["demo", "--models", "HiCLIP-Tiny", "Nope-Tiny", "--out", str(tmp_path)]) == 2
    assert "unknown model(s) Nope-Tiny" in capsys.readouterr().err
    (tmp_path / "plan.json").write_text(json.dumps({"steps": 200, "seconds_per_step": {"HiCLIP-Tiny": 1.0}}))
    assert main(["demo", "--steps", "800", "--out", str(tmp_path), "--no-progress"]) == 2
    assert "--steps 200" in capsys.readouterr().err


def test_a_larger_model_set_times_only_the_new_models(tmp_path, monkeypatch):
    timed = []
    monkeypatch.setattr(pipeline, "seconds_per_step", lambda m, *a, **k: timed.append(m) or 2.0)
    (tmp_path / "plan.json").write_text(json.dumps({"steps": 5, "seconds_per_step": {"HiCLIP-Tiny": 1.0}}))
    cfg = DemoConfig(out=str(tmp_path), steps=5, seeds=2, models=("HiCLIP-Tiny", "DeCLIP-Tiny"))
    plan = pipeline._load_plan(cfg, DemoLayout(tmp_path))
    assert timed == ["DeCLIP-Tiny"] and plan.seconds_per_step == {"HiCLIP-Tiny": 1.0, "DeCLIP-Tiny": 2.0}
    assert plan.estimated_train_minutes == pytest.approx(1.15 * 2 * 5 * 3.0 / 60)
    assert json.loads((tmp_path / "plan.json").read_text())["seconds_per_step"]["DeCLIP-Tiny"] == 2.0
    with pytest.raises(ValueError, match="unknown model"):
        DemoConfig(models=("HiCLIP-Tiny", "Nope"))


def test_report_refuses_folders_it_cannot_read(tmp_path, capsys):
    from hiclip.cli import main
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty"), "--out", str(tmp_path / "r.md")]) == 2
    assert "neither a demo folder" in capsys.readouterr().err and not (tmp_path / "r.md").exists()


def test_stage_lines_count_from_the_demo_start(monkeypatch, capsys):
    clock = iter([1000.0, 1004.0, 1010.0])  # the demo starts at 1000 s of the process clock
    monkeypatch.setattr(pipeline.time, "monotonic", lambda: next(clock))
    stages = pipeline._Stages(2)
    stages.next("train")
    stages.next("report")
    assert capsys.readouterr().out.split() == ["[1/2]", "4s", "train", "[2/2]", "10s", "report"]
