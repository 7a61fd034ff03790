"""hiclip.attention: the prior-weighted attention against per-head loops."""
import torch

from hiclip.attention import Attention


def make(renormalize=False, seed=0):
    torch.manual_seed(seed)
    attn = Attention(width=16, heads=4, link_dim=4, renormalize=renormalize).double()  # exactness in float64
    torch.nn.init.normal_(attn.in_proj_weight, std=0.3)
    return attn


def loop_attention(attn, x, prior, mask=None, renormalize=False):
    """Per sample, per head: E = C * softmax(q k^T / sqrt(d) + mask) (or the renormalised form)."""
    B, N, D = x.shape
    d = D // attn.heads
    qkv = x @ attn.in_proj_weight.T + attn.in_proj_bias
    q, k, v = qkv[..., :D], qkv[..., D:2 * D], qkv[..., 2 * D:]
    out = torch.zeros(B, N, D, dtype=x.dtype)
    for b in range(B):
        for hd in range(attn.heads):
            sl = slice(hd * d, (hd + 1) * d)
            s = q[b, :, sl] @ k[b, :, sl].T / d ** 0.5
            if mask is not None:
                s = s + mask
            if renormalize:
                e = torch.softmax(s + torch.log(prior[b]), -1)
            else:
                e = prior[b] * torch.softmax(s, -1)
            out[b, :, sl] = e @ v[b, :, sl]
    return attn.out_proj(out)


def test_prior_of_ones_equals_plain_attention():
    attn, x = make(), torch.randn(2, 6, 16, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(attn(x, prior=torch.ones(2, 6, 6, dtype=torch.float64)), attn(x), atol=1e-12, rtol=1e-10)


def test_prior_weighted_attention_matches_loops():
    attn, x = make(), torch.randn(2, 5, 16, dtype=torch.float64)
    prior = torch.rand(2, 5, 5, dtype=torch.float64) * 0.9 + 0.1
    mask = torch.full((5, 5), float("-inf"), dtype=torch.float64).triu(1)
    with torch.no_grad():
        torch.testing.assert_close(attn(x, mask, prior), loop_attention(attn, x, prior, mask), atol=1e-12, rtol=1e-10)


def test_renormalised_form_matches_loops():
    attn, x = make(renormalize=True), torch.randn(2, 5, 16, dtype=torch.float64)
    prior = torch.rand(2, 5, 5, dtype=torch.float64) * 0.9 + 0.1
    with torch.no_grad():
        torch.testing.assert_close(attn(x, prior=prior), loop_attention(attn, x, prior, renormalize=True),
                                   atol=1e-12, rtol=1e-10)


def test_plain_attention_matches_torch_multihead():
    attn, x = make(), torch.randn(2, 6, 16, dtype=torch.float64)
    mha = torch.nn.MultiheadAttention(16, 4, batch_first=True).double()
    mha.load_state_dict({k: v for k, v in attn.state_dict().items() if "link" not in k})
    with torch.no_grad():
        torch.testing.assert_close(attn(x), mha(x, x, x, need_weights=False)[0], atol=1e-12, rtol=1e-10)
