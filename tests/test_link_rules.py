"""The link rules of ``hierarchy.link`` (hiclip.hierarchy.LINK_RULES) against loop references (float64).

Each reference walks the tokens and their neighbours one by one: no stacked score tensors, no
padding tricks. The paper's ``softmax`` rule is covered in test_hierarchy.py; here are the others,
and what a stack of layers does with them (constraint, shared distances, nesting).
"""
import math

import pytest
import torch

from hiclip import hierarchy as hi
from hiclip.attention import LINK_BIAS_INIT, Attention, ChainStructure, GridStructure, Transformer
from hiclip.config import ModelCfg, load_config
from hiclip.model import HiCLIP

G = 4


def qk(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(2, n, G, dtype=torch.float64, generator=g),
            torch.randn(2, n, G, dtype=torch.float64, generator=g))


def score(q, k, b, i, j):
    return float((q[b, i] @ k[b, j]).detach()) / math.sqrt(G)


def sig(x):
    return 1.0 / (1.0 + math.exp(-x))


def chain_neighbours(i, valid_row):
    if not valid_row[i]:
        return []
    return [j for j in (i - 1, i + 1) if 0 <= j < len(valid_row) and valid_row[j]]


def grid_neighbours(i, H, W):
    r, c = divmod(i, W)
    return [rr * W + cc for rr, cc in ((r, c - 1), (r, c + 1), (r - 1, c), (r + 1, c)) if 0 <= rr < H and 0 <= cc < W]


def loop_softmax_none(q, k, b, i, j, neighbours, none):
    """p_ij over i's neighbours and the "none" option."""
    z = sum(math.exp(score(q, k, b, i, m)) for m in neighbours(i)) + math.exp(none)
    return math.exp(score(q, k, b, i, j)) / z


VALID = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])


@pytest.mark.parametrize("none", [None, 0.7])
def test_chain_softmax_with_and_without_none_matches_loops(none):
    q, k = qk(6)
    got = hi.chain_softmax(hi.chain_scores(q, k), VALID, None if none is None else torch.tensor(none, dtype=torch.float64))
    for b in range(2):
        nb = lambda i: chain_neighbours(i, VALID[b].tolist())  # noqa: E731
        for e in range(5):
            if not (VALID[b, e] and VALID[b, e + 1]):
                assert got[b, e] == 0
                continue
            if none is None:
                p = [math.exp(score(q, k, b, i, j)) / sum(math.exp(score(q, k, b, i, m)) for m in nb(i))
                     for i, j in ((e, e + 1), (e + 1, e))]
            else:
                p = [loop_softmax_none(q, k, b, i, j, nb, none) for i, j in ((e, e + 1), (e + 1, e))]
            assert got[b, e].item() == pytest.approx(min(1.0, math.sqrt(p[0] * p[1] + 1e-9)), rel=1e-12)


def test_grid_softmax_none_matches_loops():
    H, W, none = 3, 4, -0.3
    q, k = qk(H * W, seed=3)
    h, v = hi.grid_softmax(hi.grid_scores(q, k, (H, W)), torch.tensor(none, dtype=torch.float64))
    nb = lambda i: grid_neighbours(i, H, W)  # noqa: E731
    for b in range(2):
        for r in range(H):
            for c in range(W):
                i = r * W + c
                for j, got in ((i + 1, h[b, r, c] if c < W - 1 else None), (i + W, v[b, r, c] if r < H - 1 else None)):
                    if got is None:
                        continue
                    p = loop_softmax_none(q, k, b, i, j, nb, none) * loop_softmax_none(q, k, b, j, i, nb, none)
                    assert got.item() == pytest.approx(math.sqrt(p + 1e-9), rel=1e-12)


