"""Fixtures for the explorer tests: two small HiCLIP-Tiny panels (different random weights, one
loaded from a checkpoint), and a world scene saved as a PNG."""
from __future__ import annotations

import pytest
import torch

import hiclip
from hiclip import checkpoint as ckpt
from hiclip.data.world import ShapesWorld
from hiclip.explore.views import load_panel


@pytest.fixture(scope="session")
def panels(tmp_path_factory):
    """[HiCLIP-Tiny with random weights, HiCLIP-Tiny from a checkpoint of other random weights]."""
    torch.manual_seed(0)
    first = load_panel("HiCLIP-Tiny")
    torch.manual_seed(1)
    model = hiclip.create_model("HiCLIP-Tiny")
    path = tmp_path_factory.mktemp("explore") / "other.pt"
    ckpt.Checkpoint("HiCLIP-Tiny", model.cfg.to_dict(), model.state_dict(), step=1).save(path)
    return [first, load_panel(str(path))]


@pytest.fixture(scope="session")
def scene_png(tmp_path_factory):
    """(a world test scene as a PNG file, its caption)."""
    sample = ShapesWorld(split="test", size=1, image_size=64, seed=3)[0]
    path = tmp_path_factory.mktemp("scene") / "scene.png"
    sample.image.save(path)
    return path, sample.caption
