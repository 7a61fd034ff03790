"""Read-outs (Tree Transformer's parser, aggregate), choices on validation, and tree diagnostics,
on hand-made link tables whose trees are worked out by hand in the comments."""
import json

import nltk
import numpy as np
import pytest
import torch

import hiclip
from hiclip.cli import main
from hiclip.induce.select import (choose_grouping, choose_readout, label_recall, mean_links, readout_candidates,
                                  root_splits)
from hiclip.induce.trees import Readout, induce_tree

WORDS = ["a", "big", "red", "ball", "moves"]
# links a-big, big-red, red-ball, ball-moves at layers 0, 1, 2
LINKS = np.array([[0.3, 0.5, 0.6, 0.1],
                  [0.6, 0.85, 0.9, 0.2],
                  [0.9, 0.95, 0.97, 0.4]])


def pieces(words):
    return [w + "</w>" for w in words]


def test_tree_transformer_parser_hand_case():
    # root at layer 2: weakest 0.4 <= down 0.8 -> split ball|moves; (a big red ball) has weakest 0.9 > side 0.7
    # -> layer 1: weakest 0.6 -> split a|big; (big red ball) weakest 0.85 > side -> layer 0 (min_layer 0):
    # weakest 0.5 -> split big|red; (red ball) at layer 0 -> split.
    tree = induce_tree(LINKS, pieces(WORDS), readout=Readout("tree_transformer", down=0.8, side=0.7, min_layer=0))
    assert str(tree) == "((a (big (red ball))) moves)"
    # min_layer 1: (big red ball) stays at layer 1 where its weakest link 0.85 > down: emitted flat
    flat = induce_tree(LINKS, pieces(WORDS), readout=Readout("tree_transformer", down=0.8, side=0.7, min_layer=1))
    assert str(flat) == "((a (big red ball)) moves)"
    assert len(flat.children[0].children[1].children) == 3


def test_aggregate_readout_hand_case():
    # distances sum_l (1 - a): 1.2, 0.7, 0.53, 2.3 -> split ball|moves, then a|big, then big|red
    tree = induce_tree(LINKS, pieces(WORDS), readout=Readout("aggregate"))
    assert str(tree) == "((a (big (red ball))) moves)"
    # spans whose largest distance is below 1.0 are flat: (big red ball) (0.7), not (a big red ball) (1.2)
    flat = induce_tree(LINKS, pieces(WORDS), readout=Readout("aggregate", flat=1.0))
    assert str(flat) == "((a (big red ball)) moves)"


def test_unknown_method_and_min_layer_above_top():
    with pytest.raises(ValueError, match="read-out method"):
        Readout("bottom_up")
    # a min_layer above the top layer is clipped to the top layer: everything merged above down is flat
    tree = induce_tree(LINKS, pieces(WORDS), readout=Readout("tree_transformer", min_layer=9, down=0.5))
    assert str(tree) == "((a big red ball) moves)"


def test_choose_readout_finds_the_generating_readout():
    gold = [nltk.Tree.fromstring("(S (NP (DT a) (NP (JJ big) (JJ red) (NN ball))) (VBZ moves))")]

    def trees_of(readout):
        return [induce_tree(LINKS, pieces(WORDS), readout=readout)]

    best, table = choose_readout(trees_of, readout_candidates(3), gold)
    scores = dict(table)
    assert max(scores.values()) == 1.0 and scores[best.label()] == 1.0
    assert str(trees_of(best)[0]) == "((a (big red ball)) moves)"
    assert min(scores.values()) < 1.0  # e.g. aggregate without flat spans splits (big (red ball))
    assert scores["aggregate(flat=0)"] == pytest.approx(0.8)  # P 2/3 (3 spans predicted), R 1
    assert len(table) == len(readout_candidates(3)) == 9 + 4 * 4 * 3 + 6


def test_label_recall_and_root_split_hand_case():
    gold = nltk.Tree.fromstring("(S (NP (DT a) (JJ red) (NN ball)) (VP (VBZ is) (PP (IN on) (NP (DT the) (NN mat)))))")
    # distances 0.2 0.5 0.9 0.8 0.6 0.1 -> ((a red) ball) (is (on (the mat)))
    a = 1 - np.array([[0.2, 0.5, 0.9, 0.8, 0.6, 0.1]])
    tree = induce_tree(a, pieces(gold.leaves()), readout=Readout("aggregate"))
    assert str(tree) == "(((a red) ball) (is (on (the mat))))"
    recall = label_recall([tree], [gold])
    assert recall["NP"] == {"recall": 1.0, "count": 2}  # (a red ball), (the mat)
    assert recall["NP-DT"] == {"recall": 0.0, "count": 1}  # (red ball) is missing
    assert recall["VP"] == {"recall": 1.0, "count": 1} and recall["PP"] == {"recall": 1.0, "count": 1}
    assert recall["S"] == {"recall": 0.0, "count": 0}  # the whole sentence is not counted
    assert root_splits([tree, tree]) == [("ball | is", 2)]
    assert mean_links([np.array([[0.2, 0.4], [0.6, 0.8]]), np.array([[0.0], [1.0]])]) == pytest.approx([0.2, 0.8])