def test_sigmoid_rule_matches_loops_on_chain_and_grid():
    bias = torch.tensor(-1.2, dtype=torch.float64)
    q, k = qk(6, seed=1)
    (a,) = ChainStructure(VALID).restrict(hi.sigmoid_links(hi.edge_mean(hi.chain_scores(q, k)), bias))
    for b in range(2):
        for e in range(5):
            want = sig((score(q, k, b, e, e + 1) + score(q, k, b, e + 1, e)) / 2 - 1.2)
            assert a[b, e].item() == pytest.approx(want if VALID[b, e] and VALID[b, e + 1] else 0.0, rel=1e-12)
    H, W = 2, 3
    q, k = qk(H * W, seed=2)
    h, v = hi.sigmoid_links(hi.edge_mean(hi.grid_scores(q, k, (H, W))), bias)
    for b in range(2):
        for r in range(H):
            for c in range(W - 1):
                i = r * W + c
                assert h[b, r, c].item() == pytest.approx(
                    sig((score(q, k, b, i, i + 1) + score(q, k, b, i + 1, i)) / 2 - 1.2), rel=1e-12)
        for c in range(W):
            i = c
            assert v[b, 0, c].item() == pytest.approx(
                sig((score(q, k, b, i, i + W) + score(q, k, b, i + W, i)) / 2 - 1.2), rel=1e-12)


def test_sigmoid_links_stay_at_or_above_the_floor():
    far = (torch.full((1, 3), -1e4, dtype=torch.float64),)
    assert (hi.sigmoid_links(far, torch.tensor(0.0)) [0] == hi.LINK_FLOOR).all()


def _stack(rule, layers=3, width=16):
    torch.manual_seed(0)
    t = Transformer(width, layers, 4, hierarchy_layers=list(range(layers)), link_dim=G, link_rule=rule).double()
    t.init_parameters()
    return t


def test_untrained_layers_with_an_off_state_link_at_about_one_tenth():
    """Whatever the scores' spread, "no preference" must not be the softmax's 1/k: with all scores 0
    the sigmoid rule links with σ(b) = 0.1 and softmax_none a chain token with 1/10 for each side."""
    zero = ((torch.zeros(1, 4, dtype=torch.float64), torch.zeros(1, 4, dtype=torch.float64)),)
    (a,) = hi.sigmoid_links(hi.edge_mean(zero), torch.tensor(LINK_BIAS_INIT["sigmoid"]))
    torch.testing.assert_close(a, torch.full_like(a, 0.1))
    inner = hi.chain_softmax(zero, None, torch.tensor(LINK_BIAS_INIT["softmax_none"]))[:, 1:-1]
    torch.testing.assert_close(inner, torch.full_like(inner, math.sqrt(0.01 + 1e-9)))


def test_distance_rule_shares_one_score_per_edge_and_nests():
    """a^l = σ(τ_l + m) with the first layer's scores m and τ increasing: every edge's link grows
    with depth, and the order of the edges is the same at every layer (so groupings nest)."""
    t = _stack("distance")
    first = t.resblocks[0].attn
    assert first.has_link_projections and not any(b.attn.has_link_projections for b in t.resblocks[1:])
    inside = torch.ones(2, 7, dtype=torch.bool)
    x = torch.randn(2, 7, 16, dtype=torch.float64)
    _, history = t(x, structure=ChainStructure(inside))
    # independent: m from the first block's own projections, thresholds from the biases
    h = t.resblocks[0].ln_1(x)
    q, k = first.link_q(h), first.link_k(h)
    m = torch.tensor([[(score(q, k, b, e, e + 1) + score(q, k, b, e + 1, e)) / 2 for e in range(6)] for b in range(2)],
                     dtype=torch.float64)
    tau = first.link_bias.item()
    for layer, (a,) in enumerate(history):
        if layer:
            tau += math.log1p(math.exp(t.resblocks[layer].attn.link_bias.item()))
        torch.testing.assert_close(a, torch.sigmoid(m + tau), rtol=1e-12, atol=0)
    a = torch.stack([links[0] for links in history])
    assert (a[1:] > a[:-1]).all()
    assert (a.argsort(-1) == a[0].argsort(-1)).all()
    # thresholds start evenly from 0.1 to 0.9 (the links of an edge with score 0)
    assert sig(first.link_bias.item()) == pytest.approx(0.1)
    assert sig(tau) == pytest.approx(0.9)


