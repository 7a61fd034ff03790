import numpy as np
import pytest

from hiclip.induce.scores import nltk_spans, right_branching_spans
from hiclip.induce.trees import Tree, caption_pieces, induce_tree, induce_trees, word_links, word_spans


def pieces(*words: str) -> list[str]:
    return [w + "</w>" for w in words]


def nodes(tree: Tree) -> list[Tree]:
    return [tree] + [n for c in tree.children for n in nodes(c)]


def test_red_circle_is_one_constituent():
    links = np.array([[0.7, 0.8, 0.1], [0.9, 0.9, 0.3]])  # a-red, red-circle strong; circle-moves weak
    tree = induce_tree(links, pieces("a", "red", "circle", "moves"))
    assert str(tree) == "((a red circle) moves)"
    assert (0, 3) in tree.spans()
    red_circle = tree.children[0]
    assert red_circle.words == ["a", "red", "circle"] and red_circle.layer == 0
    assert tree.layer is None  # circle-moves stays below 0.5 at the top layer


def test_two_layer_table_gives_known_binary_tree():
    # layer 1: w1-w2 weakest -> (w0 w1)(w2 w3 w4); (w0 w1) merged at 1 not 0 -> split at 0;
    # (w2 w3 w4) not merged at 0 -> split at its weakest layer-0 link (w2-w3); (w3 w4) merged at 0.
    links = np.array([[0.3, 0.1, 0.4, 0.6], [0.6, 0.2, 0.7, 0.9]])
    tree = induce_tree(links, pieces("a", "b", "c", "d", "e"))
    assert str(tree) == "((a b) (c (d e)))"
    layers = {n.span: n.layer for n in nodes(tree) if n.children}
    assert layers == {(0, 5): None, (0, 2): 1, (2, 5): 1, (3, 5): 0}
    assert tree.spans() == {(0, 5), (0, 2), (2, 5), (3, 5)} | {(i, i + 1) for i in range(5)}


def test_ties_split_leftmost_giving_right_branching():
    tree = induce_tree(np.zeros((3, 5)), pieces(*"abcdef"))
    assert {s for s in tree.spans() if s[1] - s[0] > 1} == right_branching_spans(6)
    assert str(tree) == "(a (b (c (d (e f)))))"


def test_merged_everywhere_is_flat_and_single_word_is_leaf():
    flat = induce_tree(np.full((2, 3), 0.9), pieces("a", "big", "red", "ball"))
    assert str(flat) == "(a big red ball)" and flat.layer == 0 and len(flat.children) == 4
    single = induce_tree(np.zeros((2, 0)), pieces("ball"))
    assert str(single) == "ball" and single.children == [] and single.spans() == {(0, 1)}


def test_word_pieces_are_merged_first():
    toks = ["a</w>", "hic", "lip</w>", "red</w>"]
    assert word_spans(toks) == [(0, 1), (1, 3), (3, 4)]
    links = np.array([[0.2, 0.0, 0.9], [0.3, 0.1, 0.95]])  # the in-word link hic-lip is the weakest
    assert word_links(links, word_spans(toks)).tolist() == [[0.2, 0.9], [0.3, 0.95]]
    tree = induce_tree(links, toks)
    assert tree.words == ["a", "hiclip", "red"]
    assert str(tree) == "(a (hiclip red))"


def test_word_spans_from_ids_with_decoder():
    decoder = {5: "a</w>", 6: "z", 7: "x", 8: "q</w>", 9: "of</w>"}
    assert word_spans([5, 6, 7, 8, 9], decoder) == [(0, 1), (1, 4), (4, 5)]
    assert word_spans([6, 7], decoder) == [(0, 2)]  # truncated mid-word: one last word


def test_truncation_flag_and_printing():
    tree = induce_tree(np.zeros((1, 2)), ["a</w>", "red</w>", "cir"])
    assert tree.truncated and str(tree).endswith(" …")
    assert tree.words == ["a", "red", "cir"]
    assert induce_tree(np.zeros((1, 1)), pieces("a", "b"), truncated=True).truncated


def test_to_nltk_has_same_leaves_and_spans():
    rng = np.random.default_rng(0)
    for n in range(1, 9):
        links = np.sort(rng.random((4, n - 1)), axis=0)
        tree = induce_tree(links, pieces(*[f"w{i}" for i in range(n)]))
        nt = tree.to_nltk()
        assert nt.leaves() == tree.words
        assert nltk_spans(nt) | {(i, i + 1) for i in range(n)} == tree.spans()


def test_formation_layers_are_consistent_with_links():
    rng = np.random.default_rng(1)
    for _ in range(20):
        links = np.sort(rng.random((4, 9)), axis=0)
        for node in nodes(induce_tree(links, pieces(*"abcdefghij"))):
            s, e = node.span
            if e - s < 2:
                continue
            merged = [bool(np.all(links[l, s : e - 1] >= 0.5)) for l in range(4)]
            expected = next((l for l in range(4) if all(merged[l:])), None)
            assert node.layer == expected
            for child in node.children:  # a sub-span forms no later than its parent
                if child.children and node.layer is not None:
                    assert child.layer is not None and child.layer <= node.layer


def test_batch_matches_single_and_uses_lengths():
    rng = np.random.default_rng(2)
    padded = np.sort(rng.random((3, 2, 6)), axis=1)
    toks = [pieces(*"abcdefg"), pieces(*"abc"), pieces("x")]
    trees = induce_trees(padded, toks)
    for b, tree in enumerate(trees):
        n = len(toks[b])
        assert str(tree) == str(induce_tree(padded[b][:, : n - 1], toks[b]))


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="shape"):
        induce_tree(np.zeros((2, 3)), pieces("a", "b"))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        induce_tree(np.full((1, 1), 1.5), pieces("a", "b"))
    with pytest.raises(ValueError, match="special"):
        word_spans(["<start_of_text>", "a</w>"])
    with pytest.raises(ValueError, match="as many"):
        induce_trees(np.zeros((2, 1, 1)), [pieces("a", "b")])


def test_caption_pieces_match_open_clip_tokenize():
    import open_clip

    text = "a large café " + "circle " * 80
    got, truncated = caption_pieces(text)
    ids = open_clip.tokenize([text])[0].tolist()  # [sot, content…, eot]
    tok = open_clip.tokenizer.SimpleTokenizer()
    assert truncated and got == [tok.decoder[i] for i in ids[1:76]]
    assert induce_tree(np.zeros((1, len(got) - 1)), got).words[:3] == ["a", "large", "café"]
    short, cut = caption_pieces("a red circle")
    assert not cut and word_spans([tok.encoder[p] for p in short]) == [(0, 1), (1, 2), (2, 3)]
