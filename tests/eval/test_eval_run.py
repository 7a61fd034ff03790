"""Orchestration (evaluate_model / run_eval) and result files."""
from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import DataLoader

from hiclip.eval import compare, evaluate_model, read_result, run_eval, zeroshot
from hiclip.eval.datasets import DEFAULT_TEMPLATES, SkipBadImages, collate_skip_none, image_folder
from hiclip.eval.results import make_record, write_result


def _write(path, model, metrics):
    path.write_text(json.dumps(make_record("world/shape", model, None, "zeroshot_classification",
                                           metrics)), encoding="utf-8")
    return path


def test_compare_two_and_three_files(tmp_path):
    a = _write(tmp_path / "a.json", "CLIP-Tiny", {"acc1": 0.25, "acc5": 0.5, "n": 3})
    b = _write(tmp_path / "b.json", "HiCLIP-Tiny", {"acc1": 0.75, "skipped": 2, "n": 5})
    lines = compare([a, b]).splitlines()
    assert lines[0].split() == ["metric", "a.json", "b.json", "diff"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    assert rows["model"] == ["CLIP-Tiny", "HiCLIP-Tiny"]
    assert rows["acc1"] == ["0.2500", "0.7500", "0.5000"]
    assert rows["acc5"] == ["0.5000", "-", "-"]
    assert rows["skipped"] == ["-", "2", "-"]
    assert rows["n"] == ["3", "5", "2"]
    assert compare([a, b, a]).splitlines()[0].split() == ["metric", "a.json", "b.json", "a.json"]
    with pytest.raises(ValueError, match="two or more"):
        compare([a])
    (tmp_path / "bad.json").write_text('{"dataset": "x"}', encoding="utf-8")
    with pytest.raises(ValueError, match="bad.json.*missing"):
        read_result(tmp_path / "bad.json")


def test_write_result_name(tmp_path):
    record = make_record("/data/my set", "HiCLIP-Tiny", "/ckpt/epoch_3.pt", "linear_probe", {"lp_acc1": 1.0})
    path = write_result(record, tmp_path / "out")
    assert path.name == "-data-my-set_epoch_3_HiCLIP-Tiny_linear_probe.json"
    assert read_result(path) == record


def test_evaluate_model_on_folder(tiny_clip, random_folder, tmp_path, capsys):
    model, transform, tokenizer = tiny_clip
    records = evaluate_model(model, transform, tokenizer, model_name="tiny", pretrained=None,
                             tasks=["zeroshot_classification", "linear_probe", "compositional"],
                             datasets=[str(random_folder)], output_dir=tmp_path, batch_size=7,
                             c_grid=(0.1, 1.0))
    assert "skipping compositional" in capsys.readouterr().out
    assert [r["task"] for r in records] == ["zeroshot_classification", "linear_probe"]
    assert len(list(tmp_path.glob("*.json"))) == 2
    # zero-shot runs on root/test with the default templates
    dataset = image_folder(random_folder / "test", transform)
    loader = DataLoader(SkipBadImages(dataset), batch_size=3, collate_fn=collate_skip_none)
    direct = zeroshot.evaluate(model, loader, tokenizer, dataset.classes, DEFAULT_TEMPLATES, "cpu")
    assert {**records[0]["metrics"], "skipped": records[0]["skipped"]} == pytest.approx(direct)
    assert "skipped" not in records[0]["metrics"] and records[0]["pretrained"] == "random"
    assert records[1]["metrics"]["best_C"] in (0.1, 1.0)


def test_evaluate_model_bad_requests(tiny_clip, random_folder, tmp_path):
    model, transform, tokenizer = tiny_clip
    kwargs = dict(model_name="tiny", pretrained=None, output_dir=tmp_path, verbose=False)
    with pytest.raises(ValueError, match="unknown task"):
        evaluate_model(model, transform, tokenizer, tasks=["segmentation"], **kwargs)
    with pytest.raises(ValueError, match="no such file or folder"):
        evaluate_model(model, transform, tokenizer, datasets=[str(tmp_path / "nope")], **kwargs)
    with pytest.raises(ValueError, match="none of the tasks"):
        evaluate_model(model, transform, tokenizer, tasks=["zeroshot_retrieval"],
                       datasets=[str(random_folder)], **kwargs)
    with pytest.raises(ValueError, match="unknown evaluation option"):
        evaluate_model(model, transform, tokenizer, bach_size=3, **kwargs)
    with pytest.raises(ValueError, match="unknown world dataset"):
        evaluate_model(model, transform, tokenizer, datasets=["world/texture"], **kwargs)


def test_evaluate_model_on_world(tiny_clip, tmp_path):
    pytest.importorskip("hiclip.data.world")
    model, transform, tokenizer = tiny_clip
    records = evaluate_model(model, transform, tokenizer, model_name="tiny", pretrained=None,
                             datasets=["world", "world/count"], output_dir=tmp_path, world_size=16,
                             c_grid=(1.0,), verbose=False)
    names = [(r["task"], r["dataset"]) for r in records]
    assert len(names) == 11 and set(names) == ({("zeroshot_classification", f"world/{t}")
                      for t in ("shape", "colour", "size", "count", "holdout")}
                     | {("linear_probe", f"world/{t}") for t in ("shape", "colour", "size", "count")}
                     | {("zeroshot_retrieval", "world"), ("compositional", "world")})
    comp = next(r["metrics"] for r in records if r["task"] == "compositional")
    # every scene has at least an attribute negative; chance is 1 / (1 + #negatives) <= 1/2
    assert comp["n_trials_attribute_replace"] == 16 and 0 < comp["chance"] <= 0.5
    assert all(r["skipped"] == 0 and "skipped" not in r["metrics"] for r in records)


def test_run_eval_end_to_end(random_folder, tmp_path):
    pytest.importorskip("hiclip.factory")
    import hiclip

    clip = hiclip.create_model("CLIP-Tiny")
    ckpt = tmp_path / "clip.pt"
    torch.save({"state_dict": clip.state_dict(), "model": "CLIP-Tiny"}, ckpt)
    records = run_eval(None, pretrained=str(ckpt), tasks=["zeroshot_classification"],
                       datasets=[str(random_folder)], output_dir=tmp_path / "out", verbose=False)
    assert records[0]["model"] == "CLIP-Tiny" and records[0]["pretrained"] == str(ckpt)
    # the checkpoint's weights are used: same numbers as the model we saved
    _, _, transform = hiclip.create_model_and_transforms("CLIP-Tiny")
    dataset = image_folder(random_folder / "test", transform)
    loader = DataLoader(SkipBadImages(dataset), batch_size=64, collate_fn=collate_skip_none)
    direct = zeroshot.evaluate(clip.eval(), loader, hiclip.get_tokenizer("CLIP-Tiny"),
                               dataset.classes, DEFAULT_TEMPLATES, "cpu")
    assert {**records[0]["metrics"], "skipped": records[0]["skipped"]} == pytest.approx(direct)
    with pytest.raises(ValueError, match="checkpoint of model 'CLIP-Tiny', not 'HiCLIP-Tiny'"):
        run_eval("HiCLIP-Tiny", pretrained=str(ckpt), datasets=[str(random_folder)])
    torch.save({"visual.nothing": torch.zeros(2)}, tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="does not match"):
        run_eval("CLIP-Tiny", pretrained=str(tmp_path / "junk.pt"), datasets=[str(random_folder)])
    with pytest.raises(ValueError, match="unknown model"):
        run_eval("CLIP-Huge", datasets=[str(random_folder)])
    with pytest.raises(ValueError, match="expected a model name"):
        run_eval(None, datasets=[str(random_folder)])


def test_run_eval_hiclip_on_world(tmp_path):
    pytest.importorskip("hiclip.data.world")
    records = run_eval("HiCLIP-Tiny", tasks=["zeroshot_retrieval", "compositional"],
                       datasets=["world"], output_dir=tmp_path, world_size=8, verbose=False)
    retrieval_metrics = records[0]["metrics"]
    assert 0 <= retrieval_metrics["image_retrieval_recall@1"] <= retrieval_metrics["image_retrieval_recall@5"]
    assert retrieval_metrics["image_retrieval_recall@10"] == 1.0  # 8 images: R@10 covers them all
    assert records[1]["metrics"]["n_trials"] >= 8
