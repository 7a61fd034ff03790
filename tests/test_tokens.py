"""return_tokens: final token states of both towers, pooled outputs unchanged, padding masked."""
import pytest
import torch

import hiclip
from hiclip.config import load_config


@pytest.fixture(scope="module")
def tokens():
    return hiclip.get_tokenizer("HiCLIP-Tiny")(["a large red circle to the left of a small blue square",
                                                 "a green star", "two objects"])


@pytest.mark.parametrize("causal", [True, False])
def test_token_states_match_pooled_and_mask_padding(causal, tokens):
    """return_tokens: pooled outputs unchanged; the pooled token's state projected is the feature;
    the text mask marks start..end-of-text; padding does not change real tokens' states (float64)."""
    cfg = load_config("HiCLIP-Tiny")
    cfg.text_cfg.causal = causal
    torch.manual_seed(0)
    model = hiclip.create_model("HiCLIP-Tiny", config=cfg).eval().double()
    images = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        img, img_tok = model.encode_image(images, return_tokens=True)
        txt, hier, txt_tok = model.encode_text(tokens, return_hierarchy=True, return_tokens=True)
        assert torch.equal(img, model.encode_image(images)) and torch.equal(txt, model.encode_text(tokens))
        assert torch.equal(hier.links, model.encode_text(tokens, return_hierarchy=True)[1].links)
        normed, _ = model.encode_image(images, normalize=True, return_tokens=True)
    assert isinstance(img_tok, hiclip.TokenStates)
    assert img_tok.states.shape == (2, 65, 128) and img_tok.mask.all()
    # the pooled feature is the projection of the pooled final state (CLS here; configs that pool patches
    # pool the same states)
    pool = getattr(model.visual, "pool", lambda states: states[:, 0])
    torch.testing.assert_close(pool(img_tok.states) @ model.visual.proj, img)
    torch.testing.assert_close(normed, torch.nn.functional.normalize(img, dim=-1))
    eot = tokens.argmax(-1)
    assert txt_tok.states.shape == (3, 32, 128)
    expected = torch.stack([torch.arange(32) <= e for e in eot])  # explicit: start .. end-of-text
    assert torch.equal(txt_tok.mask, expected)
    pool_text = getattr(model, "_pool_text", lambda states, ids: states[torch.arange(3), ids.argmax(-1)])
    torch.testing.assert_close(pool_text(txt_tok.states, tokens) @ model.text_projection, txt)
    # the states come after ln_final: zero mean, unit variance over the width (before its affine, which is 1, 0)
    torch.testing.assert_close(txt_tok.states.mean(-1), torch.zeros(3, 32, dtype=torch.float64), atol=1e-9, rtol=0)
    noisy = tokens.clone()
    pad = ~expected
    noisy[pad] = torch.randint(1, 49000, (int(pad.sum()),))
    with torch.no_grad():
        _, noisy_tok = model.encode_text(noisy, return_tokens=True)
    torch.testing.assert_close(noisy_tok.states[expected], txt_tok.states[expected], atol=1e-10, rtol=0)
