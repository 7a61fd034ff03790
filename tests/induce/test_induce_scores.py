import json

import nltk
import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from hiclip.induce.scores import (
    adjusted_rand,
    best_iou,
    block_labels,
    contingency,
    bracket_f1,
    bracket_report,
    group_report,
    layer_scores,
    left_branching_spans,
    masks_to_grid,
    nltk_spans,
    random_spans,
    read_trees,
    right_branching_spans,
)
from hiclip.induce.trees import induce_tree

GOLD = [
    "(S (NP (DT a) (JJ red) (NN circle)) (VP (VBZ moves)))",  # non-trivial: (0,3)
    "(S (NP (X a) (X b)) (VP (X c) (NP (X d) (X e))))",  # non-trivial: (0,2) (2,5) (3,5)
]
PRED = ["(X a (X red (X circle moves)))", "(X (X a b c) (X d e))"]  # (1,4) (2,4) | (0,3) (3,5)


def test_nltk_spans_hand_case():
    tree = nltk.Tree.fromstring(GOLD[1])
    assert nltk_spans(tree) == {(0, 5), (0, 2), (2, 5), (3, 5)} | {(i, i + 1) for i in range(5)}


def test_branching_baseline_spans():
    assert left_branching_spans(4) == {(0, 2), (0, 3), (0, 4)}
    assert right_branching_spans(4) == {(0, 4), (1, 4), (2, 4)}
    assert left_branching_spans(1) == right_branching_spans(1) == set()


def test_random_spans_form_a_binary_tree():
    rng = np.random.default_rng(0)
    for n in range(2, 12):
        spans = random_spans(n, rng)
        assert len(spans) == n - 1 and (0, n) in spans
        for s, e in spans - {(0, n)}:  # any two spans nest or are disjoint
            assert all(e2 <= s or s2 >= e or (s2 <= s and e <= e2) or (s <= s2 and e2 <= e) for s2, e2 in spans)
    draws = [random_spans(6, np.random.default_rng(7)) for _ in range(2)]
    assert draws[0] == draws[1]


def test_bracket_f1_hand_computed():
    scores = bracket_f1([nltk.Tree.fromstring(p) for p in PRED], [nltk.Tree.fromstring(g) for g in GOLD])
    # corpus: 1 match, 4 predicted, 4 gold; sentences: (P,R,F) = (0,0,0) and (1/2, 1/3, 0.4)
    assert scores["corpus_precision"] == pytest.approx(0.25) and scores["corpus_recall"] == pytest.approx(0.25)
    assert scores["corpus_f1"] == pytest.approx(0.25)
    assert scores["sentence_precision"] == pytest.approx(0.25)
    assert scores["sentence_recall"] == pytest.approx(1 / 6)
    assert scores["sentence_f1"] == pytest.approx(0.2)
    assert scores["n_sentences"] == 2 and scores["n_sentence_skipped"] == 0


def test_bracket_report_baselines_hand_computed():
    gold = [nltk.Tree.fromstring(g) for g in GOLD]
    pred = [induce_tree(np.zeros((1, len(g.leaves()) - 1)), [w + "</w>" for w in g.leaves()]) for g in gold]
    report = bracket_report(pred, gold, draws=3)
    # left: (0,2)(0,3) | (0,2)(0,3)(0,4) -> 2 matches / 5 pred / 4 gold; sentences F = 2/3, 1/3
    assert report["left_branching"]["corpus_f1"] == pytest.approx(2 * 0.4 * 0.5 / 0.9)
    assert report["left_branching"]["sentence_f1"] == pytest.approx(0.5)
    # right: (1,4)(2,4) | (1,5)(2,5)(3,5) -> 2 matches; sentences F = 0, 2/3
    assert report["right_branching"]["sentence_f1"] == pytest.approx(1 / 3)
    assert report["induced"] == report["right_branching"]  # all-zero links give right-branching trees
    assert 0 <= report["random"]["corpus_f1"] <= 1 and report["n_truncated_skipped"] == 0
    json.dumps(report)


def test_random_baseline_on_three_words_is_about_half():
    gold = [nltk.Tree.fromstring("(S (NP a b) c)")]
    f1 = bracket_report(gold, gold, draws=400)["random"]["corpus_f1"]  # left or right, each with p = 1/2
    assert 0.4 < f1 < 0.6


def test_truncated_predictions_are_skipped_and_counted():
    gold = [nltk.Tree.fromstring(g) for g in GOLD]
    pred = [induce_tree(np.zeros((1, 3)), ["a</w>", "red</w>", "circle</w>", "mov"]), gold[1]]
    report = bracket_report(pred, gold)
    assert report["n_truncated_skipped"] == 1 and report["induced"]["n_sentences"] == 1
    assert report["induced"]["corpus_f1"] == pytest.approx(1.0)


