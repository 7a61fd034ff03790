"""The span–image constituent loss (docs/design.md §1.8), against images and against image groups,
checked against loop references (float64)."""
import math

import pytest
import torch

from hiclip import hierarchy as hi
from hiclip.config import ModelCfg, load_config
from hiclip.model import HiCLIP
from hiclip.train.loss import contrastive_loss, span_group_loss, span_image_loss


def loop_weight(a, inside, i, j):
    """C_ij (1 - a_{i-1,i}) (1 - a_{j,j+1}); an edge to a token outside is cut; 0 for a span outside."""
    if not (inside[i] and inside[j]):
        return 0.0
    w = math.prod(a[k] for k in range(i, j))
    if i > 0 and inside[i - 1]:
        w *= 1 - a[i - 1]
    if j + 1 < len(inside) and inside[j + 1]:
        w *= 1 - a[j]
    return w


def test_span_weights_match_loops():
    g = torch.Generator().manual_seed(0)
    links = torch.rand(2, 3, 6, dtype=torch.float64, generator=g) * 0.98 + 0.01  # (B, L, N-1), N = 7
    inside = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    spans = hi.span_index(7)
    assert spans.shape == (21, 2) and (spans[:, 0] < spans[:, 1]).all()
    got = hi.span_weights(links, inside, spans)
    for b in range(2):
        for layer in range(3):
            for s, (i, j) in enumerate(spans.tolist()):
                want = loop_weight(links[b, layer].tolist(), inside[b].tolist(), i, j)
                assert got[b, layer, s].item() == pytest.approx(want, rel=1e-10, abs=1e-300)


def test_a_cut_constituent_outweighs_a_span_across_a_boundary():
    """Links of "a red ball | rolls": strong inside (0.95), cut at the gap (0.05)."""
    a = torch.tensor([[[0.95, 0.95, 0.05]]], dtype=torch.float64)
    inside = torch.ones(1, 4, dtype=torch.bool)
    spans = hi.span_index(4)
    w = dict(zip(map(tuple, spans.tolist()), hi.span_weights(a, inside, spans)[0, 0].tolist()))
    assert w[(0, 2)] == max(w.values())
    assert w[(0, 2)] > 10 * w[(1, 3)]


def loop_span_loss(w, logit):
    """Per caption b: Σ_s w̄_s CE_s / Σ_s w̄_s (w̄: mean over layers; 0 without spans), mean over
    captions; ``logit(b, s, c)`` is span s of caption b's logit for image c."""
    B, _, S = w.shape
    total = 0.0
    for b in range(B):
        num = den = 0.0
        for s in range(S):
            logits = [logit(b, s, c) for c in range(B)]
            ce = -logits[b] + math.log(sum(math.exp(x) for x in logits))
            ws = float(w[b, :, s].mean())
            num, den = num + ws * ce, den + ws
        total += num / den if den else 0.0
    return total / B


def test_span_image_loss_matches_loops():
    g = torch.Generator().manual_seed(1)
    B, S, E, L = 3, 4, 5, 2
    spans = torch.nn.functional.normalize(torch.randn(B, S, E, dtype=torch.float64, generator=g), dim=-1)
    images = torch.nn.functional.normalize(torch.randn(B, E, dtype=torch.float64, generator=g), dim=-1)
    w = torch.rand(B, L, S, dtype=torch.float64, generator=g)
    w[2] = 0  # a caption without spans adds 0
    scale = torch.tensor(7.0, dtype=torch.float64)
    want = loop_span_loss(w, lambda b, s, c: scale.item() * float(spans[b, s] @ images[c]))
    assert span_image_loss(spans, w, images, scale).item() == pytest.approx(want, rel=1e-10)


