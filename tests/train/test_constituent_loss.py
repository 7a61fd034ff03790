"""The span–image constituent loss (docs/design.md §1.8) against loop references (float64)."""
import math

import pytest
import torch

from hiclip import hierarchy as hi
from hiclip.config import ModelCfg, load_config
from hiclip.model import HiCLIP
from hiclip.train.loss import contrastive_loss, span_image_loss


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


def test_span_image_loss_matches_loops():
    g = torch.Generator().manual_seed(1)
    B, S, E, L = 3, 4, 5, 2
    spans = torch.nn.functional.normalize(torch.randn(B, S, E, dtype=torch.float64, generator=g), dim=-1)
    images = torch.nn.functional.normalize(torch.randn(B, E, dtype=torch.float64, generator=g), dim=-1)
    w = torch.rand(B, L, S, dtype=torch.float64, generator=g)
    w[2] = 0  # a caption without spans adds 0
    scale = torch.tensor(7.0, dtype=torch.float64)
    total = 0.0
    for b in range(B):
        num = den = 0.0
        for s in range(S):
            logits = [scale.item() * float(spans[b, s] @ images[c]) for c in range(B)]
            ce = -logits[b] + math.log(sum(math.exp(x) for x in logits))
            ws = float(w[b, :, s].mean())
            num, den = num + ws * ce, den + ws
        total += num / den if den else 0.0
    assert span_image_loss(spans, w, images, scale).item() == pytest.approx(total / B, rel=1e-10)


def tiny(weight):
    cfg = load_config("HiCLIP-Tiny").to_dict() | {"constituent_loss": weight}
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
    spans = hi.span_index(30)
    for s in (0, 7, 100):
        i, j = spans[s].tolist()
        mean = states.states[0, 1 + i:2 + j].mean(0)
        want = torch.nn.functional.normalize(mean @ model.text_projection, dim=-1)
        torch.testing.assert_close(out["span_features"][0, s], want)
    assert (out["span_weights"][1][:, (spans[:, 1] >= 3)] == 0).all()  # beyond caption 1's 3 words
    assert (out["span_weights"][2] == 0).all()  # one word: no span
    assert "span_features" not in model.eval()(images, tokens)


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


@pytest.mark.parametrize("change, match", [
    ({"constituent_loss": -1.0}, "constituent_loss must be >= 0"),
    ({"constituent_loss": 1.0, "objective": "declip"}, "added to the clip objective"),
])
def test_constituent_loss_config_errors(change, match):
    with pytest.raises(ValueError, match=match):
        ModelCfg.from_dict(load_config("HiCLIP-Tiny").to_dict() | change)


def test_constituent_loss_needs_a_text_hierarchy():
    with pytest.raises(ValueError, match="needs a text hierarchy"):
        ModelCfg.from_dict(load_config("CLIP-Tiny").to_dict() | {"constituent_loss": 1.0})
