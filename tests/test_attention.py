"""hiclip.attention: prior-weighted attention, every kernel, against per-head loops (float64).

The loop reference builds C entry by entry as products of links (no cost tables, no
broadcasting) and applies it head by head; gradients are taken through it by autograd and
compared for x, the attention weights and the link projections.
"""
import pytest
import torch

from hiclip.attention import Attention, ChainStructure, GridStructure
from hiclip.kernels import Prior

KERNELS = ["materialized", "lean"]


RULES = ["softmax", "softmax_none", "sigmoid", "distance", "distance_budget"]


def make(renormalize=False, seed=0, kernel="auto", width=16, heads=4, rule="softmax"):
    torch.manual_seed(seed)
    budget = 0.4 if rule == "distance_budget" else None  # the distance rule at a fixed share of each sample's edges
    attn = Attention(width=width, heads=heads, link_dim=4, renormalize=renormalize, kernel=kernel,
                     link_rule="distance" if budget else rule, budget_share=budget).double()
    torch.nn.init.normal_(attn.in_proj_weight, std=0.3)
    for lin in (attn.link_q, attn.link_k):
        torch.nn.init.normal_(lin.weight, std=1.0)  # links spread over (0, 1), not all ~0.7
    return attn


def loop_attention(attn, x, prior, mask=None, renormalize=False):
    """Per sample, per head: E = C * softmax(q k^T / sqrt(d) + mask) (or the renormalised form)."""
    B, N, D = x.shape
    d = D // attn.heads
    qkv = x @ attn.in_proj_weight.T + attn.in_proj_bias
    q, k, v = qkv[..., :D], qkv[..., D:2 * D], qkv[..., 2 * D:]
    rows = []
    for b in range(B):
        heads = []
        for hd in range(attn.heads):
            sl = slice(hd * d, (hd + 1) * d)
            s = q[b, :, sl] @ k[b, :, sl].T / d ** 0.5
            if mask is not None:
                s = s + (mask[b, 0] if mask.dim() == 4 else mask)
            if renormalize:
                e = torch.softmax(s + torch.log(prior[b]), -1)
            else:
                e = prior[b] * torch.softmax(s, -1)
            heads.append(e @ v[b, :, sl])
        rows.append(torch.cat(heads, -1))
    return attn.out_proj(torch.stack(rows))


def loop_chain_prior(a, inside):
    """C[b, i, j]: product of the links between i and j when both are inside, else 1 (loops)."""
    B, N = inside.shape
    one = torch.ones((), dtype=a.dtype)
    return torch.stack([torch.stack([torch.stack([
        torch.prod(a[b, min(i, j):max(i, j)]) if inside[b, i] and inside[b, j] else one
        for j in range(N)]) for i in range(N)]) for b in range(B)])


def loop_grid_prior(h, v, offset):
    """The better of the two L-shaped path products on the grid, CLS rows/columns 1 (loops)."""
    B, H, W = h.shape[0], h.shape[1], h.shape[2] + 1
    n = offset + H * W
    one = torch.ones((), dtype=h.dtype)

    def entry(b, i, j):
        if i < offset or j < offset:
            return one
        (ri, ci), (rj, cj) = divmod(i - offset, W), divmod(j - offset, W)
        row_i, row_j = torch.prod(h[b, ri, min(ci, cj):max(ci, cj)]), torch.prod(h[b, rj, min(ci, cj):max(ci, cj)])
        col_j, col_i = torch.prod(v[b, min(ri, rj):max(ri, rj), cj]), torch.prod(v[b, min(ri, rj):max(ri, rj), ci])
        return torch.maximum(row_i * col_j, col_i * row_j)
    return torch.stack([torch.stack([torch.stack([entry(b, i, j) for j in range(n)]) for i in range(n)])
                        for b in range(B)])


def chain_case(causal, device="cpu", dtype=torch.float64):
    """Text: SOT, words, EOT on the chain, padding after (sample 0 padded, sample 1 full)."""
    N = 7
    inside = torch.ones(2, N, dtype=torch.bool)
    inside[0, 5:] = False
    if causal:
        mask = torch.full((N, N), float("-inf"), dtype=dtype).triu(1)
    else:
        mask = torch.zeros(2, 1, 1, N, dtype=dtype).masked_fill(~inside[:, None, None, :], float("-inf"))
    loop_prior = lambda links: loop_chain_prior(links[0].cpu().double(), inside)  # noqa: E731
    return ChainStructure(inside.to(device)), mask.to(device), loop_prior, N


