"""hiclip.config: the DeCLIP objective in model configs, ``base`` inheritance, bad input."""
import json

import pytest

import hiclip
from hiclip.config import DeCLIPCfg, ModelCfg, load_config


def test_declip_models_are_their_base_towers_with_the_objective():
    assert {"HiDeCLIP-Tiny", "DeCLIP-Tiny", "HiDeCLIP-ViT-B-32", "DeCLIP-ViT-B-32"} <= set(hiclip.list_models())
    for declip, base in (("HiDeCLIP-Tiny", "HiCLIP-Tiny"), ("DeCLIP-Tiny", "CLIP-Tiny"),
                         ("HiDeCLIP-ViT-B-32", "HiCLIP-ViT-B-32"), ("DeCLIP-ViT-B-32", "CLIP-ViT-B-32")):
        a, b = load_config(declip).to_dict(), load_config(base).to_dict()
        assert a.pop("objective") == "declip" and b.pop("objective") == "clip"
        assert b.pop("declip") is None and a.pop("declip")["w_clip"] == 0.4
        assert a == b, declip
    assert load_config("HiDeCLIP-Tiny").declip == DeCLIPCfg(mlm_head="tied", queue_size=16384)
    assert load_config("HiDeCLIP-ViT-B-32").declip == DeCLIPCfg()  # DeCLIP's own settings


def test_base_merges_nested_keys_and_round_trips(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"base": "HiDeCLIP-Tiny", "text_cfg": {"causal": False},
                                "declip": {"w_mlm": 0.5}}))
    cfg = load_config(str(path))
    assert cfg.text_cfg.causal is False and cfg.text_cfg.width == 128 and cfg.text_cfg.hierarchy.enabled
    assert cfg.declip.w_mlm == 0.5 and cfg.declip.mlm_head == "tied"
    assert ModelCfg.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("change, message", [
    ({"base": "HiCLIP-Tiny", "declip": {"w_nn": 0.1}}, "declip settings given for objective 'clip'"),
    ({"base": "HiDeCLIP-Tiny", "declip": {"mlm_head": "huge"}}, "mlm_head must be one of"),
    ({"base": "HiDeCLIP-Tiny", "declip": {"queue": 3}}, "unknown keys"),
    ({"base": "HiCLIP-Tiny", "objective": "simclr"}, "objective must be one of"),
    ({"base": "nope"}, "unknown model 'nope'"),
    ({"base": "loop.json"}, "circular"),
])
def test_bad_configs_are_clear_errors(tmp_path, change, message):
    path = tmp_path / "loop.json"
    path.write_text(json.dumps(change if change.get("base") != "loop.json" else {"base": str(path)}))
    with pytest.raises(ValueError, match=message):
        load_config(str(path))


@pytest.mark.parametrize("change, message", [
    ({"vision_cfg": {"layers": 0}}, "vision_cfg.layers = 0; allowed: an integer >= 1"),
    ({"vision_cfg": {"width": -768}}, "vision_cfg.width = -768; allowed: an integer >= 1"),
    ({"text_cfg": {"mlp_ratio": -1}}, "text_cfg.mlp_ratio = -1; allowed: a number > 0"),
    ({"embed_dim": 0}, "embed_dim = 0; allowed: an integer >= 1"),
    ({"vision_cfg": {"hierarchy": None}}, "vision_cfg.hierarchy = null; allowed: an object ({...})"),
    ({"text_cfg": [1, 2]}, "text_cfg = [1, 2]; allowed: an object ({...})"),
    ({"embed_dim": "64"}, 'embed_dim = "64"; allowed: an integer'),
    ({"vision_cfg": {"layers": 2.5}}, "vision_cfg.layers = 2.5; allowed: an integer"),
    ({"text_cfg": {"causal": "yes"}}, 'text_cfg.causal = "yes"; allowed: true or false'),
    ({"vision_cfg": {"hierarchy": {"layers": "all"}}}, 'vision_cfg.hierarchy.layers = "all"; allowed: a list of '
                                                       'integers or null'),
    ({"text_cfg": {"heads": 3}}, "text_cfg.heads = 3; allowed: a divisor of text_cfg.width (512)"),
    ({"vision_cfg": {"patch_size": 30}}, "vision_cfg.patch_size = 30; allowed: a divisor of vision_cfg.image_size"),
    ({"vision_cfg": {"patch_size": 1}}, "vision_cfg.image_size = 224; allowed: at most 4096 patches"),
    ({"text_cfg": {"context_length": 20000}}, "text_cfg.context_length = 20000; allowed: 3 to 4096 tokens"),
    ({"text_cfg": {"context_length": 0}}, "text_cfg.context_length = 0; allowed: 3 to 4096 tokens"),
    ({"declip": {"queue_size": 0}}, "declip.queue_size = 0; allowed: an integer >= 1"),
    ([1, 2], "(top level) = [1, 2]; allowed: an object"),
])
def test_bad_values_name_the_key_the_value_and_the_allowed_range(change, message):
    """Checked before any tensor is made: a traceback from torch (or a 3 GB allocation) otherwise."""
    with pytest.raises(ValueError) as e:
        ModelCfg.from_dict(change if isinstance(change, list) else {"objective": "declip"} | change
                           if "declip" in change else change)
    assert str(e.value).startswith("model config: " + message)
