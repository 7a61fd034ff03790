"""Image region hierarchies from per-layer grid link affinities (DESIGN.md §2).

On an H×W patch grid (row-major), ``h`` (..., H, W-1) holds the links between
horizontal neighbours (r, c)–(r, c+1) and ``v`` (..., H-1, W) those between vertical
neighbours (r, c)–(r+1, c); leading dims are e.g. (L,) or (B, L). At each layer the
regions are the connected components of the grid keeping edges with ``a > τ``.
Labels are canonical: within each grid, regions are numbered 0, 1, … in the order of
their smallest (row-major) patch index, so identical partitions get identical labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from hiclip.induce.trees import to_numpy


def _grid_shape(h: np.ndarray, v: np.ndarray) -> tuple[int, int]:
    if h.ndim < 2 or v.ndim < 2:
        raise ValueError(f"expected h (..., H, W-1) and v (..., H-1, W), got {h.shape} and {v.shape}")
    rows, cols = h.shape[-2], v.shape[-1]
    if h.shape[:-2] != v.shape[:-2] or h.shape[-1] != cols - 1 or v.shape[-2] != rows - 1:
        raise ValueError(f"expected h (..., H, W-1) and v (..., H-1, W) with matching dims, got {h.shape}, {v.shape}")
    return rows, cols


def group_labels(h: Any, v: Any, threshold: float = 0.5) -> np.ndarray:
    """Connected components per grid: h (..., H, W-1), v (..., H-1, W) -> labels (..., H, W) int64.

    All grids of the batch form one block-diagonal graph, so this is a single scipy call.
    """
    h_arr, v_arr = to_numpy(h), to_numpy(v)
    rows, cols = _grid_shape(h_arr, v_arr)
    lead = h_arr.shape[:-2]
    n_grids, per = int(np.prod(lead, dtype=np.int64)), rows * cols
    node = np.arange(n_grids * per).reshape(n_grids, rows, cols)
    hk = h_arr.reshape(n_grids, rows, cols - 1) > threshold
    vk = v_arr.reshape(n_grids, rows - 1, cols) > threshold
    src = np.concatenate([node[:, :, :-1][hk], node[:, :-1, :][vk]])
    dst = np.concatenate([node[:, :, 1:][hk], node[:, 1:, :][vk]])
    n = n_grids * per
    graph = coo_matrix((np.ones(src.size, dtype=np.int8), (src, dst)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    root = np.full(comp.max(initial=-1) + 1, n, dtype=np.int64)
    np.minimum.at(root, comp, np.arange(n))
    node_root = root[comp]  # smallest node of each node's component (same grid)
    rank = np.cumsum(node_root == np.arange(n)) - 1  # global rank of each root
    first = rank[np.arange(n_grids) * per] if n else rank[:0]
    labels = rank[node_root].reshape(n_grids, per) - first[:, None]
    return labels.reshape(*lead, rows, cols)


@dataclass
class RegionTree:
    """Regions of every layer and their parents one layer up.

    ``labels`` (L, H, W); ``parents[l]`` (R_l,) gives for each region of layer l the
    region of layer l+1 holding most of its patches (l = 0..L-2); ``violations`` lists
    (layer, region) pairs whose patches are split over several regions of layer l+1
    (impossible when the affinities are non-decreasing across layers).
    """

    labels: np.ndarray
    parents: list[np.ndarray]
    violations: list[tuple[int, int]]

    @property
    def nested(self) -> bool:
        return not self.violations

    def children(self, layer: int, region: int) -> list[int]:
        """Regions of ``layer - 1`` whose parent is ``region`` of ``layer``."""
        if not 1 <= layer < len(self.labels):
            raise ValueError(f"expected a layer in 1..{len(self.labels) - 1}, got {layer}")
        return np.flatnonzero(self.parents[layer - 1] == region).tolist()


def region_tree(labels: Any, strict: bool = False) -> RegionTree:
    """Link each region at layer l to its parent at layer l+1 from labels (L, H, W).

    ``strict``: raise ValueError on the first non-nested region instead of listing it.
    """
    arr = np.asarray(labels)
    if arr.ndim != 3 or not np.issubdtype(arr.dtype, np.integer) or arr.min(initial=0) < 0:
        raise ValueError(f"expected non-negative integer labels (L, H, W), got {arr.dtype} {arr.shape}")
    flat = arr.reshape(len(arr), -1)
    parents, violations = [], []
    for layer in range(len(flat) - 1):
        low, high = flat[layer], flat[layer + 1]
        counts = np.zeros((low.max(initial=-1) + 1, high.max(initial=-1) + 1), dtype=np.int64)
        np.add.at(counts, (low, high), 1)
        parents.append(counts.argmax(axis=1))
        bad = np.flatnonzero((counts > 0).sum(axis=1) > 1)
        if strict and bad.size:
            raise ValueError(f"region {bad[0]} of layer {layer} is split across regions of layer {layer + 1}")
        violations += [(layer, int(r)) for r in bad]
    return RegionTree(arr, parents, violations)