def test_span_group_loss_matches_loops():
    g = torch.Generator().manual_seed(3)
    B, S, E, L, N = 3, 4, 5, 2, 6
    unit = lambda *shape: torch.nn.functional.normalize(torch.randn(*shape, dtype=torch.float64, generator=g), dim=-1)
    spans, groups = unit(B, S, E), unit(B, N, E)
    w = torch.rand(B, L, S, dtype=torch.float64, generator=g)
    w[1] = 0  # a caption without spans adds 0
    scale = torch.tensor(5.0, dtype=torch.float64)
    want = loop_span_loss(w, lambda b, s, c: scale.item() * max(float(spans[b, s] @ groups[c, p]) for p in range(N)))
    assert span_group_loss(spans, w, groups, scale).item() == pytest.approx(want, rel=1e-10)


def test_one_group_per_image_is_the_image_loss():
    """Every group of an image equal to its pooled feature: the groups loss is the image loss."""
    g = torch.Generator().manual_seed(4)
    B, S, E, L, N = 4, 6, 8, 3, 5
    spans = torch.nn.functional.normalize(torch.randn(B, S, E, dtype=torch.float64, generator=g), dim=-1)
    images = torch.nn.functional.normalize(torch.randn(B, E, dtype=torch.float64, generator=g), dim=-1)
    w = torch.rand(B, L, S, dtype=torch.float64, generator=g)
    groups = images[:, None, :].expand(B, N, E)
    scale = torch.tensor(9.0, dtype=torch.float64)
    assert span_group_loss(spans, w, groups, scale).item() == pytest.approx(
        span_image_loss(spans, w, images, scale).item(), rel=1e-12)


def test_group_means_match_loops():
    g = torch.Generator().manual_seed(5)
    prior = torch.rand(2, 4, 4, dtype=torch.float64, generator=g)
    x = torch.randn(2, 4, 3, dtype=torch.float64, generator=g)
    got = hi.group_means(prior, x)
    for b in range(2):
        for p in range(4):
            c = prior[b, p]
            want = sum(c[q] * x[b, q] for q in range(4)) / c.sum()
            torch.testing.assert_close(got[b, p], want, rtol=1e-12, atol=1e-12)


def tiny(weight, **extra):
    cfg = load_config("HiCLIP-Tiny").to_dict() | {"constituent_loss": weight} | extra
    torch.manual_seed(0)
    return HiCLIP(ModelCfg.from_dict(cfg)).double()


