"""The model contract of eval and induce (hiclip.protocols), and the one reading of the hierarchy switch."""
from __future__ import annotations

import inspect

import pytest

import hiclip
from hiclip.config import HierarchyCfg, load_config
from hiclip.protocols import HierarchyModel, ImageTextModel, Tokenizer


def _params(fn) -> dict[str, object]:
    return {n: p.default for n, p in inspect.signature(fn).parameters.items() if n != "self"}


@pytest.mark.parametrize("protocol", [ImageTextModel, HierarchyModel])
def test_hiclip_satisfies_the_protocols_with_their_signatures(protocol):
    model = hiclip.create_model("CLIP-Tiny")
    assert isinstance(model, protocol)
    for name in ("encode_image", "encode_text"):
        wanted, got = _params(getattr(protocol, name)), _params(getattr(model, name))
        assert wanted.items() <= got.items(), f"{name}: {wanted} not within {got}"
    assert isinstance(hiclip.get_tokenizer("CLIP-Tiny"), Tokenizer)


def test_an_encoder_without_the_hierarchy_parts_is_only_an_image_text_model():
    class Bare:
        def encode_image(self, images):
            return images

        def encode_text(self, tokens):
            return tokens

    assert isinstance(Bare(), ImageTextModel) and not isinstance(Bare(), HierarchyModel)


@pytest.mark.parametrize("hierarchy, expected", [({"enabled": False}, []), ({"enabled": True}, [0, 1, 2, 3]),
                                                 ({"enabled": True, "layers": [1, 3]}, [1, 3]),
                                                 ({"enabled": False, "layers": [1, 3]}, [])])
def test_the_config_is_the_one_source_of_the_hierarchy_layers(hierarchy, expected):
    cfg = load_config("HiCLIP-Tiny")
    assert cfg.vision_cfg.layers == 4
    cfg.vision_cfg.hierarchy = HierarchyCfg(**hierarchy)
    model = hiclip.create_model("HiCLIP-Tiny", config=cfg)
    assert cfg.vision_cfg.hierarchy_layers == model.visual.transformer.hierarchy_layers == expected
    assert [i for i, b in enumerate(model.visual.transformer.resblocks) if b.attn.hierarchical] == expected
    assert cfg.vision_cfg.has_hierarchy == bool(expected) and model.has_hierarchy  # the text tower has it


def test_out_of_range_hierarchy_layers_are_a_config_error():
    cfg = load_config("HiCLIP-Tiny")
    cfg.text_cfg.hierarchy.layers = [0, 9]
    with pytest.raises(ValueError, match=r"hierarchy.layers \[0, 9\] out of range for 4 layers"):
        cfg.text_cfg.has_hierarchy