def test_read_trees_and_errors_name_the_line(tmp_path):
    path = tmp_path / "gold.txt"
    path.write_text("\n".join(GOLD) + "\n\n")
    trees = read_trees(path)
    assert [t.leaves() for t in trees] == [["a", "red", "circle", "moves"], list("abcde")]
    with pytest.raises(ValueError, match="line 2"):
        bracket_f1([nltk.Tree.fromstring(PRED[0]), nltk.Tree.fromstring("(X a b)")], trees)
    path.write_text(GOLD[0] + "\n(S (NP a b)\n")
    with pytest.raises(ValueError, match="line 2"):
        read_trees(path)


def test_masks_to_grid_hand_case_and_loop_reference():
    masks = np.zeros((2, 4, 4), dtype=bool)
    masks[0, 0, :2] = True  # patch (0,0): object 1 has 2 px, object 2 has 1, background 1 -> 1
    masks[1, 1, 0] = True
    masks[0, 1, 2] = True  # patch (0,1): object 1 has 1 px, background 3 -> 0
    masks[1, 2:, 0] = True  # patch (1,0): object 2 has 2 px = background -> 0
    masks[:, 2:, 2:] = True  # patch (1,1): both cover all 4 px -> lower index, 1
    assert masks_to_grid(masks, 2, 2).tolist() == [[1, 0], [0, 1]]
    rng = np.random.default_rng(0)
    m = rng.random((3, 11, 13)) > 0.6
    grid = masks_to_grid(m, 3, 4)
    for r in range(3):
        for c in range(4):
            block = m[:, r * 11 // 3 : (r + 1) * 11 // 3, c * 13 // 4 : (c + 1) * 13 // 4]
            counts = [int((~block.any(0)).sum())] + [int(b.sum()) for b in block]
            assert grid[r, c] == int(np.argmax(counts))


def test_ari_of_gold_with_itself_and_best_iou_hand_case():
    gold = np.array([[1, 1, 0], [2, 2, 0]])
    scores = layer_scores(np.stack([gold, 7 - gold]), gold)  # a relabelling scores the same
    assert scores["ari"] == [1.0, 1.0] and scores["best_iou"] == [1.0, 1.0]
    pred = np.array([[0, 0, 0], [1, 1, 1]])
    assert best_iou(pred, gold) == pytest.approx(2 / 3)
    assert best_iou(pred, gold, include_background=True) == pytest.approx((2 / 3 + 2 / 3 + 1 / 4) / 3)
    assert np.isnan(best_iou(pred, np.zeros((2, 3), dtype=int)))


def test_block_labels():
    assert block_labels(4, 4, 2).tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]
    assert len(np.unique(block_labels(8, 8, 4))) == 16


def test_group_report_aggregates_per_layer():
    gold_a = block_labels(4, 4, 2) + 1  # four objects
    gold_b = np.zeros((4, 4), dtype=int)  # background only: no best IoU
    labels = [np.stack([gold_a, np.zeros_like(gold_a)]), np.stack([gold_b, block_labels(4, 4, 2)])]
    report = group_report(labels, [gold_a, gold_b])
    ari_b1 = adjusted_rand_score(gold_b.ravel(), block_labels(4, 4, 2).ravel())
    assert report["ari"] == pytest.approx([1.0, (0.0 + ari_b1) / 2])
    assert report["best_iou"] == pytest.approx([1.0, 0.25]) and report["n_no_gold_region"] == 1
    assert report["baseline_single"]["ari"] == pytest.approx(0.5)  # 0 for image a, 1 for image b
    assert report["baseline_blocks2"]["ari"] == pytest.approx((1.0 + ari_b1) / 2)
    assert report["baseline_blocks2"]["best_iou"] == pytest.approx(1.0)
    json.dumps(report, allow_nan=False)
    with pytest.raises(ValueError, match="equally many"):
        group_report(labels, [gold_a])


def _label_cases():
    rng = np.random.default_rng(0)
    yield np.zeros(64, int), np.zeros(64, int)  # one region each: identical
    yield np.arange(64), np.arange(64)[::-1]  # all singletons
    yield np.zeros(64, int), np.arange(64)  # one region against singletons
    yield np.array([], int), np.array([], int)
    yield np.array([7]), np.array([-3])
    yield np.array([5, 5, -1, 2, 2, 2]), np.array([0, 1, 1, 9, 9, 0])  # unsorted, negative labels
    for n, k, j in ((64, 3, 5), (64, 10, 2), (256, 40, 30), (9, 9, 1)):
        for _ in range(20):
            yield rng.integers(0, k, n), rng.integers(0, j, n)
    yield rng.integers(0, 4, (8, 8)), rng.integers(0, 6, (8, 8))  # grids are flattened


def test_adjusted_rand_is_sklearns_value_exactly():
    from sklearn.metrics.cluster import contingency_matrix
    for a, b in _label_cases():
        assert adjusted_rand(a, b) == adjusted_rand_score(a.ravel(), b.ravel()), (a, b)
        if a.size:
            assert np.array_equal(contingency(a, b), contingency_matrix(a.ravel(), b.ravel()))
    with pytest.raises(ValueError, match="one size"):
        adjusted_rand(np.zeros(3), np.zeros(4))
