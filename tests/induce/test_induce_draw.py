import numpy as np
import pytest
from PIL import Image

from hiclip.induce.draw import draw_groups, draw_tree, groups_gif, overlay
from hiclip.induce.groups import group_labels
from hiclip.induce.trees import induce_tree


@pytest.fixture
def labels() -> np.ndarray:
    rng = np.random.default_rng(0)
    h, v = np.sort(rng.random((3, 4, 3)), axis=0), np.sort(rng.random((3, 3, 4)), axis=0)
    return group_labels(h, v)  # (3, 4, 4)


@pytest.fixture
def image() -> Image.Image:
    return Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 40, 3), dtype=np.uint8))


def test_draw_tree_png_and_svg(tmp_path):
    tree = induce_tree(np.array([[0.1, 0.9, 0.3], [0.2, 0.95, 0.7]]), ["a</w>", "red</w>", "circle</w>", "moves</w>"])
    draw_tree(tree, tmp_path / "tree.png")
    with Image.open(tmp_path / "tree.png") as png:
        png.verify()
        assert png.format == "PNG" and png.size[0] > 50 and png.size[1] > 50
    draw_tree(tree, tmp_path / "tree.svg")
    svg = (tmp_path / "tree.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "</svg>" in svg


def test_overlay_colours_regions_and_draws_borders(image):
    lab = np.array([[0, 0], [0, 1]])
    out = np.asarray(overlay(image, lab, cell=10, alpha=1.0))
    assert out.shape == (20, 20, 3)
    assert (out[2, 2] == out[2, 12]).all() and (out[2, 2] == out[12, 2]).all()  # one region, one colour
    assert (out[15, 15] != out[2, 2]).any()  # the other region differs
    assert (out[15, 10] == 0).all() and (out[10, 15] == 0).all()  # borders around patch (1, 1)
    assert (out[5, 10] != 0).any()  # no border inside region 0


def test_draw_groups_png(tmp_path, image, labels):
    draw_groups(image, labels, tmp_path / "groups.png")
    draw_groups(image, labels, tmp_path / "one.png", layers=[1])
    with Image.open(tmp_path / "groups.png") as full, Image.open(tmp_path / "one.png") as one:
        assert full.format == one.format == "PNG"
        assert full.size[0] > 2 * one.size[0]  # three panels vs one
    with pytest.raises(ValueError, match="layers"):
        draw_groups(image, labels, tmp_path / "bad.png", layers=[3])


def test_groups_gif_has_one_frame_per_layer(tmp_path, image):
    labels = np.stack([np.arange(16).reshape(4, 4), np.zeros((4, 4), int), np.zeros((4, 4), int)])
    groups_gif(image, labels, tmp_path / "groups.gif")  # identical layers must still give their own frames
    with Image.open(tmp_path / "groups.gif") as gif:
        assert gif.format == "GIF" and gif.n_frames == 3 and gif.size == (256, 256)