@pytest.mark.parametrize("rule", ["softmax_none", "sigmoid"])
def test_per_layer_rules_compose_by_the_constraint(rule):
    t = _stack(rule, layers=2)
    inside = torch.ones(1, 5, dtype=torch.bool)
    x = torch.randn(1, 5, 16, dtype=torch.float64)
    s = ChainStructure(inside)
    _, history = t(x, structure=s)
    x1, st = t.resblocks[0](x, None, s, None)
    (new,) = t.resblocks[1].attn.link_state(t.resblocks[1].ln_1(x1), s, None).links
    (prev,) = history[0]
    torch.testing.assert_close(history[1][0], prev + (1 - prev) * new, rtol=1e-12, atol=0)


@pytest.mark.parametrize("rule, biases", [("softmax_none", 8), ("sigmoid", 8), ("distance", 8),
                                          ("distance_budget", 2)])  # a budget: one sharpness per tower
def test_every_rule_trains_every_link_parameter_of_a_model(rule, biases):
    cfg = load_config("HiCLIP-Tiny").to_dict()
    for tower in ("vision_cfg", "text_cfg"):
        cfg[tower]["hierarchy"] |= ({"link": "distance", "budget": [0.2, 0.4, 0.6, 0.8]} if rule == "distance_budget"
                                    else {"link": rule})
    torch.manual_seed(0)
    model = HiCLIP(ModelCfg.from_dict(cfg))
    images = torch.randn(2, 3, 64, 64)
    tokens = torch.zeros(2, 32, dtype=torch.long)
    tokens[:, 0], tokens[:, 1:6], tokens[:, 6] = 49406, torch.arange(400, 405), 49407
    img, txt = model.encode_image(images, normalize=True), model.encode_text(tokens, normalize=True)
    (img @ txt.T).logsumexp(-1).sum().backward()
    link = {n: p.grad for n, p in model.named_parameters() if ".attn.link" in n}
    assert len([n for n in link if n.endswith("link_bias")]) == biases
    assert all(g is not None and g.abs().sum() > 0 for g in link.values()), \
        [n for n, g in link.items() if g is None or g.abs().sum() == 0]


def test_unknown_rule_is_a_config_error():
    cfg = load_config("HiCLIP-Tiny").to_dict()
    cfg["text_cfg"]["hierarchy"]["link"] = "argmax"
    with pytest.raises(ValueError, match="hierarchy.link must be one of"):
        ModelCfg.from_dict(cfg)
    with pytest.raises(ValueError, match="hierarchy.link must be one of"):
        Attention(16, 4, link_dim=4, link_rule="argmax")


def test_grid_structure_rules_give_grid_shaped_links():
    a = Attention(16, 4, link_dim=G, link_rule="sigmoid").double()
    h, v = a.link_state(torch.randn(2, 7, 16, dtype=torch.float64), GridStructure((2, 3)), None).links
    assert h.shape == (2, 2, 2) and v.shape == (2, 1, 3)


SHARES = [0.2, 0.5, 0.8]


