"""hiclip.hierarchy against explicit loops (the definitions in DESIGN.md §1)."""
import math

import pytest
import torch

from hiclip import hierarchy as hi


def chain_ref(links):
    """C[i, j] = prod of links between i and j, as plain loops in float64."""
    n = len(links) + 1
    C = [[1.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(n):
            for k in range(min(i, j), max(i, j)):
                C[i][j] *= float(links[k])
    return torch.tensor(C, dtype=torch.float64)


def grid_ref(h, v):
    """The better of the two L-shaped path products, as plain loops in float64."""
    H, W = h.shape[0], h.shape[1] + 1

    def row(r, a, b):
        return math.prod(float(h[r, c]) for c in range(min(a, b), max(a, b)))

    def col(c, a, b):
        return math.prod(float(v[r, c]) for r in range(min(a, b), max(a, b)))

    C = torch.empty(H * W, H * W, dtype=torch.float64)
    for i in range(H * W):
        for j in range(H * W):
            (ri, ci), (rj, cj) = divmod(i, W), divmod(j, W)
            C[i, j] = max(row(ri, ci, cj) * col(cj, ri, rj), col(ci, ri, rj) * row(rj, ci, cj))
    return C


def log_uniform(*shape, low=1e-3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.exp(torch.rand(*shape, generator=g) * math.log(low))


def assert_rel_close(C, ref, rtol=1e-5, floor=1e-30):
    ref = ref.to(C.dtype) if C.dtype == torch.float64 else ref
    keep = ref > floor  # below float32's normal range a relative error is meaningless
    rel = ((C.double() - ref).abs() / ref.clamp_min(floor))[keep]
    assert rel.max() <= rtol, f"max relative error {rel.max():.3g}"


@pytest.mark.parametrize("n", [2, 5, 16, 40])
def test_chain_prior_matches_loops(n):
    links = log_uniform(3, n - 1, seed=n)
    C = hi.chain_prior(links)
    for b in range(3):
        assert_rel_close(C[b], chain_ref(links[b]))


def test_chain_prior_long_chain_float64_exact():
    links = log_uniform(74, seed=1).double()
    assert_rel_close(hi.chain_prior(links), chain_ref(links), rtol=1e-10, floor=0)


@pytest.mark.parametrize("H,W", [(1, 5), (2, 2), (3, 4), (5, 3)])
def test_grid_prior_matches_loops(H, W):
    h, v = log_uniform(2, H, W - 1, seed=H), log_uniform(2, H - 1, W, seed=W)
    C = hi.grid_prior(h, v)
    assert C.shape == (2, H * W, H * W)
    for b in range(2):
        assert_rel_close(C[b], grid_ref(h[b], v[b]))


@pytest.mark.parametrize("prior", ["chain", "grid"])
def test_prior_symmetric_unit_diagonal_in_unit_interval(prior):
    if prior == "chain":
        C = hi.chain_prior(log_uniform(4, 11))
    else:
        C = hi.grid_prior(log_uniform(4, 4, 3), log_uniform(4, 3, 4, seed=1))
    assert torch.equal(C, C.transpose(-1, -2))
    assert torch.all(torch.diagonal(C, dim1=-2, dim2=-1) == 1)
    assert C.min() > 0 and C.max() <= 1


def test_grid_with_one_row_equals_chain():
    links = log_uniform(3, 9)
    grid = hi.grid_prior(links.unsqueeze(-2), torch.empty(3, 0, 10))
    torch.testing.assert_close(grid, hi.chain_prior(links), rtol=0, atol=0)


@pytest.mark.parametrize("prior", ["chain", "grid"])
def test_gradients_finite_for_tiny_links(prior):
    if prior == "chain":
        links = torch.full((2, 12), 1e-6, requires_grad=True)
        out = hi.chain_prior(links)
        grads = torch.autograd.grad(out.sum(), links)
    else:
        h = torch.full((2, 3, 3), 1e-6, requires_grad=True)
        v = torch.full((2, 2, 4), 1e-6, requires_grad=True)
        out = hi.grid_prior(h, v)
        grads = torch.autograd.grad(out.sum(), (h, v))
    assert all(torch.isfinite(g).all() for g in grads)
    assert all(g.abs().sum() > 0 for g in grads)


def test_chain_links_match_neighbour_softmax_loops():
    g = torch.Generator().manual_seed(0)
    B, N, G = 2, 7, 4
    q, k = torch.randn(B, N, G, generator=g), torch.randn(B, N, G, generator=g)
    valid = torch.tensor([[0, 1, 1, 1, 1, 0, 0], [0, 1, 1, 0, 0, 0, 0]], dtype=torch.bool)
    a = hi.chain_links(q, k, valid)
    for b in range(B):
        idx = [i for i in range(N) if valid[b, i]]

        def p(i, j):  # softmax of token i over its existing neighbours, entry j
            nbrs = [n for n in (i - 1, i + 1) if n in idx]
            s = {n: float(q[b, i] @ k[b, n]) / math.sqrt(G) for n in nbrs}
            return math.exp(s[j]) / sum(math.exp(x) for x in s.values())

        for e in range(N - 1):
            if e in idx and e + 1 in idx:
                ref = math.sqrt(p(e, e + 1) * p(e + 1, e) + hi.LINK_EPS)
                assert a[b, e].item() == pytest.approx(ref, rel=1e-5)
            else:
                assert a[b, e] == 0
    # a two-token chain: each token has one neighbour, p = 1, link = sqrt(1 + eps)
    assert a[1, 1].item() == pytest.approx(1.0, abs=1e-6)


def test_grid_links_match_neighbour_softmax_loops():
    g = torch.Generator().manual_seed(1)
    B, H, W, G = 1, 3, 4, 5
    q, k = torch.randn(B, H * W, G, generator=g), torch.randn(B, H * W, G, generator=g)
    h, v = hi.grid_links(q, k, (H, W))

    def p(r, c, nr, nc):
        nbrs = [(r + dr, c + dc) for dr, dc in ((0, -1), (0, 1), (-1, 0), (1, 0))
                if 0 <= r + dr < H and 0 <= c + dc < W]
        s = {n: float(q[0, r * W + c] @ k[0, n[0] * W + n[1]]) / math.sqrt(G) for n in nbrs}
        return math.exp(s[(nr, nc)]) / sum(math.exp(x) for x in s.values())

    for r in range(H):
        for c in range(W - 1):
            ref = math.sqrt(p(r, c, r, c + 1) * p(r, c + 1, r, c) + hi.LINK_EPS)
            assert h[0, r, c].item() == pytest.approx(ref, rel=1e-5)
    for r in range(H - 1):
        for c in range(W):
            ref = math.sqrt(p(r, c, r + 1, c) * p(r + 1, c, r, c) + hi.LINK_EPS)
            assert v[0, r, c].item() == pytest.approx(ref, rel=1e-5)


def test_constraint_monotone_and_bounded():
    a = None
    history = []
    for layer in range(6):
        a = hi.constrain(a, torch.rand(4, 9, generator=torch.Generator().manual_seed(layer)))
        history.append(a)
    assert torch.equal(history[0], torch.rand(4, 9, generator=torch.Generator().manual_seed(0)))
    for lo, up in zip(history, history[1:]):
        assert torch.all(up >= lo) and up.max() <= 1
    # hand case: 0.5 then 0.5 -> 0.75
    assert hi.constrain(torch.tensor([0.5]), torch.tensor([0.5])).item() == 0.75


def test_embed_prior_special_tokens_and_padding_get_one():
    prior = torch.full((1, 3, 3), 0.25)
    inside = torch.tensor([[True, True, False]])
    C = hi.embed_prior(prior, inside, offset=1, total=5)
    expect = torch.ones(1, 5, 5)
    expect[0, 1:3, 1:3] = 0.25
    assert torch.equal(C, expect)
