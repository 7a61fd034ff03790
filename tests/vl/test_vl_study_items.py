"""A study's per-example scores (the prediction files of its runs) feed a paired bootstrap when
runs of one seed are compared: read back by metric label, aligned on example ids."""
from types import SimpleNamespace

from hiclip.eval.comparison import fmt_p, paired_bootstrap
from hiclip.vl.evaluate import write_results
from hiclip.vl.study import format_study, run_folder, study_items

ROWS = [(0, "entailment"), (1, "contradiction/attribute_swap"), (2, "contradiction/relation_swap"), (3, "neutral")]


def _write(folder, split, scores, order):
    task = SimpleNamespace(name="world-ve", split=split, kind="visual_entailment")
    preds = [{"id": ROWS[i][0], "type": ROWS[i][1], "score": scores[i], "prediction": "x", "gold": "y", "text": "t"}
             for i in order]
    write_results({"accuracy": sum(scores) / len(scores)}, preds, folder, task, "m", "ckpt/latest.pt")


def test_study_items_align_examples_by_id_under_the_table_labels(tmp_path):
    a, b = [1.0, 1.0, 0.0, 1.0], [0.0, 1.0, 0.0, 0.0]
    for label, scores, order in (("A", a, [0, 1, 2, 3]), ("B", b, [3, 1, 0, 2])):  # B's file in another order
        for split in ("test", "holdout"):
            _write(run_folder(tmp_path, label, 0, "world-ve"), split, scores, order)
    result = {"seeds": {"A": [0], "B": [0]}, "config": {"tasks": ["world-ve"]},
              "table": {"world-ve acc": {"A": [0.75], "B": [0.25]}}, "baselines": {"world-ve acc": 0.5}}
    items = study_items(tmp_path, result)
    assert items["world-ve acc"] == {"A": a, "B": b}
    assert items["world-ve acc: contradiction"] == {"A": [1.0, 0.0], "B": [1.0, 0.0]}  # both kinds count
    assert items["world-ve acc: contradiction/relation_swap"] == {"A": [0.0], "B": [0.0]}
    assert items["world-ve acc (held-out combos)"] == {"A": a, "B": b}
    assert "world-ve acc (held-out combos): entailment" not in str(items)  # per type on the test split only
    bs = paired_bootstrap(a, b)
    row = format_study(result, items=items).split("\n")[-1]
    assert row.endswith(f"| +0.500 | n/a (1 seed) | {fmt_p(bs.p)} (bootstrap over 4 items, 95 % CI "
                        f"{bs.low:+.3f} to {bs.high:+.3f}) |")
    assert study_items(tmp_path / "none", result) == {}  # runs without prediction files: no items