def test_budget_standardises_each_samples_valid_edges_and_thresholds_at_fixed_quantiles():
    """a^l = σ(s (z − Φ⁻¹(1 − share_l))) with z the first layer's edge scores standardised over the
    sample's own valid edges (padding left out), written out edge by edge."""
    torch.manual_seed(0)
    t = Transformer(16, 3, 4, hierarchy_layers=[0, 1, 2], link_dim=G, link_rule="distance", budget=SHARES).double()
    t.init_parameters()
    first = t.resblocks[0].attn
    assert [hasattr(b.attn, "link_bias") for b in t.resblocks] == [True, False, False]  # one sharpness only
    inside = torch.tensor([[True] * 7, [True] * 5 + [False] * 2])
    x = torch.randn(2, 7, 16, dtype=torch.float64)
    _, history = t(x, structure=ChainStructure(inside))
    h = t.resblocks[0].ln_1(x)
    q, k = first.link_q(h), first.link_k(h)
    scale = math.log1p(math.exp(first.link_bias.item()))
    assert scale == pytest.approx(2.0)
    for b in range(2):
        n = int(inside[b].sum())
        m = [(score(q, k, b, e, e + 1) + score(q, k, b, e + 1, e)) / 2 for e in range(n - 1)]
        mu = sum(m) / len(m)
        sd = (sum((v - mu) ** 2 for v in m) / len(m)) ** 0.5
        for layer, share in enumerate(SHARES):
            from statistics import NormalDist
            thr = NormalDist().inv_cdf(1 - share)
            want = [sig(scale * ((v - mu) / (sd + 1e-6) - thr)) for v in m]
            got = history[layer][0][b]
            torch.testing.assert_close(got[: n - 1], torch.tensor(want, dtype=torch.float64), rtol=1e-10, atol=1e-12)
            assert (got[n - 1:] == 0).all()  # padding edges stay unlinked


def test_budget_cannot_collapse_and_nests():
    """Whatever the scores, a layer merges about its share: all-equal scores give one value per
    layer (no NaN), a huge or a small score scale the same links (standardised), the layers nest."""
    z = hi.standardize_edges(((torch.full((1, 5), 3.0, dtype=torch.float64)),))
    assert torch.equal(z[0], torch.zeros(1, 5, dtype=torch.float64))
    g = torch.Generator().manual_seed(1)
    h, v = torch.randn(3, 8, 7, dtype=torch.float64, generator=g), torch.randn(3, 7, 8, dtype=torch.float64, generator=g)
    big = hi.standardize_edges((1e4 * h, 1e4 * v))
    small = hi.standardize_edges((0.1 * h, 0.1 * v))
    for a, b in zip(big, small):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    pooled = torch.cat([big[0].flatten(1), big[1].flatten(1)], 1)
    torch.testing.assert_close(pooled.mean(1), torch.zeros(3, dtype=torch.float64), atol=1e-9, rtol=0)
    torch.testing.assert_close(pooled.std(1, unbiased=False), torch.ones(3, dtype=torch.float64), atol=1e-6, rtol=0)
    sharp = [hi.budget_links(big, torch.tensor(50.0, dtype=torch.float64), s) for s in SHARES]
    for share, links in zip(SHARES, sharp):
        merged = torch.cat([a.flatten(1) for a in links], 1).gt(0.5).double().mean(1)
        assert (merged - share).abs().max() < 0.12  # 112 edges per sample, Gaussian scores
    for lo, hi_ in zip(sharp, sharp[1:]):
        assert all((b >= a).all() for a, b in zip(lo, hi_))


def test_budget_is_checked_in_the_config():
    cfg = load_config("HiCLIP-Tiny").to_dict()
    cfg["text_cfg"]["hierarchy"]["budget"] = [0.2, 0.4, 0.6, 0.8]
    with pytest.raises(ValueError, match=r"hierarchy.budget = \[0.2, 0.4, 0.6, 0.8\]; allowed: null unless .*distance"):
        ModelCfg.from_dict(cfg)
    cfg["text_cfg"]["hierarchy"]["link"] = "distance"
    for bad, allowed in (([0.5, 0.4, 0.6, 0.8], "increasing shares"), ([0.2, 1.0, 0.6, 0.8], "increasing"),
                         ([0.2, 0.4], "one share per hierarchy layer")):
        cfg["text_cfg"]["hierarchy"]["budget"] = bad
        with pytest.raises(ValueError, match=allowed):
            ModelCfg.from_dict(cfg)
    cfg["text_cfg"]["hierarchy"]["budget"] = [0.2, 0.4, 0.6, 0.8]
    assert ModelCfg.from_dict(cfg).text_cfg.hierarchy.budget == [0.2, 0.4, 0.6, 0.8]
