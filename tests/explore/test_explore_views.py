"""The explorer's logic (hiclip.explore.views) against direct model read-outs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from hiclip.cli import main
from hiclip.data.world import ShapesWorld
from hiclip.explore import views
from hiclip.induce.groups import group_labels
from hiclip.induce.run import caption_trees
from hiclip.induce.trees import Readout

CAPTION = "a red circle above a blue square"  # one word piece per word


def test_caption_view_matches_the_model(panels):
    panel = panels[0]
    tree, links, words = views.caption_view(panel, CAPTION, "aggregate", 0.5)
    (want,), _ = caption_trees(panel.model, panel.tokenizer, [CAPTION], readout=Readout("aggregate", 0.5))
    assert str(tree) == str(want) and words == CAPTION.split()
    with torch.no_grad():
        _, hier = panel.model.encode_text(panel.tokenizer([CAPTION]), return_hierarchy=True)
    n = len(words)
    np.testing.assert_allclose(links, hier.links[0, :, :n - 1].double().numpy())
    flat, _, _ = views.caption_view(panel, CAPTION, "topdown", 0.0)  # every link >= 0: merged everywhere
    assert str(flat) == "(" + CAPTION + ")"
    with pytest.raises(ValueError, match="nothing to parse"):
        views.caption_view(panel, "  ", "topdown", 0.5)


def test_links_figure_frames_the_links_at_or_above_threshold():
    links = np.array([[0.1, 0.7, 0.5], [0.9, 0.2, 0.6]])
    fig = views.links_figure(links, ["a", "b", "c", "d"], 0.5)
    ax = fig.axes[0]
    assert len(ax.patches) == 4  # 0.7, 0.5, 0.9, 0.6
    assert sorted(t.get_text() for t in ax.texts) == sorted(f"{v:.2f}" for v in links.ravel())
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a|b", "b|c", "c|d"]


def test_image_view_matches_group_labels(panels, scene_png):
    panel = panels[1]
    image = Image.open(scene_png[0])
    overlays, counts = views.image_view(panel, image, 0.4)
    with torch.no_grad():
        _, hier = panel.model.encode_image(panel.transform(image)[None], return_hierarchy=True)
    labels = group_labels(hier.h[0], hier.v[0], 0.4)
    assert counts == [len(np.unique(lab)) for lab in labels]
    rows, cols = panel.model.cfg.vision_cfg.grid
    assert len(overlays) == len(labels) and overlays[0].size[0] % cols == 0
    _, none_merged = views.image_view(panel, image, 1.0)  # links never exceed 1: every patch alone
    assert none_merged == [rows * cols] * len(labels)


def test_world_examples_and_panels(tmp_path, panels):
    examples = views.world_examples(tmp_path, n=3)
    world = ShapesWorld(split="val", size=3, image_size=64, seed=0)
    assert [c for _, c in examples] == [world[i].caption for i in range(3)]
    assert np.array_equal(np.asarray(Image.open(examples[1][0])), np.asarray(world[1].image))
    assert panels[0].random and panels[0].label == "HiCLIP-Tiny (random weights)" and not panels[1].random
    assert panels[1].label.startswith("HiCLIP-Tiny, step 1: ") and panels[1].label.endswith("/other.pt")
    with pytest.raises(ValueError, match="plain CLIP"):
        views.load_panel("CLIP-Tiny")


def test_demo_checkpoint_and_the_command_without_a_model(tmp_path, monkeypatch, capsys):
    with pytest.raises(FileNotFoundError, match="make demo"):
        views.demo_checkpoint(tmp_path / "demo_out")
    latest = tmp_path / "demo_out" / "runs" / "HiCLIP-Tiny-s0" / "checkpoints" / "latest.pt"
    latest.parent.mkdir(parents=True)
    latest.write_bytes(b"")
    assert views.demo_checkpoint(tmp_path / "demo_out") == latest
    monkeypatch.chdir(tmp_path / "demo_out")  # no demo_out/ here
    assert main(["explore"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "make demo" in err
