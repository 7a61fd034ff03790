"""Pure tensor functions of hierarchy-aware attention (DESIGN.md §1.1–1.4).

Nothing here holds parameters. Shapes use ``B`` batch, ``N`` tokens, ``G`` the
width of the neighbour projections, ``H``/``W`` the patch grid.

* :func:`chain_scores` / :func:`grid_scores` — neighbour scores ``s_ij`` of one layer (§1.1), and
  the link rules of :data:`LINK_RULES` on them: :func:`chain_softmax` / :func:`grid_softmax` (the
  paper's neighbour softmax, ``â_ij = min(1, sqrt(p_ij p_ji + 1e-9))``, optionally with a "none"
  option) and :func:`sigmoid_links` (per-edge sigmoid and shared distances); every link lies in
  [3.2e-5, 1] so that path costs ``-log â`` are finite and never negative.
  :func:`chain_links` / :func:`grid_links` are the paper's rule from queries and keys.
* :func:`constrain` — the hierarchical constraint ``a^l = a^{l-1} + (1 - a^{l-1}) â^l`` (§1.3).
* :func:`chain_prior` / :func:`grid_prior` — constituent priors ``C`` (§1.4), in
  O(N²) time and memory: path products are ``exp(-|L_a - L_b| ...)`` of cumulative
  sums ``L`` of ``-log a``, taken in float64 so that long chains keep 1e-5 relative
  accuracy in float32.
* :func:`embed_prior` — place a content prior inside the full token sequence,
  special tokens (CLS, start/end of text) and padding getting ``C = 1``.
* :func:`chain_costs` / :func:`grid_costs` — the O(N) cumulative-cost tables behind the
  priors, and :func:`chain_log_prior_at` / :func:`grid_log_prior_at` — ``log C`` at
  given (batch, query, key) indices from those tables. Attention kernels evaluate these
  inside the kernel (flex attention) or over broadcast index grids, never storing C.
* :func:`span_index` / :func:`span_weights` — how much each span of a caption is a constituent
  under the links, for the span–image constituent loss (docs/design.md §1.8);
  :func:`group_means` — every patch's group feature under a grid prior (its ``groups`` target).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from .config import LINK_RULES as CONFIG_LINK_RULES

LINK_EPS = 1e-9
"""Added under the square root of ``p_ij * p_ji``: keeps every link > 0 (log-safe)."""


def _masked_softmax(scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis restricted to ``valid`` entries; 0 elsewhere.

    Rows with no valid entry give all zeros (and finite gradients: no ``-inf``).
    """
    neg = torch.finfo(scores.dtype).min
    p = torch.softmax(scores.masked_fill(~valid, neg), dim=-1)
    return p * valid


def _affinity(pp: torch.Tensor) -> torch.Tensor:
    """``p_ij * p_ji`` -> link ``min(1, sqrt(p_ij p_ji + eps))`` (two tokens that choose only each
    other would otherwise get 1 + 5e-10, a negative path cost)."""
    return torch.sqrt(pp + LINK_EPS).clamp_max(1.0)


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    """Links are computed in float32 at least (bf16/fp16 inputs are upcast), float64 stays float64."""
    return torch.promote_types(dtype, torch.float32)


LINK_RULES = CONFIG_LINK_RULES
"""How a hierarchy layer turns neighbour scores into links (``hierarchy.link``, docs/design.md §1.2):

* ``softmax`` — the paper's rule (Tree Transformer's neighbour softmax): each token spends one unit of
  link mass over its neighbours, ``â_ij = sqrt(p_ij p_ji + 1e-9)``; "no preference" gives ``p = 1/k``.
* ``softmax_none`` — the same softmax with one more option, "none", whose learnable logit ``b_l``
  (one per layer) lets a token link to no neighbour.
* ``sigmoid`` — a symmetric link per edge, ``â_ij = σ((s_ij + s_ji)/2 + b_l)``, ``b_l`` learnable;
  a layer with no preference adds ``σ(b_l)`` (started at 0.1).
* ``distance`` — one distance per edge from the first hierarchy layer's scores,
  ``δ_ij = −(s_ij + s_ji)/2``, shared by all layers: the cumulative link is
  ``a^l = σ(τ_l − δ_ij)`` with increasing thresholds ``τ_l`` (syntactic-distance style), so
  the groupings of successive layers nest by construction.

With ``hierarchy.budget`` (distance rule only) the shared scores are standardised over each
sample's edges (:func:`standardize_edges`, ``z``) and layer ``l`` links ``a^l = σ(s (z − q_l))``
with ``q_l = Φ⁻¹(1 − share_l)`` and one learnable sharpness ``s`` (:func:`budget_links`): about
``share_l`` of every sample's edges are merged at layer ``l`` whatever the scores, so neither
"one region" nor "nothing merged" can be reached, and the layers nest by construction.
"""

