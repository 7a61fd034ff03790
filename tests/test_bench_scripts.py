"""The benchmark scripts build the models they name (a broken import there fails no other test)."""
import importlib.util
from pathlib import Path

import pytest

from hiclip.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("spec, renormalize, kernel", [
    ("hiclip:HiCLIP-Tiny", False, "auto"),
    ("hiclip:HiCLIP-Tiny,renormalize=true,kernel=materialized", True, "materialized"),
])
def test_bench_model_builds_hiclip_specs_with_their_options(spec, renormalize, kernel):
    model = _load("bench_model")._build(spec)
    assert model.cfg.vision_cfg.layers == load_config("HiCLIP-Tiny").vision_cfg.layers
    for tower in (model.cfg.vision_cfg, model.cfg.text_cfg):
        assert tower.hierarchy.renormalize is renormalize and tower.hierarchy.kernel == kernel