def batch():
    images = torch.randn(3, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    tokens = torch.zeros(3, 32, dtype=torch.long)
    for b, n in enumerate((5, 3, 1)):
        tokens[b, 0], tokens[b, 1:1 + n], tokens[b, 1 + n] = 49406, torch.arange(400, 400 + n), 49407
    return images, tokens


def test_model_span_features_are_projected_span_means():
    model = tiny(0.5).train()
    images, tokens = batch()
    out = model(images, tokens)
    _, hier, states = model.encode_text(tokens, return_hierarchy=True, return_tokens=True)
    spans = hi.span_index(5)  # the batch's longest caption has 5 words: no span reaches beyond
    assert out["span_features"].shape[1] == len(spans) == 10
    for s in (0, 7, 9):
        i, j = spans[s].tolist()
        mean = states.states[0, 1 + i:2 + j].mean(0)
        want = torch.nn.functional.normalize(mean @ model.text_projection, dim=-1)
        torch.testing.assert_close(out["span_features"][0, s], want)
    assert (out["span_weights"][1][:, (spans[:, 1] >= 3)] == 0).all()  # beyond caption 1's 3 words
    assert (out["span_weights"][2] == 0).all()  # one word: no span
    assert "span_features" not in model.eval()(images, tokens)


def test_max_span_keeps_the_short_spans():
    model = tiny(0.5, constituent_max_span=3).train()
    images, tokens = batch()
    full_out, short_out = tiny(0.5).train()(images, tokens), model(images, tokens)
    spans = hi.span_index(5)
    keep = (spans[:, 1] - spans[:, 0]) < 3
    torch.testing.assert_close(short_out["span_features"], full_out["span_features"][:, keep])
    torch.testing.assert_close(short_out["span_weights"], full_out["span_weights"][..., keep])


def test_model_group_features_are_prior_weighted_patch_means():
    model = tiny(0.5, constituent_target="groups").train()
    images, tokens = batch()
    out = model(images, tokens)
    _, hier, states = model.encode_image(images, return_hierarchy=True, return_tokens=True)
    prior = hi.grid_prior(hier.h, hier.v)  # (B, L, 64, 64)
    assert out["group_features"].shape == (3, 64, 128)
    for b, p in ((0, 0), (1, 17), (2, 63)):
        c = sum(prior[b, layer, p] for layer in range(len(hier.layers))) / len(hier.layers)
        mean = (c[:, None] * states.states[b, 1:]).sum(0) / c.sum()
        want = torch.nn.functional.normalize(mean @ model.visual.proj, dim=-1)
        torch.testing.assert_close(out["group_features"][b, p], want)
    assert "group_features" not in model.eval()(images, tokens)


def test_training_step_adds_the_weighted_constituent_loss_and_reaches_the_links():
    from hiclip.train.distributed import DistInfo
    from hiclip.train.step import StepOptions, accumulate_gradients
    images, tokens = batch()
    grads, losses = {}, {}
    for weight in (0.0, 0.5):
        model = tiny(weight).train()
        losses[weight] = accumulate_gradients(model, [(images, tokens)], StepOptions(DistInfo())).item()
        grads[weight] = model.transformer.resblocks[0].attn.link_q.weight.grad.clone()
        if weight:
            out = model(images, tokens)
            want = contrastive_loss(out["image_features"], out["text_features"], out["logit_scale"]) + \
                weight * span_image_loss(out["span_features"], out["span_weights"], out["image_features"],
                                         out["logit_scale"])
            assert losses[weight] == pytest.approx(want.item(), rel=1e-10)
    assert losses[0.5] > losses[0.0]
    assert not torch.allclose(grads[0.5], grads[0.0])


def test_the_groups_target_trains_the_image_links():
    from hiclip.train.distributed import DistInfo
    from hiclip.train.step import StepOptions, accumulate_gradients
    images, tokens = batch()
    grads = {}
    for target in ("image", "groups"):
        model = tiny(0.5, constituent_target=target).train()
        loss = accumulate_gradients(model, [(images, tokens)], StepOptions(DistInfo())).item()
        grads[target] = model.visual.transformer.resblocks[0].attn.link_q.weight.grad.clone()
        if target == "groups":
            out = model(images, tokens)
            want = contrastive_loss(out["image_features"], out["text_features"], out["logit_scale"]) + \
                0.5 * span_group_loss(out["span_features"], out["span_weights"], out["group_features"],
                                      out["logit_scale"])
            assert loss == pytest.approx(want.item(), rel=1e-10)
    assert not torch.allclose(grads["groups"], grads["image"])


@pytest.mark.parametrize("change, match", [
    ({"constituent_loss": -1.0}, "constituent_loss must be >= 0"),
    ({"constituent_loss": 1.0, "objective": "declip"}, "added to the clip objective"),
    ({"constituent_target": "patches"}, "constituent_target"),
    ({"constituent_max_span": 1}, "constituent_max_span"),
    ({"constituent_max_span": 2.5}, "constituent_max_span"),
    ({"constituent_loss": 1.0, "constituent_target": "groups", "vision_cfg": {"hierarchy": {"enabled": False}}},
     "image tower has no hierarchy"),
])
def test_constituent_loss_config_errors(change, match):
    with pytest.raises(ValueError, match=match):
        ModelCfg.from_dict(load_config("HiCLIP-Tiny").to_dict() | change)


def test_constituent_loss_needs_a_text_hierarchy():
    with pytest.raises(ValueError, match="needs a text hierarchy"):
        ModelCfg.from_dict(load_config("CLIP-Tiny").to_dict() | {"constituent_loss": 1.0})
