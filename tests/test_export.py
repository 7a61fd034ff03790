"""Sharing models offline: `hiclip export --dir`, `local-dir:` names, save_pretrained / from_pretrained."""
from __future__ import annotations

import json

import torch

import hiclip
from hiclip import checkpoint as ckpt
from hiclip.cli import main
from hiclip.model import HiCLIP

CAPTIONS = ["a red circle above a blue square", "two small green triangles"]


def _embeddings(model, transform, tokenizer):
    """(image features (2, E), text features (2, E), text links) of fixed inputs, in eval mode."""
    gen = torch.Generator().manual_seed(3)
    images = torch.rand(2, 3, model.cfg.vision_cfg.image_size, model.cfg.vision_cfg.image_size, generator=gen)
    with torch.no_grad():
        image = model.eval().encode_image(images)
        text, hier = model.encode_text(tokenizer(CAPTIONS), return_hierarchy=True)
    return image, text, hier.links


def _checkpoint(tmp_path, seed=0):
    torch.manual_seed(seed)
    model = hiclip.create_model("HiCLIP-Tiny")
    path = tmp_path / "c.pt"
    ckpt.Checkpoint("HiCLIP-Tiny", model.cfg.to_dict(), model.state_dict(), step=7).save(path)
    return model, path


def test_export_dir_round_trip(tmp_path, offline, capsys):
    model, path = _checkpoint(tmp_path)
    out = tmp_path / "shared"
    assert main(["export", "--checkpoint", str(path), "--dir", str(out)]) == 0
    assert f"--model local-dir:{out}" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    meta = json.loads((out / "config.json").read_text())
    assert meta["model"] == "HiCLIP-Tiny" and meta["step"] == 7 and meta["cfg"] == model.cfg.to_dict()
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: hiclip\nlicense: mit\n") and "# HiCLIP-Tiny (step 7)" in card
    want = _embeddings(model, None, hiclip.get_tokenizer("HiCLIP-Tiny"))
    name = f"local-dir:{out}"
    loaded, _, transform = hiclip.create_model_and_transforms(name)
    assert hiclip.get_tokenizer(name).context_length == model.cfg.text_cfg.context_length
    for a, b in zip(want, _embeddings(loaded, transform, hiclip.get_tokenizer(name))):
        assert torch.equal(a, b)
    hub = HiCLIP.from_pretrained(out)  # huggingface_hub's mixin, a local folder, offline
    assert hub.cfg == model.cfg
    for a, b in zip(want, _embeddings(hub, None, hiclip.get_tokenizer("HiCLIP-Tiny"))):
        assert torch.equal(a, b)


def test_save_pretrained_from_pretrained(tmp_path, offline):
    torch.manual_seed(1)
    model = hiclip.create_model("CLIP-Tiny")
    model.save_pretrained(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text()) == {"cfg": model.cfg.to_dict()}
    again = HiCLIP.from_pretrained(tmp_path / "m")
    assert again.cfg == model.cfg and not again.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k
    # the factory reads the same folder as a local-dir: name
    same = hiclip.create_model(f"local-dir:{tmp_path / 'm'}")
    assert all(torch.equal(v, same.state_dict()[k]) for k, v in model.state_dict().items())


def test_local_dir_on_the_command_line(tmp_path, offline, capsys):
    _, path = _checkpoint(tmp_path)
    out = tmp_path / "shared"
    assert main(["export", str(path), "--dir", str(out)]) == 0
    capsys.readouterr()
    assert main(["parse", "--model", str(path), CAPTIONS[0]]) == 0
    from_checkpoint = capsys.readouterr().out
    assert main(["parse", "--model", f"local-dir:{out}", CAPTIONS[0]]) == 0
    assert capsys.readouterr().out == from_checkpoint


def test_export_and_local_dir_errors(tmp_path, offline, capsys):
    assert main(["parse", "--model", f"local-dir:{tmp_path / 'nowhere'}", "a cat"]) == 2
    assert "no config.json" in capsys.readouterr().err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text('{"not": "a config"}')
    (tmp_path / "bad" / "model.safetensors").write_bytes(b"")
    assert main(["parse", "--model", f"local-dir:{tmp_path / 'bad'}", "a cat"]) == 2
    assert "not a hiclip model config" in capsys.readouterr().err
    torch.save(hiclip.create_model("CLIP-Tiny").state_dict(), tmp_path / "bare.pt")
    assert main(["export", str(tmp_path / "bare.pt"), "--dir", str(tmp_path / "x")]) == 2
    assert "does not name its model" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "bare.pt"), "--checkpoint", str(tmp_path / "bare.pt"),
                 "--dir", str(tmp_path / "x")]) == 2
    assert "checkpoint once" in capsys.readouterr().err
