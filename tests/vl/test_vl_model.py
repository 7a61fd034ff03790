"""Heads: shapes, defaults, and cutting padding off the text changes no logit (float64)."""
import pytest
import torch

import hiclip
from hiclip.vl import HeadCfg, VLModel


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return hiclip.create_model("HiCLIP-Tiny").double().eval()


def test_defaults_follow_the_text_tower(encoder):
    model = VLModel(encoder, HeadCfg("fusion", 5))
    assert (model.head_cfg.width, model.head_cfg.layers, model.head_cfg.heads) == (128, 2, 4)
    assert len(model.head.fusion.layers) == 2
    groups = model.param_groups()
    assert {n for n, _ in groups["head"]} == {f"head.classifier.{k}" for k in
                                              ("0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias")}
    assert "head.type_embedding.weight" in {n for n, _ in groups["fusion"]}
    assert "encoder.logit_scale" not in {n for n, _ in groups["encoder"]}
    with pytest.raises(ValueError, match="head must be one of"):
        VLModel(encoder, HeadCfg("linear", 5))


@pytest.mark.parametrize("kind", ["fusion", "mlp"])
def test_logits_ignore_padding_length(encoder, kind):
    torch.manual_seed(1)
    model = VLModel(encoder, HeadCfg(kind, 7)).double().eval()
    tokens = hiclip.get_tokenizer("HiCLIP-Tiny")(["is there a red circle?", "what shape is the small object?"])
    images = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        logits = model(images, tokens)
        if kind == "mlp":
            full = model.head(encoder.encode_image(images), encoder.encode_text(tokens))
        else:  # the untrimmed computation: all 32 token states, padding masked
            _, img = encoder.encode_image(images, return_tokens=True)
            _, txt = encoder.encode_text(tokens, return_tokens=True)
            full = model.head(img.states, txt.states, txt.mask, tokens.argmax(-1))
    assert logits.shape == (2, 7)
    torch.testing.assert_close(logits, full, atol=1e-10, rtol=0)