def test_choose_grouping_picks_the_layer_that_matches_gold():
    # 2x2 grid, gold = two columns. Layer 0: every link weak (4 singletons, ARI 0);
    # layer 1: vertical links 0.9, horizontal 0.2 -> the two columns (ARI 1) for 0.2 <= tau < 0.9.
    h = np.array([[[[0.1], [0.1]], [[0.2], [0.2]]]] * 2)  # (B=2, L=2, H=2, W-1=1)
    v = np.array([[[[0.1, 0.1]], [[0.9, 0.9]]]] * 2)  # (B, L, H-1=1, W=2)
    gold = [np.array([[0, 1], [0, 1]])] * 2
    choice = choose_grouping(h, v, gold)
    assert choice["layer"] == 1 and choice["ari"] == pytest.approx(1.0) and choice["threshold"] == 0.2
    assert choice["table"][0][0] == pytest.approx(0.0)
    assert choice["table"][-1][1] == pytest.approx(0.0)  # tau 0.9: no link kept at layer 1 either


def test_induce_eval_tunes_on_validation_and_refuses_the_test_split():
    torch.manual_seed(0)
    model, _, transform = hiclip.create_model_and_transforms("HiCLIP-Tiny")
    tok = hiclip.get_tokenizer("HiCLIP-Tiny")
    from hiclip.induce.run import induce_eval
    report = induce_eval(model.eval(), transform, tok, n=10, progress=False)
    assert report["tune_split"] == "val" and report["split"] == "test"
    assert set(report["trees"]["label_recall"]) == {"NP", "PP", "VP", "S", "NP-DT"}
    assert len(report["trees"]["mean_link_per_layer"]) == 4 and "chosen" in report["groups"]
    json.dumps(report)
    with pytest.raises(ValueError, match="another split"):
        induce_eval(model, transform, tok, n=4, split="val", tune_split="val", progress=False)


def test_induce_eval_checkpoints_curve(tmp_path, capsys):
    from hiclip.train.config import TrainConfig
    from hiclip.train.loop import train
    run = tmp_path / "run"
    train(TrainConfig(output_dir=str(run), model="HiCLIP-Tiny", steps=2, batch_size=4, world_samples=8,
                      save_every=1, keep_checkpoints=4, val_every=0, workers=0, progress=False, tensorboard=False,
                      device="cpu"))
    out = tmp_path / "curve.json"
    assert main(["induce-eval", "--checkpoints", str(run / "checkpoints"), "--n", "6", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [r["step"] for r in rows] == [1, 2] and all(0 <= r["tree_f1"] <= 1 and -1 <= r["ari"] <= 1 for r in rows)
    assert out.with_suffix(".png").stat().st_size > 0 and "tree F1" in capsys.readouterr().out
    assert main(["induce-eval", "--checkpoints", str(tmp_path / "nothing")]) == 2


def test_choose_readout_scores_equal_bracket_f1_of_the_kept_trees():
    """The search reads the gold trees once; each score must equal bracket_f1 computed from scratch
    on the read-out's non-truncated trees and their gold trees (the second caption is truncated)."""
    from hiclip.induce.scores import GoldBrackets, bracket_f1
    rng = np.random.default_rng(0)
    gold_strings = ["(S (NP (DT a) (NP (JJ big) (JJ red) (NN ball))) (VBZ moves))",
                    "(S (NP (DT the) (NN cat)) (VP (VBZ sits)))",
                    "(S (NP (NN dogs)) (VP (VBP run) (ADV fast)))"]
    gold = [nltk.Tree.fromstring(g) for g in gold_strings]
    tables = [rng.uniform(size=(3, len(g.leaves()) - 1)) for g in gold]

    def trees_of(readout):
        return [induce_tree(t, pieces(g.leaves()), truncated=(i == 1), readout=readout)
                for i, (t, g) in enumerate(zip(tables, gold))]

    _, table = choose_readout(trees_of, readout_candidates(3), gold)
    for (label, f1), readout in zip(table, readout_candidates(3)):
        assert label == readout.label()
        trees = trees_of(readout)
        assert f1 == bracket_f1([trees[0], trees[2]], [gold[0], gold[2]])["corpus_f1"]
    with pytest.raises(ValueError, match="line 3: gold tree words"):
        GoldBrackets(gold).f1(trees_of(Readout())[:1], keep=[2])


@pytest.mark.parametrize("enabled", [True, False])
def test_choose_readout_pauses_the_cyclic_gc_and_restores_it(enabled):
    import gc
    gold = [nltk.Tree.fromstring("(S (NP (DT a) (NP (JJ big) (JJ red) (NN ball))) (VBZ moves))")]
    during = []

    def trees_of(readout):
        during.append(gc.isenabled())
        return [induce_tree(LINKS, pieces(WORDS), readout=readout)]

    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        choose_readout(trees_of, readout_candidates(3), gold)
        assert gc.isenabled() == enabled and not any(during)
        with pytest.raises(RuntimeError):
            choose_readout(lambda r: (_ for _ in ()).throw(RuntimeError("boom")), readout_candidates(3), gold)
        assert gc.isenabled() == enabled
    finally:
        (gc.enable if was else gc.disable)()
