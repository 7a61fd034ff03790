"""hiclip.factory: open_clip parity, local weights, tokenizer, transforms, bad input."""
import logging

import open_clip
import pytest
import torch
from PIL import Image

import hiclip


@pytest.fixture(scope="module")
def openclip_b32(tmp_path_factory):
    torch.manual_seed(0)
    ref = open_clip.create_model("ViT-B-32").eval()
    path = tmp_path_factory.mktemp("w") / "vitb32.pt"
    torch.save(ref.state_dict(), path)
    return ref, path


def test_list_models():
    assert {"HiCLIP-ViT-B-32", "HiCLIP-ViT-B-16", "CLIP-ViT-B-32", "CLIP-ViT-B-16",
            "HiCLIP-Tiny", "CLIP-Tiny"} <= set(hiclip.list_models())


def test_parity_with_open_clip_vit_b32(openclip_b32):
    ref, path = openclip_b32
    model = hiclip.create_model("CLIP-ViT-B-32", pretrained=path).eval()
    assert {k: v.shape for k, v in model.state_dict().items()} == \
        {k: v.shape for k, v in ref.state_dict().items()}
    g = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, 224, 224, generator=g)
    tokens = hiclip.get_tokenizer("CLIP-ViT-B-32")(["a small red circle above a blue square", "a photo"])
    with torch.no_grad():
        assert (model.encode_image(images) - ref.encode_image(images)).abs().max() <= 1e-5
        assert (model.encode_text(tokens) - ref.encode_text(tokens)).abs().max() <= 1e-5
        torch.testing.assert_close(model.logit_scale, ref.logit_scale)


def test_hiclip_loads_clip_weights_and_logs_new_keys(openclip_b32, caplog):
    ref, path = openclip_b32
    with caplog.at_level(logging.INFO, logger="hiclip.factory"):
        model = hiclip.create_model("HiCLIP-ViT-B-32", pretrained=path)
    assert "48 hierarchy parameters newly initialised" in caplog.text
    assert "visual.transformer.resblocks.0.attn.link_q.weight" in caplog.text
    torch.testing.assert_close(model.visual.conv1.weight, ref.visual.conv1.weight)
    torch.testing.assert_close(model.token_embedding.weight, ref.token_embedding.weight)


def test_training_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = hiclip.create_model("HiCLIP-Tiny")
    path = tmp_path / "ckpt.pt"
    torch.save({"model": "HiCLIP-Tiny", "step": 3,
                "state_dict": {"module." + k: v for k, v in model.state_dict().items()}}, path)
    again = hiclip.create_model("HiCLIP-Tiny", pretrained=path)
    for (k, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k
    with pytest.raises(ValueError, match="checkpoint of model 'HiCLIP-Tiny', not 'CLIP-Tiny'"):
        hiclip.create_model("CLIP-Tiny", pretrained=path)


def test_bad_pretrained_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        hiclip.create_model("CLIP-Tiny", pretrained=tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ValueError, match="is not a torch checkpoint"):
        hiclip.create_model("CLIP-Tiny", pretrained=junk)
    notsd = tmp_path / "list.pt"
    torch.save([1, 2, 3], notsd)
    with pytest.raises(ValueError, match="does not hold a state dict"):
        hiclip.create_model("CLIP-Tiny", pretrained=notsd)
    other = tmp_path / "hiclip.pt"
    torch.save(hiclip.create_model("HiCLIP-Tiny").state_dict(), other)
    with pytest.raises(ValueError, match=r"unexpected keys: visual\.transformer\.resblocks\.0\.attn\.link_q"):
        hiclip.create_model("CLIP-Tiny", pretrained=other)
    b32 = tmp_path / "b32.pt"
    torch.save(hiclip.create_model("CLIP-Tiny").state_dict() | {"extra.weight": torch.zeros(1)}, b32)
    with pytest.raises(ValueError, match="unexpected keys: extra.weight"):
        hiclip.create_model("CLIP-Tiny", pretrained=b32)
    small = {k: v for k, v in hiclip.create_model("CLIP-Tiny").state_dict().items() if k != "ln_final.bias"}
    torch.save(small, b32)
    with pytest.raises(ValueError, match="missing keys: ln_final.bias"):
        hiclip.create_model("CLIP-Tiny", pretrained=b32)


def test_other_architecture_names_shapes(tmp_path, openclip_b32):
    _, path = openclip_b32
    with pytest.raises(ValueError, match=r"shape mismatches: .*expected \(128, 3, 8, 8\), got \(768, 3, 32, 32\)"):
        hiclip.create_model("CLIP-Tiny", pretrained=path)


def test_unknown_model():
    with pytest.raises(ValueError, match=r"unknown model 'ViT-Q-99'; expected one of \["):
        hiclip.create_model("ViT-Q-99")


def test_tokenizer_truncates_and_matches_open_clip():
    tok = hiclip.get_tokenizer("HiCLIP-Tiny")
    long = " ".join(["red circle"] * 40)
    out = tok(["a blue square", long])
    assert out.shape == (2, 32) and out.dtype == torch.long
    assert out[1, -1].item() == 49407  # end-of-text kept last after truncation
    torch.testing.assert_close(out, open_clip.tokenize(["a blue square", long], context_length=32))


def test_transforms_produce_model_input():
    model, train_tf, eval_tf = hiclip.create_model_and_transforms("CLIP-Tiny")
    img = Image.new("RGB", (100, 80), (255, 0, 0))
    for tf in (train_tf, eval_tf):
        x = tf(img)
        assert x.shape == (3, 64, 64)
    with torch.no_grad():
        assert model.encode_image(eval_tf(img)[None]).shape == (1, 128)
