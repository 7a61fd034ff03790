from collections import deque

import numpy as np
import pytest

from hiclip.induce.groups import group_labels, region_tree


def bfs_labels(h: np.ndarray, v: np.ndarray, threshold: float) -> np.ndarray:
    """Reference: plain BFS over patches in row-major order, labels in order of discovery."""
    rows, cols = h.shape[0], v.shape[1]
    labels = -np.ones((rows, cols), dtype=int)
    nxt = 0
    for r0 in range(rows):
        for c0 in range(cols):
            if labels[r0, c0] >= 0:
                continue
            labels[r0, c0] = nxt
            queue = deque([(r0, c0)])
            while queue:
                r, c = queue.popleft()
                steps = [
                    (r, c + 1, c + 1 < cols and h[r, c] > threshold),
                    (r, c - 1, c > 0 and h[r, c - 1] > threshold),
                    (r + 1, c, r + 1 < rows and v[r, c] > threshold),
                    (r - 1, c, r > 0 and v[r - 1, c] > threshold),
                ]
                for rr, cc, ok in steps:
                    if ok and labels[rr, cc] < 0:
                        labels[rr, cc] = nxt
                        queue.append((rr, cc))
            nxt += 1
    return labels


def monotone(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return np.sort(rng.random(shape), axis=0)


def test_hand_case():
    h = np.array([[[0.9, 0.1], [0.2, 0.2]]])  # (1, 2, 2): (0,0)-(0,1) joined
    v = np.array([[[0.1, 0.1, 0.7]]])  # (1, 1, 3): (0,2)-(1,2) joined
    assert group_labels(h, v).tolist() == [[[0, 0, 1], [2, 3, 1]]]
    assert group_labels(h, v, threshold=0.0).tolist() == [[[0, 0, 0], [0, 0, 0]]]
    strict = group_labels(np.full((1, 1, 1), 0.5), np.zeros((1, 0, 2)))  # a > τ is strict
    assert strict.tolist() == [[[0, 1]]]


@pytest.mark.parametrize("rows,cols", [(5, 7), (1, 6), (6, 1), (8, 8)])
def test_matches_bfs_reference(rows: int, cols: int):
    rng = np.random.default_rng(rows * 10 + cols)
    h, v = rng.random((6, rows, cols - 1)), rng.random((6, rows - 1, cols))
    labels = group_labels(h, v, threshold=0.4)
    for layer in range(6):
        assert np.array_equal(labels[layer], bfs_labels(h[layer], v[layer], 0.4))


def test_batched_leading_dims_match_single():
    rng = np.random.default_rng(3)
    h, v = monotone(rng, (4, 3, 5, 6)).swapaxes(0, 1), monotone(rng, (4, 3, 4, 7)).swapaxes(0, 1)  # (B, L, ...)
    batch = group_labels(h, v)
    assert batch.shape == (3, 4, 5, 7)
    for b in range(3):
        assert np.array_equal(batch[b], group_labels(h[b], v[b]))


def test_monotone_affinities_nest_across_layers():
    rng = np.random.default_rng(4)
    for _ in range(10):
        labels = group_labels(monotone(rng, (5, 6, 5)), monotone(rng, (5, 5, 6)))
        tree = region_tree(labels)
        assert tree.nested
        for layer in range(4):  # every patch's region one layer up is its region's parent
            assert np.array_equal(tree.parents[layer][labels[layer]], labels[layer + 1])
            n_low = labels[layer].max() + 1
            assert sorted(r for p in range(labels[layer + 1].max() + 1) for r in tree.children(layer + 1, p)) == list(
                range(n_low)
            )


def test_non_nested_labels_are_reported():
    labels = np.array([[[0, 0, 1]], [[0, 1, 1]]])  # region 0 of layer 0 split at layer 1
    tree = region_tree(labels)
    assert not tree.nested and tree.violations == [(0, 0)]
    with pytest.raises(ValueError, match="region 0 of layer 0"):
        region_tree(labels, strict=True)


def test_bad_shapes_are_a_clear_error():
    with pytest.raises(ValueError, match="H-1"):
        group_labels(np.zeros((2, 4, 3)), np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="integer"):
        region_tree(np.zeros((2, 3, 3)))
