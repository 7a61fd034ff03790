"""Standard datasets by name from local files: Fashion-MNIST (Debian's real files), a Food-101
layout, the paper benchmark table, --compare, the feature cache and retrieval caption checks."""
from __future__ import annotations

import csv
import gzip
import json
import shutil

import numpy as np
import pytest
from torch.utils.data import DataLoader
from torchvision.datasets.mnist import read_image_file

import hiclip
from hiclip.cli import main
from hiclip.eval import features, retrieval, standard
from hiclip.eval.datasets import SkipBadImages, collate_skip_none, csv_captions
from hiclip.eval.run import evaluate_model, run_benchmark

FASHION = standard.DEBIAN_DATASETS / "fashion-mnist"


@pytest.fixture(scope="module")
def fashion_root():
    if not (FASHION / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST is not installed: `apt-get install dataset-fashion-mnist` "
                    "(make test installs it where apt-get and root are available)")
    return FASHION


def test_fashion_mnist_idx_matches_torchvision_reader(fashion_root, tmp_path):
    raw = tmp_path / "t10k-images-idx3-ubyte"
    raw.write_bytes(gzip.open(fashion_root / "t10k-images-idx3-ubyte.gz").read())
    ds = standard.classification("fashion_mnist", None, "test", lambda im: im)
    assert np.array_equal(ds.images, read_image_file(str(raw)).numpy())
    assert ds.classes[0] == "t-shirt/top" and len(ds.classes) == 10
    assert np.bincount(ds.labels).tolist() == [1000] * 10
    assert ds[0][0].mode == "RGB" and ds[0][0].size == (28, 28)


def test_fashion_mnist_zero_shot_and_linear_probe_end_to_end(fashion_root, tmp_path):
    args = ["eval", "--model", "CLIP-Tiny", "--datasets", "fashion_mnist", "--max-samples", "60",
            "--tasks", "zeroshot_classification", "linear_probe", "--output-dir", str(tmp_path / "r")]
    assert main(args) == 0
    zs = json.loads((tmp_path / "r" / "fashion_mnist_random_CLIP-Tiny_zeroshot_classification.json").read_text())
    lp = json.loads((tmp_path / "r" / "fashion_mnist_random_CLIP-Tiny_linear_probe.json").read_text())
    assert 0 <= zs["metrics"]["acc1"] <= zs["metrics"]["acc5"] <= 1 and zs["skipped"] == 0
    assert 0 <= lp["metrics"]["lp_acc1"] <= 1 and len(list((tmp_path / "r" / "features").glob("*.pt"))) == 2


def test_linear_probe_rerun_reads_the_feature_cache(fashion_root, tmp_path, monkeypatch):
    model, _, transform = hiclip.create_model_and_transforms("CLIP-Tiny")
    options = dict(tasks=["linear_probe"], datasets=["fashion_mnist"], max_samples=40, verbose=False,
                   feature_cache=str(tmp_path / "cache"))
    tokenizer = hiclip.get_tokenizer("CLIP-Tiny")
    first = evaluate_model(model, transform, tokenizer, model_name="m", pretrained=None,
                           output_dir=tmp_path / "a", **options)

    def no_encoding(*a, **k):
        raise AssertionError("features were encoded again")
    monkeypatch.setattr(features, "extract_image_features", no_encoding)
    again = evaluate_model(model, transform, tokenizer, model_name="m", pretrained=None,
                           output_dir=tmp_path / "b", **options)
    assert again[0]["metrics"] == first[0]["metrics"]


@pytest.fixture
def food_root(tmp_path, save_solid, colours):
    """food101 in torchvision's layout: food-101/meta/{train,test}.json and images/<class>/<id>.jpg."""
    base = tmp_path / "data" / "food101" / "food-101"
    meta = {"train": {}, "test": {}}
    for name in ("red", "blue"):
        for i in range(4):
            save_solid(base / "images" / f"{name}_thing" / f"{i}.jpg", colours[name])
            meta["train" if i < 2 else "test"].setdefault(f"{name}_thing", []).append(f"{name}_thing/{i}")
    (base / "meta").mkdir()
    for split, content in meta.items():
        (base / "meta" / f"{split}.json").write_text(json.dumps(content))
    return tmp_path / "data"


