"""hiclip.induce.diagnose: per-layer links, the no-preference value, the no-model colour control."""
import math

import nltk
import numpy as np
import pytest
import torch
from PIL import Image

from hiclip import hierarchy as hi
from hiclip.induce.diagnose import colour_links, edge_table, gap_table, indifference, patch_colours, raw_links


def test_raw_links_invert_the_hierarchical_constraint():
    rng = np.random.default_rng(0)
    raw = rng.uniform(0.01, 0.99, size=(4, 3, 5))  # (L, B, E)
    cum, prev = [], None
    for layer in raw:
        prev = hi.constrain(None if prev is None else torch.from_numpy(prev), torch.from_numpy(layer)).numpy()
        cum.append(prev)
    got = raw_links(np.moveaxis(np.stack(cum), 0, 1), axis=1)  # layers on axis 1
    np.testing.assert_allclose(got, np.moveaxis(raw, 0, 1), rtol=1e-12)


def test_raw_link_after_a_joined_edge_is_undefined():
    got = raw_links(np.array([[1.0, 0.2], [1.0, 0.6]]))
    assert np.isnan(got[1, 0]) and got[1, 1] == pytest.approx(0.5)


def test_indifference_is_the_softmax_links_of_equal_scores():
    """Zero queries and keys: every neighbour scores 0, p = 1/k."""
    q = torch.zeros(1, 12, 4, dtype=torch.float64)
    h, v = hi.grid_links(q, q, (3, 4))
    ih, iv = indifference(3, 4)
    np.testing.assert_allclose(ih, h[0].numpy(), atol=1e-8)
    np.testing.assert_allclose(iv, v[0].numpy(), atol=1e-8)
    # 8x8 grid: the mean the issue names (≈ 0.284)
    assert np.concatenate([a.ravel() for a in indifference(8, 8)]).mean() == pytest.approx(0.2839, abs=1e-3)


def test_colour_control_links_equal_colours_and_cuts_between_colours():
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (20, 0, 40, 20))  # right half blue
    c = patch_colours(img, 2, 4)
    np.testing.assert_allclose(c[:, :2], np.broadcast_to([1.0, 0, 0], (2, 2, 3)))
    h, v = colour_links(c)
    np.testing.assert_allclose(v, 1.0)
    np.testing.assert_allclose(h[:, 1], 1.0 - math.sqrt(2) / math.sqrt(3))
    np.testing.assert_allclose(h[:, [0, 2]], 1.0)


def test_gap_table_averages_raw_links_by_gold_pos_pair():
    tree = nltk.Tree.fromstring("(NP (DT a) (JJ red) (NN circle))")
    # pieces: one per word; cumulative links (L=2, 2 gaps)
    links = np.array([[0.2, 0.5], [0.6, 0.5]])
    items = [(links, ["a</w>", "red</w>", "circle</w>"], False)] * 2
    table = gap_table(items, [tree, tree])
    assert table["DT|JJ"]["count"] == 2
    np.testing.assert_allclose(table["DT|JJ"]["mean_raw_link"], [0.2, 0.5])
    np.testing.assert_allclose(table["JJ|NN"]["mean_raw_link"], [0.5, 0.0])


def test_edge_table_splits_edges_by_gold_labels():
    gold = np.array([[1, 1, 0], [0, 0, 0]])
    h = np.zeros((1, 1, 2, 2))
    h[0, 0] = [[0.9, 0.3], [0.1, 0.1]]  # (0,0)-(0,1) inside; (0,1)-(0,2) boundary; row 1 background
    v = np.zeros((1, 1, 1, 3))
    v[0, 0] = [[0.3, 0.3, 0.1]]  # boundary, boundary, background
    t = edge_table(h, v, [gold])
    assert t["inside"] == {"count": 1, "mean_raw_link": [pytest.approx(0.9)]}
    assert t["boundary"]["count"] == 3 and t["boundary"]["mean_raw_link"][0] == pytest.approx(0.3)
    assert t["background"]["count"] == 3 and t["background"]["mean_raw_link"][0] == pytest.approx(0.1)
