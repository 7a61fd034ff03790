"""Agreement with CLIP_benchmark's metrics and open_clip's zero-shot classifier."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from open_clip.zero_shot_classifier import build_zero_shot_classifier as open_clip_classifier
from torch.utils.data import DataLoader

from hiclip.eval import interop, retrieval, zeroshot
from hiclip.eval.datasets import CaptionDataset, SkipBadImages, collate_skip_none, image_folder

CLASSNAMES = [f"thing number {i}" for i in range(6)]


def test_classifier_matches_open_clip(tiny_clip):
    model, _, tokenizer = tiny_clip
    for templates in (["a photo of a {}.", "{} again"], [lambda c: f"itap of {c}"]):
        ours = zeroshot.build_zero_shot_classifier(model, tokenizer, CLASSNAMES, templates,
                                                   num_classes_per_batch=4)
        ref = open_clip_classifier(model, tokenizer, CLASSNAMES, templates, num_classes_per_batch=None)
        assert ours.shape == (32, 6)
        torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)  # unit vectors, float32: batching changes summation order


def test_clip_benchmark_patch_fixes_the_numpy_crash(monkeypatch):
    cb = pytest.importorskip("clip_benchmark.metrics.zeroshot_classification")
    lp = pytest.importorskip("clip_benchmark.metrics.linear_probe")
    for module in (cb, lp):
        monkeypatch.setattr(module, "accuracy", module.accuracy)  # undone after the test
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.3], [0.2, 0.3, 0.5], [0.6, 0.5, 0.4]])
    target = torch.tensor([1, 2, 2, 1])
    patched = interop.patch_clip_benchmark()
    assert patched == (np.lib.NumpyVersion(np.__version__) >= "2.4.0")
    assert not interop.clip_benchmark_needs_patch()
    # hand-computed: top-1 hits rows 0 and 2; top-2 also row 1 (0.3 second) and row 3 (0.5 second)
    assert cb.accuracy(logits, target, topk=(1, 2)) == [0.5, 1.0] and lp.accuracy is cb.accuracy


def test_zeroshot_matches_clip_benchmark(tiny_clip, random_folder, monkeypatch):
    cb = pytest.importorskip("clip_benchmark.metrics.zeroshot_classification")
    monkeypatch.setattr(cb, "accuracy", interop.topk_accuracy)
    model, transform, tokenizer = tiny_clip
    dataset = image_folder(random_folder / "test", transform)
    loader = DataLoader(SkipBadImages(dataset), batch_size=5, collate_fn=collate_skip_none)
    templates = ["a photo of a {c}.", "a {c}"]
    ref = cb.evaluate(model, loader, tokenizer, CLASSNAMES, templates, "cpu", amp=False)
    ours = zeroshot.evaluate(model, loader, tokenizer, CLASSNAMES, templates, "cpu")
    for key in ("acc1", "acc5", "mean_per_class_recall"):
        assert ours[key] == pytest.approx(ref[key]), key
    assert ours["skipped"] == 0


def test_retrieval_matches_clip_benchmark(tiny_clip, random_folder):
    cb = pytest.importorskip("clip_benchmark.metrics.zeroshot_retrieval")
    model, transform, tokenizer = tiny_clip
    paths = sorted((random_folder / "train").rglob("*.png"))
    captions = [[f"image {i} of a {p.parent.name}", f"number {i}"][: 1 + i % 2]
                for i, p in enumerate(paths)]
    loader = DataLoader(SkipBadImages(CaptionDataset(paths, captions, transform)), batch_size=7,
                        collate_fn=collate_skip_none)
    ks = [1, 5, 10]
    ref = cb.evaluate(model, loader, tokenizer, "cpu", amp=False, recall_k_list=ks)
    ours = retrieval.evaluate(model, loader, tokenizer, "cpu", recall_k_list=ks, chunk_size=5)
    assert set(ref) <= set(ours)
    for key, value in ref.items():
        assert ours[key] == pytest.approx(value), key


def test_clip_benchmark_build_reads_hiclip_eval_output(random_folder, tmp_path, monkeypatch):
    """`clip_benchmark build` (its own CLI, offline) turns `hiclip eval` JSONs into its CSV."""
    import csv
    import json
    import sys

    cb_cli = pytest.importorskip("clip_benchmark.cli")
    import hiclip
    from hiclip.cli import main

    ckpt = tmp_path / "clip.pt"
    torch.save({"state_dict": hiclip.create_model("CLIP-Tiny").state_dict(), "model": "CLIP-Tiny"}, ckpt)
    out = tmp_path / "results"
    common = ["--tasks", "zeroshot_classification", "--datasets", str(random_folder / "test"),
              "--output-dir", str(out)]
    assert main(["eval", "--model", "CLIP-Tiny", *common]) == 0
    assert main(["eval", "--model", str(ckpt), *common]) == 0
    records = {r["pretrained"]: r for r in map(json.loads, (p.read_text() for p in sorted(out.glob("*.json"))))}
    assert set(records) == {"random", str(ckpt)}
    monkeypatch.setattr(sys, "argv", ["clip_benchmark", "build", str(out), "--output", str(tmp_path / "b.csv")])
    cb_cli.main()
    with open(tmp_path / "b.csv", newline="") as f:
        rows = {r["pretrained"]: r for r in csv.DictReader(f)}
    assert set(rows) == set(records)
    for pretrained, row in rows.items():
        rec = records[pretrained]
        assert row["model_fullname"] == f"CLIP-Tiny {pretrained}" and row["language"] == "en"
        assert row["task"] == "zeroshot_classification" and row["dataset"] == str(random_folder / "test")
        assert float(row["acc1"]) == rec["metrics"]["acc1"] and int(row["skipped"]) == rec["skipped"] == 0
        assert "metrics" not in row