LINK_FLOOR = LINK_EPS ** 0.5
"""The smallest link any rule gives (3.2e-5, the softmax rule's ``sqrt(1e-9)``): path costs stay finite."""

EdgeScores = tuple[tuple[torch.Tensor, torch.Tensor], ...]
"""Per family of edges (chain: one; grid: horizontal, vertical) the scores ``(s_ij, s_ji)`` of each
edge, forward (towards the later token) and backward."""


def chain_scores(q: torch.Tensor, k: torch.Tensor) -> EdgeScores:
    """Neighbour scores along a chain.

    Args:
        q, k: (B, N, G) neighbour queries ``Wq_g x`` and keys ``Wk_g x``.

    Returns:
        ``((fwd, bwd),)``, each (B, N-1): ``s_{i,i+1}`` and ``s_{i+1,i}`` (at least float32).
    """
    q, k = q.to(_work_dtype(q.dtype)), k.to(_work_dtype(k.dtype))
    scale = q.shape[-1] ** -0.5
    return (((q[:, :-1] * k[:, 1:]).sum(-1) * scale, (q[:, 1:] * k[:, :-1]).sum(-1) * scale),)


def chain_softmax(scores: EdgeScores, valid: torch.Tensor | None = None,
                  none: torch.Tensor | None = None) -> torch.Tensor:
    """The neighbour-softmax links of a chain from its :func:`chain_scores`.

    Args:
        scores: ``((fwd, bwd),)``, each (B, N-1).
        valid: (B, N) bool, True for tokens inside the chain; padding and special tokens are not
            neighbours. None: all valid.
        none: scalar logit of a "none" option in every token's softmax (``softmax_none``), or None.

    Returns:
        (B, N-1) ``â[k]`` for the edge (k, k+1); 0 on edges with an invalid end.
    """
    ((right, left),) = scores
    if valid is None:
        valid = torch.ones(right.shape[0], right.shape[1] + 1, dtype=torch.bool, device=right.device)
    edge_ok = valid[:, :-1] & valid[:, 1:]
    pad = torch.zeros_like(right[:, :1])
    pad_ok = torch.zeros_like(edge_ok[:, :1])
    # scores of token i towards its left / right neighbour: (B, N, 2)
    s = torch.stack([torch.cat([pad, left], 1), torch.cat([right, pad], 1)], -1)
    ok = torch.stack([torch.cat([pad_ok, edge_ok], 1), torch.cat([edge_ok, pad_ok], 1)], -1)
    p = _softmax_with_none(s, ok, none)
    p_right, p_left = p[:, :-1, 1], p[:, 1:, 0]  # p_{i -> i+1}, p_{i+1 -> i}
    return _affinity(p_right * p_left) * edge_ok