def test_food101_layout_paper_benchmark_and_compare(food_root, tmp_path, capsys):
    ds = standard.classification("food101", food_root, "test", lambda im: im)
    assert ds.classes == ["blue thing", "red thing"]  # "_" -> " ", as CLIP_benchmark
    assert [ds.classes[y] for y in ds.labels] == [p.split("/")[-2].replace("_", " ") for p in ds.images]
    assert len(ds.images) == 4 and all(p.endswith(("2.jpg", "3.jpg")) for p in ds.images)
    assert ds.templates == standard.templates_for("food101")
    out = tmp_path / "res"
    assert main(["eval", "--model", "CLIP-Tiny", "--benchmark", "paper", "--dataset-root", str(food_root),
                 "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "10 dataset(s) not present" in printed and "cifar10: not found in" in printed
    with open(out / "benchmark_paper.csv", newline="") as f:
        header, row = list(csv.reader(f))
    assert header == ["model", "weights", *standard.PAPER_ZEROSHOT, "average"]
    acc = json.loads((out / "food101_random_CLIP-Tiny_zeroshot_classification.json").read_text())["metrics"]["acc1"]
    assert row[header.index("food101")] == f"{100 * acc:.1f}" and row[-1] == f"{100 * acc:.1f} (1)"
    assert row[header.index("cifar10")] == "-"
    assert (out / "benchmark_paper.md").read_text().startswith("| model | weights | cifar10 |")
    shutil.copytree(out, tmp_path / "res2")
    assert main(["eval", "--compare", str(out), str(tmp_path / "res2")]) == 0
    table = capsys.readouterr().out.strip().splitlines()
    assert len(table) == 4 and table[0].startswith("| model | weights | cifar10")


def test_missing_standard_dataset_is_one_clear_line(tmp_path, capsys):
    assert main(["eval", "--model", "CLIP-Tiny", "--datasets", "cifar10", "--dataset-root", str(tmp_path),
                 "--tasks", "zeroshot_classification", "--output-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "cifar10: not found in" in err and "cifar-10-batches-py" in err and "Traceback" not in err
    with pytest.raises(ValueError, match="none of the 11 datasets"):
        run_benchmark("CLIP-Tiny", suite="paper", dataset_root=str(tmp_path), output_dir=tmp_path / "b", verbose=False)


def test_retrieval_skips_and_counts_every_bad_row(tmp_path, colour_model, colours, save_solid, huge_png, to_tensor):
    for name, rgb in colours.items():
        save_solid(tmp_path / f"{name}.png", rgb)
    for i in range(3):
        save_solid(tmp_path / f"spare{i}.png", (9, 9, 9))
    (tmp_path / "corrupt.png").write_bytes(b"junk")
    huge_png(tmp_path / "bomb.png")
    rows = [b"red.png,a red thing", b"green.png,a green thing", b"blue.png,a blue thing", b"red.png,",
            b"spare0.png,", b"spare1.png,   ", b"spare2.png,\xff\xfe bad bytes", b"nowhere.png,a blue thing",
            b"corrupt.png,a red thing", b"bomb.png,a green thing"]
    (tmp_path / "caps.csv").write_bytes(b"filepath,title\n" + b"\n".join(rows) + b"\n")
    dataset = csv_captions(tmp_path / "caps.csv", to_tensor)
    loader = DataLoader(SkipBadImages(dataset), batch_size=3, collate_fn=collate_skip_none)
    m = retrieval.evaluate(colour_model, loader, colour_model.tokenize, "cpu", recall_k_list=(1,))
    assert m["skipped"] == 6  # 3 images whose only caption is bad + missing, corrupt and too-large images
    assert m["skipped_captions"] == 4 and dict(dataset.caption_skips) == {"empty caption": 3, "caption not UTF-8": 1}
    assert m["image_retrieval_recall@1"] == 1.0 and m["text_retrieval_recall@1"] == 1.0
