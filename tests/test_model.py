"""hiclip.model / towers: hierarchy read-out, padding invariance, switches, bad input."""
import dataclasses

import pytest
import torch

import hiclip
from hiclip.attention import GridStructure
from hiclip.config import load_config

CAPTIONS = ["a large red circle to the left of a small blue square", "a green star", "two objects"]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return hiclip.create_model("HiCLIP-Tiny").eval()


@pytest.fixture(scope="module")
def tokens():
    return hiclip.get_tokenizer("HiCLIP-Tiny")(CAPTIONS)


def test_forward_dict_and_normalised_features(tiny, tokens):
    images = torch.randn(3, 3, 64, 64)
    out = tiny(images, tokens)
    assert set(out) == {"image_features", "text_features", "logit_scale"}
    assert out["image_features"].shape == out["text_features"].shape == (3, 128)
    torch.testing.assert_close(out["image_features"].norm(dim=-1), torch.ones(3))
    assert out["logit_scale"].item() == pytest.approx(1 / 0.07, rel=1e-5)
    torch.testing.assert_close(out["text_features"], tiny.encode_text(tokens, normalize=True))


def test_hierarchy_readout_shapes_and_monotone_links(tiny, tokens):
    with torch.no_grad():
        _, img = tiny.encode_image(torch.randn(2, 3, 64, 64), return_hierarchy=True)
        _, txt = tiny.encode_text(tokens, return_hierarchy=True)
    assert img.h.shape == (2, 4, 8, 7) and img.v.shape == (2, 4, 7, 8) and img.layers == [0, 1, 2, 3]
    assert txt.links.shape == (3, 4, 29) and txt.mask.shape == (3, 29)
    n_content = [len(tiny_tok) for tiny_tok in map(hiclip.get_tokenizer().encode, CAPTIONS)]
    assert txt.lengths.tolist() == n_content
    assert txt.mask.sum(-1).tolist() == [n - 1 for n in n_content]
    for t in (img.h, img.v, txt.links):
        assert torch.all(t[:, 1:] >= t[:, :-1]) and t.max() <= 1
    assert torch.all(txt.links[~txt.mask.unsqueeze(1).expand_as(txt.links)] == 0)
    assert txt.links[txt.mask.unsqueeze(1).expand_as(txt.links)].min() > 0


@pytest.mark.parametrize("causal", [True, False])
def test_padding_changes_no_output_of_real_tokens(causal, tokens):
    cfg = load_config("HiCLIP-Tiny")
    cfg.text_cfg.causal = causal
    torch.manual_seed(0)
    model = hiclip.create_model("HiCLIP-Tiny", config=cfg).eval().double()  # exactness in float64
    eot = tokens.argmax(-1)
    noisy = tokens.clone()
    pad = torch.arange(tokens.shape[1]) > eot[:, None]
    noisy[pad] = torch.randint(1, 49000, (int(pad.sum()),))
    with torch.no_grad():
        f, h = model.encode_text(tokens, return_hierarchy=True)
        fn, hn = model.encode_text(noisy, return_hierarchy=True)
        short = tokens[:1, : int(eot[0]) + 1]  # no padding at all
        fs = model.encode_text(short)
    torch.testing.assert_close(f, fn, atol=1e-10, rtol=1e-9)
    torch.testing.assert_close(h.links, hn.links, atol=1e-10, rtol=1e-9)
    torch.testing.assert_close(fs, f[:1], atol=1e-10, rtol=1e-9)


def test_hierarchy_switched_off_per_layer_and_tower():
    cfg = load_config("HiCLIP-Tiny")
    cfg.vision_cfg.hierarchy.layers = [1, 3]
    cfg.text_cfg.hierarchy.enabled = False
    model = hiclip.create_model("HiCLIP-Tiny", config=cfg).eval()
    with torch.no_grad():
        _, img = model.encode_image(torch.randn(1, 3, 64, 64), return_hierarchy=True)
    assert img.layers == [1, 3] and img.h.shape[1] == 2
    names = [n for n, _ in model.named_parameters() if "link_" in n]
    assert {n.split(".")[3] for n in names} == {"1", "3"} and all(n.startswith("visual.") for n in names)
    with pytest.raises(ValueError, match="no hierarchy-aware attention"):
        model.encode_text(hiclip.get_tokenizer("HiCLIP-Tiny")(["a"]), return_hierarchy=True)


def test_clip_config_equals_hiclip_with_hierarchy_off():
    on, off = load_config("HiCLIP-Tiny"), load_config("CLIP-Tiny")
    on.vision_cfg.hierarchy.enabled = on.text_cfg.hierarchy.enabled = False
    on.vision_cfg.pool = "tok"  # HiCLIP pools the patches (docs/design.md §1.6); otherwise the same model
    assert dataclasses.asdict(on) == dataclasses.asdict(off)
    clip = hiclip.create_model("CLIP-Tiny")
    assert not any("link_" in n for n in clip.state_dict())
    with pytest.raises(ValueError, match="no hierarchy-aware attention"):
        clip.encode_image(torch.randn(1, 3, 64, 64), return_hierarchy=True)