def chain_links(q: torch.Tensor, k: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """The paper's links of one layer along a chain (text): :func:`chain_softmax` of :func:`chain_scores`.

    Args:
        q, k: (B, N, G) neighbour queries and keys; valid: (B, N) bool or None.

    Returns:
        (B, N-1) ``â[k]`` for the edge (k, k+1); 0 on edges with an invalid end.
    """
    return chain_softmax(chain_scores(q, k), valid)


def grid_scores(q: torch.Tensor, k: torch.Tensor, grid: tuple[int, int]) -> EdgeScores:
    """Neighbour scores on an H×W patch grid (row-major tokens).

    Args:
        q, k: (B, H*W, G) neighbour queries and keys of the patches.
        grid: (H, W).

    Returns:
        ``((right, left), (down, up))``: (B, H, W-1) scores ``(r,c)→(r,c+1)`` and back, and
        (B, H-1, W) scores ``(r,c)→(r+1,c)`` and back (at least float32).
    """
    H, W = grid
    B, N, G = q.shape
    if N != H * W:
        raise ValueError(f"grid_links: expected {H}x{W}={H * W} patches, got {N}")
    scale = G ** -0.5
    q = q.reshape(B, H, W, G).to(_work_dtype(q.dtype))
    k = k.reshape(B, H, W, G).to(_work_dtype(k.dtype))
    s_r = (q[:, :, :-1] * k[:, :, 1:]).sum(-1) * scale
    s_l = (q[:, :, 1:] * k[:, :, :-1]).sum(-1) * scale
    s_d = (q[:, :-1] * k[:, 1:]).sum(-1) * scale
    s_u = (q[:, 1:] * k[:, :-1]).sum(-1) * scale
    return (s_r, s_l), (s_d, s_u)


def grid_softmax(scores: EdgeScores, none: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The neighbour-softmax links of a grid from its :func:`grid_scores`.

    Args:
        scores: ``((right, left), (down, up))`` as :func:`grid_scores` returns them.
        none: scalar logit of a "none" option (``softmax_none``), or None.

    Returns:
        h: (B, H, W-1) links between (r, c) and (r, c+1); v: (B, H-1, W) between (r, c) and (r+1, c).
    """
    (s_r, s_l), (s_d, s_u) = scores
    B, H, W = s_r.shape[0], s_r.shape[1], s_r.shape[2] + 1
    # per-token scores towards [left, right, up, down]: (B, H, W, 4), padded where absent
    s = torch.stack([
        F.pad(s_l, (1, 0)), F.pad(s_r, (0, 1)), F.pad(s_u, (0, 0, 1, 0)), F.pad(s_d, (0, 0, 0, 1)),
    ], -1)
    ok = torch.ones(H, W, 4, dtype=torch.bool, device=s.device)
    ok[:, 0, 0] = False
    ok[:, -1, 1] = False
    ok[0, :, 2] = False
    ok[-1, :, 3] = False
    p = _softmax_with_none(s, ok.expand(B, H, W, 4), none)
    h = _affinity(p[:, :, :-1, 1] * p[:, :, 1:, 0])
    v = _affinity(p[:, :-1, :, 3] * p[:, 1:, :, 2])
    return h, v


def grid_links(q: torch.Tensor, k: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's links of one layer on an H×W patch grid: :func:`grid_softmax` of :func:`grid_scores`.

    Returns:
        h: (B, H, W-1) links between (r, c) and (r, c+1);
        v: (B, H-1, W) links between (r, c) and (r+1, c).
    """
    return grid_softmax(grid_scores(q, k, grid))


def _softmax_with_none(scores: torch.Tensor, ok: torch.Tensor, none: torch.Tensor | None) -> torch.Tensor:
    """Softmax over the neighbours (last axis, ``ok`` entries), with an extra always-present option
    of logit ``none`` when given; returns the neighbours' probabilities only, same shape as ``scores``."""
    if none is None:
        return _masked_softmax(scores, ok)
    extra = none.to(scores.dtype).expand(*scores.shape[:-1], 1)
    p = _masked_softmax(torch.cat([scores, extra], -1), torch.cat([ok, torch.ones_like(ok[..., :1])], -1))
    return p[..., :-1]


def edge_mean(scores: EdgeScores) -> tuple[torch.Tensor, ...]:
    """Per family of edges the symmetric score ``(s_ij + s_ji) / 2`` (minus the ``distance`` rule's δ)."""
    return tuple((fwd + bwd) / 2 for fwd, bwd in scores)


def sigmoid_links(mean: tuple[torch.Tensor, ...], bias: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``σ(mean + bias)`` per edge, kept in ``[LINK_FLOOR, 1]`` (finite path costs).

    ``sigmoid`` rule: ``mean`` is this layer's :func:`edge_mean` and ``bias`` its ``b_l``;
    ``distance`` rule: ``mean`` is the first hierarchy layer's and ``bias`` the threshold ``τ_l``."""
    return tuple(torch.sigmoid(m + bias.to(m.dtype)).clamp_min(LINK_FLOOR) for m in mean)


def standardize_edges(mean: tuple[torch.Tensor, ...], valid: tuple[torch.Tensor, ...] | None = None,
                      eps: float = 1e-6) -> tuple[torch.Tensor, ...]:
    """Per sample, ``(m − μ) / (σ + eps)`` over the sample's valid edges of every family pooled.

    ``mean``: per family (B, ...) edge scores; ``valid``: per family a bool mask of the same shape
    (None: every edge). μ and σ (population) are taken per sample; invalid edges get 0. A sample
    whose edges all score alike gets 0 everywhere (no NaN)."""
    valid = valid or tuple(torch.ones_like(m, dtype=torch.bool) for m in mean)
    flat = torch.cat([m.flatten(1) for m in mean], 1)
    ok = torch.cat([v.flatten(1) for v in valid], 1).to(flat.dtype)
    count = ok.sum(1).clamp_min(1)
    mu = (flat * ok).sum(1) / count
    sd = ((((flat - mu[:, None]) * ok) ** 2).sum(1) / count).sqrt()
    shape = lambda t, m: t.reshape(-1, *([1] * (m.dim() - 1)))  # noqa: E731 -- (B,) against (B, ...)
    return tuple(torch.where(v, (m - shape(mu, m)) / (shape(sd, m) + eps), torch.zeros_like(m))
                 for m, v in zip(mean, valid))


def budget_threshold(share: float) -> float:
    """``q = Φ⁻¹(1 − share)``: the standard-normal score above which a ``share`` of edges lies."""
    return float(torch.special.ndtri(torch.tensor(1.0 - share, dtype=torch.float64)))


def budget_links(z: tuple[torch.Tensor, ...], scale: torch.Tensor, share: float) -> tuple[torch.Tensor, ...]:
    """``σ(scale · (z − q))`` per edge with ``q = budget_threshold(share)``, kept in ``[LINK_FLOOR, 1]``."""
    q = budget_threshold(share)
    return tuple(torch.sigmoid(scale.to(m.dtype) * (m - q)).clamp_min(LINK_FLOOR) for m in z)


def constrain(prev: torch.Tensor | None, new: torch.Tensor) -> torch.Tensor:
    """Hierarchical constraint ``a^l = a^{l-1} + (1 - a^{l-1}) * â^l``; ``a^0 = 0``.

    Args:
        prev: link affinities of the previous hierarchy layer (any shape) or None.
        new: this layer's ``â``, same shape.
    """
    if prev is None:
        return new
    return prev + (1.0 - prev) * new


def _cost(links: torch.Tensor) -> torch.Tensor:
    """Cumulative ``-log a`` along the last axis, float64, with a leading 0.

    (..., M) -> (..., M+1): entry t is the path cost from position 0 to t.
    """
    c = -torch.log(links.double())
    return F.pad(torch.cumsum(c, -1), (1, 0))


def _path(cum: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Pairwise path costs ``|cum_a - cum_b|`` over the last axis, cast to ``dtype``
    (at least float32). (..., M) -> (..., M, M)."""
    return (cum.unsqueeze(-1) - cum.unsqueeze(-2)).abs().to(torch.promote_types(dtype, torch.float32))


def chain_prior(links: torch.Tensor) -> torch.Tensor:
    """Constituent prior of a chain (Tree Transformer, O(N²)).

    Args:
        links: (..., N-1) link affinities in (0, 1]; ``links[k]`` joins tokens k, k+1.

    Returns:
        (..., N, N) ``C[i, j] = prod_{k=min(i,j)}^{max(i,j)-1} links[k]``, ``C[i, i] = 1``.
    """
    return torch.exp(chain_log_prior(links)).to(links.dtype)


def chain_log_prior(links: torch.Tensor) -> torch.Tensor:
    """``log`` of :func:`chain_prior`, (..., N, N), in ``links.dtype`` (float32 at least); never -inf."""
    return -_path(_cost(links), links.dtype)


def grid_prior(h: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Constituent prior on an H×W grid: the better of the two L-shaped paths (O(N²)).

    Args:
        h: (..., H, W-1) horizontal links, ``h[r, c]`` joins (r, c)-(r, c+1).
        v: (..., H-1, W) vertical links, ``v[r, c]`` joins (r, c)-(r+1, c).

    Returns:
        (..., H*W, H*W), row-major patch index ``i = r*W + c``;
        ``C[i, j] = max(P(row r_i: c_i→c_j, then column c_j: r_i→r_j),
        P(column c_i: r_i→r_j, then row r_j: c_i→c_j))``.
    """
    return torch.exp(grid_log_prior(h, v)).to(h.dtype)


def grid_log_prior(h: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``log`` of :func:`grid_prior`, (..., H*W, H*W), in ``h.dtype`` (float32 at least); never -inf."""
    H, W = h.shape[-2], h.shape[-1] + 1
    if v.shape[-2:] != (H - 1, W):
        raise ValueError(f"grid_prior: h {tuple(h.shape)} implies v (..., {H - 1}, {W}), got {tuple(v.shape)}")
    row = _path(_cost(h), h.dtype)  # (..., H, W, W): [r, c_a, c_b], cost along row r
    col = _path(_cost(v.transpose(-1, -2)), h.dtype)  # (..., W, H, H): [c, r_a, r_b], along column c
    # broadcast to axes (r_i, c_i, r_j, c_j)
    row_then_col = row.unsqueeze(-2) + _last3(col, 1, 2, 0).unsqueeze(-3)
    col_then_row = _last3(col, 1, 0, 2).unsqueeze(-1) + _last3(row, 1, 0, 2).unsqueeze(-4)
    out = -torch.minimum(row_then_col, col_then_row)
    return out.reshape(*out.shape[:-4], H * W, H * W)


def _last3(t: torch.Tensor, *order: int) -> torch.Tensor:
    """Permute the last three axes of ``t`` into ``order`` (leading axes untouched)."""
    lead = t.dim() - 3
    return t.permute(*range(lead), *(lead + o for o in order))


def embed_prior(prior: torch.Tensor, inside: torch.Tensor | None = None, offset: int = 0,
                total: int | None = None, fill: float = 1.0) -> torch.Tensor:
    """Place a content prior inside the full token sequence (special tokens get C = 1).

    Args:
        prior: (B, M, M) prior over the content tokens.
        inside: (B, M) bool, tokens really in the structure; rows/columns of others
            become 1 (padding, end of text). None: all inside.
        offset: index of the first content token in the full sequence (1 after CLS / start).
        total: full sequence length N (default ``offset + M``).
        fill: the value elsewhere (1; 0 to place a log prior).

    Returns:
        (B, N, N) with ``C[i, j] = prior`` for content pairs and ``fill`` elsewhere.
    """
    M = prior.shape[-1]
    total = offset + M if total is None else total
    if inside is not None:
        both = inside.unsqueeze(-1) & inside.unsqueeze(-2)
        prior = torch.where(both, prior, torch.full_like(prior, fill))
    return F.pad(prior, (offset, total - offset - M, offset, total - offset - M), value=fill)


def chain_costs(links: torch.Tensor) -> torch.Tensor:
    """Cumulative path cost of a chain: (..., N-1) links -> (..., N) float64, ``L[0] = 0``,
    ``L[t] = sum_{k<t} -log links[k]``; ``log C[i, j] = -|L[i] - L[j]|``."""
    return _cost(links)


def grid_costs(h: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cumulative path costs along the rows and columns of an H×W grid, float64.

    Args:
        h: (B, H, W-1) horizontal links;  v: (B, H-1, W) vertical links.

    Returns:
        ``row``, ``col``, each (B, H*W) over row-major patches ``p = r*W + c``:
        ``row[p]`` the cost along row r from column 0 to c, ``col[p]`` along column c from row 0 to r.
    """
    B, H, W = h.shape[0], h.shape[1], h.shape[2] + 1
    row = _cost(h).reshape(B, H * W)
    col = _cost(v.transpose(-1, -2)).transpose(-1, -2).reshape(B, H * W)
    return row, col


def chain_log_prior_at(cost: torch.Tensor, inside: torch.Tensor, b, i, j) -> torch.Tensor:
    """``log C`` of a chain over the full sequence at (batch b, token i, token j).

    Args:
        cost: (B, N) :func:`chain_costs` of the links (links off the chain set to 1).
        inside: (B, N) 1.0 for tokens on the chain, 0.0 for the others (``C = 1`` rows and columns).
        b, i, j: integer index tensors, broadcast against each other (or scalars inside a kernel).
    """
    return -(cost[b, i] - cost[b, j]).abs() * (inside[b, i] * inside[b, j])


def grid_log_prior_at(row: torch.Tensor, col: torch.Tensor, width: int, offset: int, b, i, j) -> torch.Tensor:
    """``log C`` of a grid prior over the full sequence at (batch b, token i, token j).

    Tokens ``offset + r*width + c`` are the patches; the ``offset`` leading tokens (CLS) get
    ``log C = 0``. ``row``, ``col``: (B, H*W) :func:`grid_costs`. The cost of the better of
    the two L-shaped paths, as :func:`grid_prior`.
    """
    pi, pj = (i - offset).clamp_min(0), (j - offset).clamp_min(0)
    corner1 = pi - pi % width + pj % width  # (r_i, c_j): along row r_i first
    corner2 = pj - pj % width + pi % width  # (r_j, c_i): along column c_i first
    via1 = (row[b, pi] - row[b, corner1]).abs() + (col[b, corner1] - col[b, pj]).abs()
    via2 = (col[b, pi] - col[b, corner2]).abs() + (row[b, corner2] - row[b, pj]).abs()
    on_grid = (i >= offset) & (j >= offset)
    return torch.where(on_grid, -torch.minimum(via1, via2), 0.0)


def span_index(n: int, max_len: int | None = None, device: torch.device | None = None) -> torch.Tensor:
    """All spans ``[i, j]`` (inclusive, ``i < j``) of positions 0..n-1, at most ``max_len`` long: (S, 2)."""
    i, j = torch.triu_indices(n, n, offset=1, device=device)
    if max_len is not None:
        keep = j - i < max_len
        i, j = i[keep], j[keep]
    return torch.stack([i, j], -1)


def span_weights(links: torch.Tensor, inside: torch.Tensor, spans: torch.Tensor) -> torch.Tensor:
    """How much each span is a constituent: ``w_ij = C_ij · (1 − a_{i−1,i}) · (1 − a_{j,j+1})``.

    Args:
        links: (B, L, N-1) cumulative chain links per hierarchy layer (edge k joins k, k+1).
        inside: (B, N) bool, the tokens spans may cover (a caption's words); an edge to a token
            outside counts as cut (``a = 0``), and a span reaching outside gets weight 0.
        spans: (S, 2) inclusive ``[i, j]`` from :func:`span_index`.

    Returns:
        (B, L, S) weights in [0, 1]: inside links joined (the prior ``C``), both boundary links cut.
    """
    a = links.double()
    edge_in = (inside[:, :-1] & inside[:, 1:]).unsqueeze(1)  # (B, 1, N-1)
    cost = F.pad(torch.cumsum(-torch.log(torch.where(edge_in, a, torch.ones_like(a)).clamp_min(LINK_FLOOR)), -1),
                 (1, 0))  # (B, L, N): cost from token 0 to t
    i, j = spans[:, 0], spans[:, 1]
    inner = torch.exp(-(cost[..., j] - cost[..., i]))  # (B, L, S)
    cut = torch.where(edge_in, a, torch.zeros_like(a))
    cut = F.pad(cut, (1, 1))  # position t: edge (t-1, t) at index t
    left, right = 1 - cut[..., i], 1 - cut[..., j + 1]
    ok = inside[:, i] & inside[:, j]  # (B, S): inside is contiguous, so the whole span is inside
    return (inner * left * right * ok.unsqueeze(1)).to(links.dtype)


def group_means(prior: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Each token's group under a constituent prior: the prior-weighted mean of the tokens.

    Args:
        prior: (B, N, N) constituent prior ``C`` (row p: token p's group; ``C[p, p] = 1``).
        x: (B, N, D) token states.

    Returns:
        (B, N, D): ``Σ_q C[p, q] x_q / Σ_q C[p, q]``.
    """
    c = prior.to(x.dtype)
    return (c @ x) / c.sum(-1, keepdim=True)


# --- log C at indices, by structure kind: the dispatch of the attention kernels (hiclip.kernels, kernels_flex) ---

def _dense_log_prior_at(log_c: torch.Tensor, b, i, j) -> torch.Tensor:
    return log_c[b, i, j]


LOG_PRIOR_AT: dict[str, Callable[..., torch.Tensor]] = {
    "chain": chain_log_prior_at, "grid": grid_log_prior_at, "dense": _dense_log_prior_at}
"""``kind`` -> ``f(*tables, *geometry, b, i, j)`` giving ``log C`` at index tensors b, i, j."""


@dataclass(frozen=True)
class PriorTables:
    """``log C`` as a function of (batch, query, key) indices: O(N) tables (or a given dense log C).

    kind: a key of :data:`LOG_PRIOR_AT`; tables: its tensors (float64 for structures);
    geometry: its integer arguments (grid width and offset).
    """

    kind: str
    tables: tuple[torch.Tensor, ...]
    geometry: tuple[int, ...] = ()

    def at(self, b, i, j) -> torch.Tensor:
        return LOG_PRIOR_AT[self.kind](*self.tables, *self.geometry, b, i, j)

    def log_dense(self, n: int) -> torch.Tensor:
        """(B, N, N) ``log C`` over the full sequence of ``n`` tokens."""
        device = self.tables[0].device
        b = torch.arange(self.tables[0].shape[0], device=device)[:, None, None]
        idx = torch.arange(n, device=device)
        return self.at(b, idx[None, :, None], idx[None, None, :])