def grid_case(device="cpu", dtype=torch.float64):
    """Image: CLS then a 2x3 patch grid."""
    loop_prior = lambda links: loop_grid_prior(*(a.cpu().double() for a in links), offset=1)  # noqa: E731
    return GridStructure((2, 3), offset=1), None, loop_prior, 7


CASES = {"chain-causal": lambda *a: chain_case(True, *a), "chain-bidirectional": lambda *a: chain_case(False, *a),
         "grid-cls": grid_case}


def run(attn, case, reference, device="cpu", dtype=torch.float64):
    """Forward + backward of one attention layer with its links from x -> (out, grads).

    The reference runs in float64 on the CPU whatever ``attn``'s device and dtype."""
    structure, mask, loop_prior, n = CASES[case](device, dtype)
    x = torch.randn(2, n, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x = x.to(device, dtype).requires_grad_()
    links = attn.link_state(x, structure, None).links
    if reference:
        out = loop_attention(attn, x, loop_prior(links), mask, attn.renormalize)
    else:
        out = attn(x, mask, Prior(structure, links))
    weight = torch.randn(out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    params = [x, attn.in_proj_weight, attn.in_proj_bias, attn.link_q.weight, attn.link_k.weight]
    names = ["x", "in_proj_weight", "in_proj_bias", "link_q", "link_k"]
    if attn.link_rule != "softmax":
        params, names = params + [attn.link_bias], names + ["link_bias"]
    grads = torch.autograd.grad((out * weight.to(device, dtype)).sum(), params)
    return out, dict(zip(names, grads))


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("renormalize", [False, True])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("kernel", KERNELS)
def test_kernels_match_loops_forward_and_gradients(kernel, case, renormalize, rule):
    """Every kernel, with the links of every rule (their values are checked in test_link_rules.py)."""
    attn = make(renormalize, kernel=kernel, rule=rule)
    ref_out, ref_grads = run(attn, case, reference=True)
    out, grads = run(attn, case, reference=False)
    torch.testing.assert_close(out, ref_out, atol=1e-12, rtol=1e-10)
    for name, g in grads.items():
        assert ref_grads[name].abs().max() > 0, name
        torch.testing.assert_close(g, ref_grads[name], atol=1e-12, rtol=1e-10, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("kernel", KERNELS)
def test_prior_of_ones_equals_plain_attention(kernel):
    attn, x = make(kernel=kernel), torch.randn(2, 6, 16, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(attn(x, prior=torch.ones(2, 6, 6, dtype=torch.float64)), attn(x),
                                   atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("renormalize", [False, True])
@pytest.mark.parametrize("kernel", KERNELS)
def test_given_dense_prior_matches_loops(kernel, renormalize):
    attn, x = make(renormalize, kernel=kernel), torch.randn(2, 5, 16, dtype=torch.float64)
    prior = torch.rand(2, 5, 5, dtype=torch.float64) * 0.9 + 0.1
    mask = torch.full((5, 5), float("-inf"), dtype=torch.float64).triu(1)
    with torch.no_grad():
        torch.testing.assert_close(attn(x, mask, prior), loop_attention(attn, x, prior, mask, renormalize),
                                   atol=1e-12, rtol=1e-10)


def test_lean_kernel_keeps_no_per_head_square_for_backward():
    """What autograd saves for one lean layer: nothing of shape (B, heads, N, N)."""
    attn = make(kernel="lean", width=32, heads=8)
    structure, mask, _, n = chain_case(causal=True)
    x = torch.randn(2, n, 32, dtype=torch.float64, requires_grad=True)
    shapes = []

    def pack(t):
        shapes.append(tuple(t.shape))
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        attn(x, mask, Prior(structure, structure.links(*attn.neighbour_qk(x))))
    assert (2, 8, n, n) not in shapes and shapes


def test_unknown_kernel_is_an_error():
    attn, x = make(kernel="fused"), torch.randn(1, 4, 16, dtype=torch.float64)
    with pytest.raises(ValueError, match="unknown attention kernel"):
        attn(x, prior=torch.ones(1, 4, 4, dtype=torch.float64))


def test_plain_attention_matches_torch_multihead():
    attn, x = make(), torch.randn(2, 6, 16, dtype=torch.float64)
    mha = torch.nn.MultiheadAttention(16, 4, batch_first=True).double()
    mha.load_state_dict({k: v for k, v in attn.state_dict().items() if "link" not in k})
    with torch.no_grad():
        torch.testing.assert_close(attn(x), mha(x, x, x, need_weights=False)[0], atol=1e-12, rtol=1e-10)