def test_gradients_reach_hierarchy_parameters(tiny, tokens):
    model = hiclip.create_model("HiCLIP-Tiny").train()
    out = model(torch.randn(3, 3, 64, 64), tokens)
    loss = (out["image_features"] @ out["text_features"].T * out["logit_scale"]).logsumexp(-1).mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model.visual.transformer.resblocks[0].attn.link_q.weight.grad.abs().sum() > 0
    assert model.transformer.resblocks[0].attn.link_k.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("shape,match", [((2, 3, 32, 32), r"\(B, 3, 64, 64\), got \(2, 3, 32, 32\)"),
                                         ((2, 1, 64, 64), r"got \(2, 1, 64, 64\)"),
                                         ((3, 64, 64), r"got \(3, 64, 64\)")])
def test_bad_image_shape(tiny, shape, match):
    with pytest.raises(ValueError, match=match):
        tiny.encode_image(torch.randn(*shape))


def test_bad_tokens(tiny, tokens):
    bad = tokens.clone()
    bad[0, 1] = 60000
    with pytest.raises(ValueError, match=r"\[0, 49408\), got range \[0, 60000\]"):
        tiny.encode_text(bad)
    with pytest.raises(ValueError, match="at most 32 tokens"):
        tiny.encode_text(torch.zeros(1, 40, dtype=torch.long))
    with pytest.raises(ValueError, match="integer dtype"):
        tiny.encode_text(tokens.float())


@pytest.mark.parametrize("name", ["HiCLIP-Tiny", "HiCLIP-ViT-B-32", "HiCLIP-ViT-B-16"])
def test_contrastive_loss_reaches_every_hierarchy_layer(name):
    """The pooled features depend on every layer's links (docs/design.md §1.6): one CLIP loss
    gives a non-zero gradient to the link projections of every hierarchy layer of both towers."""
    torch.manual_seed(0)
    model = hiclip.create_model(name)
    size = model.cfg.vision_cfg.image_size
    tokens = hiclip.get_tokenizer(name)(CAPTIONS[:2])
    out = model(torch.randn(2, 3, size, size), tokens)
    logits = out["logit_scale"] * out["image_features"] @ out["text_features"].T
    target = torch.arange(2)
    loss = (torch.nn.functional.cross_entropy(logits, target) + torch.nn.functional.cross_entropy(logits.T, target)) / 2
    loss.backward()
    for tower, blocks in (("image", model.visual.transformer.resblocks), ("text", model.transformer.resblocks)):
        for i, block in enumerate(blocks):
            for proj in (block.attn.link_q, block.attn.link_k):
                assert proj.weight.grad is not None and proj.weight.grad.abs().sum() > 0, f"{tower} layer {i}"


def test_pool_rules_against_token_states():
    """``tok`` is the CLS state, ``avg`` the patch mean, ``tok_avg`` their mean (all after ln_post)."""
    cfg = load_config("HiCLIP-Tiny")
    images = torch.randn(2, 3, 64, 64)
    pooled = {}
    for pool in ("tok", "avg", "tok_avg"):
        cfg.vision_cfg.pool = pool
        torch.manual_seed(0)
        model = hiclip.create_model("HiCLIP-Tiny", config=cfg).eval().double()
        with torch.no_grad():
            pooled[pool] = model.encode_image(images.double())
            x = model.visual.conv1(images.double()).flatten(2).transpose(1, 2)
            x = torch.cat([model.visual.class_embedding.expand(2, 1, -1), x], 1) + model.visual.positional_embedding
            x, _ = model.visual.transformer(model.visual.ln_pre(x), structure=GridStructure(model.visual.grid, offset=1))
            states = model.visual.ln_post(x)
        want = {"tok": states[:, 0], "avg": states[:, 1:].mean(1), "tok_avg": (states[:, 0] + states[:, 1:].mean(1)) / 2}
        torch.testing.assert_close(pooled[pool], want[pool] @ model.visual.proj)
    with pytest.raises(ValueError, match="pool must be one of"):
        dataclasses.replace(cfg.vision_cfg, pool="max")


def test_text_avg_pool_is_the_mean_over_start_to_end():
    cfg = load_config("HiCLIP-Tiny")
    cfg.text_cfg.pool, cfg.text_cfg.specials_in_chain = "avg", False
    torch.manual_seed(0)
    model = hiclip.create_model("HiCLIP-Tiny", config=cfg).eval().double()
    tokens = hiclip.get_tokenizer("HiCLIP-Tiny")(CAPTIONS)
    with torch.no_grad():
        got = model.encode_text(tokens)
        x = model.token_embedding(tokens) + model.positional_embedding[: tokens.shape[1]]
        from hiclip.attention import ChainStructure
        from hiclip.towers import content_mask
        x, _ = model.transformer(x, model._text_mask(tokens), ChainStructure(content_mask(tokens)))
        x = model.ln_final(x)
    for b, eot in enumerate(tokens.argmax(-1).tolist()):  # explicit mean over positions 0..eot
        want = sum(x[b, i] for i in range(eot + 1)) / (eot + 1)
        torch.testing.assert_close(got[b], want @ model.text_projection)
    with pytest.raises(ValueError, match="text_cfg.pool must be one of"):
        dataclasses.replace(cfg.text_cfg, pool="max")


def test_set_grad_checkpointing_reaches_every_transformer_and_turns_off():
    model = hiclip.create_model("HiCLIP-Tiny")
    flags = lambda: [m.grad_checkpointing for m in model.modules() if hasattr(m, "grad_checkpointing")]  # noqa: E731
    assert flags() == [False, False]  # the image and the text transformer
    model.set_grad_checkpointing()
    assert flags() == [True, True]
    model.set_grad_checkpointing(False)
    assert flags() == [False, False]
