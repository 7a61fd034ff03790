"""Dataset loaders and bad-input handling; zero-shot / retrieval on hand-made image files."""
from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import DataLoader

from hiclip.eval import retrieval, zeroshot
from hiclip.eval.datasets import (SkipBadImages, collate_skip_none, csv_captions, image_folder,
                                  karpathy_json, read_templates)


def _loader(dataset, batch_size=2) -> DataLoader:
    return DataLoader(SkipBadImages(dataset), batch_size=batch_size, collate_fn=collate_skip_none)


@pytest.fixture
def colour_folder(tmp_path, colours, save_solid):
    """2 red, 2 green, 2 blue solid images; one green image is saved as blue (a mistake),
    and one red file is corrupt."""
    root = tmp_path / "colours"
    for name in colours:
        for i in range(2):
            save_solid(root / name / f"{i}.png", colours[name])
    save_solid(root / "green" / "1.png", colours["blue"])
    (root / "red" / "broken.png").write_bytes(b"not a png")
    return root


def test_zeroshot_hand_case_with_skipped_image(colour_folder, colour_model, to_tensor):
    dataset = image_folder(colour_folder, to_tensor)
    assert dataset.classes == ["blue", "green", "red"]
    m = zeroshot.evaluate(colour_model, _loader(dataset), colour_model.tokenize, dataset.classes,
                          ["a {c} thing"], "cpu")
    # 6 readable images, 5 classified correctly; class recalls: blue 2/2, green 1/2, red 2/2
    assert m["acc1"] == pytest.approx(5 / 6)
    assert m["acc5"] == 1.0
    assert m["mean_per_class_recall"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert m["skipped"] == 1


def test_image_folder_bad_input(tmp_path, to_tensor, save_solid):
    (tmp_path / "empty" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "b").mkdir()
    with pytest.raises(ValueError, match="expected root/<class>/<images>"):
        image_folder(tmp_path / "empty", to_tensor)
    save_solid(tmp_path / "one" / "only" / "x.png", (1, 2, 3))
    with pytest.raises(ValueError, match="at least 2 class folders"):
        image_folder(tmp_path / "one", to_tensor)
    with pytest.raises(ValueError, match="does not exist"):
        image_folder(tmp_path / "nowhere", to_tensor)


def test_class_and_template_files(colour_folder, tmp_path, to_tensor):
    names = tmp_path / "names.txt"
    names.write_text("Blue\n\nGreen\nRed\n", encoding="utf-8")
    assert image_folder(colour_folder, to_tensor, names).classes == ["Blue", "Green", "Red"]
    names.write_text("Blue\nGreen\n", encoding="utf-8")
    with pytest.raises(ValueError, match="has 2 names.*3 classes"):
        image_folder(colour_folder, to_tensor, names)
    names.write_bytes(b"\xff\xfe\xfa red\n")
    with pytest.raises(ValueError, match="names.txt is not valid UTF-8"):
        image_folder(colour_folder, to_tensor, names)
    templates = tmp_path / "templates.txt"
    templates.write_text("a photo of a {c}.\nan {} image\n", encoding="utf-8")
    assert read_templates(templates) == ["a photo of a {c}.", "an {} image"]
    templates.write_text("a photo of a {c}.\nno placeholder\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2"):
        read_templates(templates)


def test_collate_skip_none():
    img = torch.zeros(3, 2, 2)
    assert collate_skip_none([None, None]) is None
    images, labels = collate_skip_none([(img, 1), None, (img + 1, 2)])
    assert images.shape == (2, 3, 2, 2) and labels.tolist() == [1, 2]
    images, captions = collate_skip_none([(img, ["a", "b"]), (img, ["c"])])
    assert captions == [["a", "b"], ["c"]]


def test_csv_groups_captions_and_retrieval(tmp_path, colour_model, to_tensor, colours, save_solid):
    for name, rgb in colours.items():
        save_solid(tmp_path / "img" / f"{name}.png", rgb)
    (tmp_path / "img" / "bad.png").write_bytes(b"junk")
    rows = ["filepath,title", "img/red.png,a red thing", "img/green.png,a green thing",
            "img/red.png,red", "img/bad.png,blue", "img/blue.png,a blue thing"]
    (tmp_path / "caps.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    dataset = csv_captions(tmp_path / "caps.csv", to_tensor)
    assert [p.name for p in dataset.images] == ["red.png", "green.png", "bad.png", "blue.png"]
    assert dataset.captions[0] == ["a red thing", "red"]
    m = retrieval.evaluate(colour_model, _loader(dataset), colour_model.tokenize, "cpu",
                           recall_k_list=(1,))
    # the bad image (and its caption) is dropped; the rest match perfectly
    assert m["skipped"] == 1
    assert m["image_retrieval_recall@1"] == 1.0 and m["text_retrieval_recall@1"] == 1.0
    with pytest.raises(ValueError, match=r"has no column \['caption'\]"):
        csv_captions(tmp_path / "caps.csv", to_tensor, caption_key="caption")


def test_karpathy_json(tmp_path, to_tensor):
    data = {"images": [
        {"filename": "a.jpg", "filepath": "val2014", "split": "test", "sentences": [{"raw": "x"}, {"raw": "y"}]},
        {"filename": "b.jpg", "split": "train", "sentences": [{"raw": "z"}]},
        {"filename": "c.jpg", "split": "test", "sentences": [{"raw": "w"}]}]}
    path = tmp_path / "dataset_coco.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    dataset = karpathy_json(path, to_tensor, image_root=tmp_path / "coco")
    assert dataset.images == [tmp_path / "coco" / "val2014" / "a.jpg", tmp_path / "coco" / "c.jpg"]
    assert dataset.captions == [["x", "y"], ["w"]]
    del data["images"][2]["sentences"][0]["raw"]
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match=r"images\[2\]\.sentences\[0\] lacks field 'raw'"):
        karpathy_json(path, to_tensor)
    del data["images"][1]["split"]
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match=r"images\[1\] lacks field 'split'"):
        karpathy_json(path, to_tensor)


def test_all_images_unreadable(tmp_path, colour_model, to_tensor):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "x.png").write_bytes(b"junk")
    dataset = image_folder(tmp_path, to_tensor)
    with pytest.raises(ValueError, match="no readable images.*2 items"):
        zeroshot.evaluate(colour_model, _loader(dataset), colour_model.tokenize, ["red", "blue"],
                          ["{c}"], "cpu")
