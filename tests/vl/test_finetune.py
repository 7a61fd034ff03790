"""Fine-tuning: frozen encoders stay bit-identical, resume equals an uninterrupted run,
results JSON and finetune-eval, the command line."""
import dataclasses
import json

import pytest
import torch
from _helpers import assert_states_close

from hiclip import create_model
from hiclip.cli import main
from hiclip.train.metrics import read_csv
from hiclip.checkpoint import Checkpoint
from hiclip.vl import FinetuneConfig, evaluate_checkpoint, finetune, load_finetuned


def _cfg(out, **kw):
    base = dict(task="world-vqa", output_dir=str(out), world_samples=64, batch_size=8, steps=4, warmup_steps=2,
                lr=1e-3, val_every=0, val_samples=16, workers=0, device="cpu", tensorboard=False,
                progress=False, save_every=2)
    return FinetuneConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A 'pretrained' HiCLIP-Tiny as a bare state dict with a model name (seeded random weights)."""
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("pre") / "tiny.pt"
    model = create_model("HiCLIP-Tiny")
    torch.save({"model": "HiCLIP-Tiny", "model_config": model.cfg.to_dict(), "state_dict": model.state_dict()}, path)
    return path, model.state_dict()


def test_frozen_encoders_stay_bit_identical(tmp_path, pretrained):
    path, before = pretrained
    summary = finetune(_cfg(tmp_path, model=str(path), freeze_encoders=True, head="mlp"))
    model, *_ = load_finetuned(summary["checkpoint"])
    after = model.encoder.state_dict()
    assert set(after) == set(before) and all(torch.equal(after[k], before[k]) for k in before)
    head = Checkpoint.load(summary["checkpoint"]).vl.head_state_dict
    fresh = load_finetuned(summary["checkpoint"])[0].head.state_dict()
    assert all(torch.equal(head[k], fresh[k]) for k in head)
    # ... while a full fine-tune moves them
    full = finetune(_cfg(tmp_path / "full", model=str(path), head="mlp"))
    moved = load_finetuned(full["checkpoint"])[0].encoder.state_dict()
    assert not torch.equal(moved["visual.conv1.weight"], before["visual.conv1.weight"])


def test_resume_equals_uninterrupted_run(tmp_path, pretrained):
    path, _ = pretrained
    whole = finetune(_cfg(tmp_path / "whole", model=str(path), world_samples=24))  # 3 batches: crosses an epoch
    finetune(_cfg(tmp_path / "part", model=str(path), world_samples=24, steps=4, max_minutes=0))  # stops at step 1
    part = finetune(_cfg(tmp_path / "part", model=str(path), world_samples=24, resume="latest"))
    assert part["start_step"] == 1 and part["steps"] == whole["steps"] == 4
    a, b = read_csv(tmp_path / "whole" / "metrics.csv"), read_csv(tmp_path / "part" / "metrics.csv")
    assert [r["step"] for r in b] == [1, 2, 3, 4]
    for x, y in zip(a, b):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-5, abs=1e-6)
    ma, mb = load_finetuned(whole["checkpoint"])[0], load_finetuned(part["checkpoint"])[0]
    assert_states_close(ma.state_dict(), mb.state_dict())
    assert whole["final_val"]["accuracy"] == part["final_val"]["accuracy"]


def test_results_json_and_finetune_eval(tmp_path, pretrained):
    path, _ = pretrained
    summary = finetune(_cfg(tmp_path, model=str(path), task="world-ve", predictions=True))
    record = json.loads(open(summary["final_val"]["results"]).read())
    assert record["dataset"] == "world-ve/val" and record["model"] == "HiCLIP-Tiny"
    assert record["task"] == "visual_entailment" and record["metrics"]["samples"] == 16
    assert {"accuracy", "accuracy_entailment", "accuracy_contradiction", "accuracy_neutral"} <= set(record["metrics"])
    preds = open(summary["final_val"]["results"].replace(".json", ".predictions.jsonl")).read().splitlines()
    assert len(preds) == 16 and {"id", "text", "type", "prediction", "gold", "score"} == set(json.loads(preds[0]))
    again = evaluate_checkpoint(summary["checkpoint"], "val", samples=16, device="cpu", output_dir=tmp_path / "e")
    assert again["accuracy"] == pytest.approx(record["metrics"]["accuracy"])
    held = evaluate_checkpoint(summary["checkpoint"], "holdout", samples=8, device="cpu", output_dir=tmp_path / "e")
    assert json.loads(open(held["results"]).read())["dataset"] == "world-ve/holdout"


def test_command_line(tmp_path, pretrained, capsys):
    path, _ = pretrained
    out = tmp_path / "run"
    args = ["finetune", "--task", "world-vqa", "--model", str(path), "--output-dir", str(out), "--steps", "2",
            "--batch-size", "8", "--world-samples", "16", "--val-samples", "8", "--workers", "0", "--device", "cpu",
            "--no-tensorboard", "--no-progress", "--head", "fusion", "--fusion-layers", "1"]
    assert main(args) == 0
    assert "val (8 examples): accuracy" in capsys.readouterr().out
    assert main(args) == 2 and "already holds checkpoints" in capsys.readouterr().err
    assert main(["finetune-eval", "--checkpoint", str(out / "checkpoints" / "latest.pt"), "--split", "test",
                 "--samples", "8", "--device", "cpu"]) == 0
    assert "test (8 examples)" in capsys.readouterr().out
    assert main(["finetune-eval", "--checkpoint", str(path), "--device", "cpu"]) == 2
    assert "not a checkpoint of `hiclip finetune`" in capsys.readouterr().err
    assert main(["finetune", "--task", "nope", "--output-dir", str(tmp_path / "x"), "--device", "cpu"]) == 2


def test_study_runs_every_model_seed_and_task(tmp_path, pretrained):
    from hiclip.vl import VLStudyConfig, format_study, run_vl_study
    path, _ = pretrained
    cfg = VLStudyConfig(out=str(tmp_path / "study"), steps=2, batch_size=8, warmup_steps=1, world_samples=32,
                        eval_samples=8, workers=0, progress=False)
    result = run_vl_study({"pre": {0: str(path), 1: str(path)}, "random": {0: "HiCLIP-Tiny"}}, cfg)
    table = result["table"]
    assert len(table["world-vqa acc"]["pre"]) == 2 and len(table["world-ve acc"]["random"]) == 1
    assert "world-vqa acc: count" in table and "world-ve acc (held-out combos)" in table
    assert set(result["baselines"]) == set(table)
    text = format_study(result)
    assert text.count("\n") == len(table) + 1 and "| world-vqa acc |" in text
    again = run_vl_study({"pre": {0: str(path), 1: str(path)}, "random": {0: "HiCLIP-Tiny"}}, cfg)  # all cached
    assert again["table"] == table and again["time_s"] == result["time_s"] > 0  # each run's own time, once
    run = tmp_path / "study" / "random-s0" / "world-ve" / "study_metrics.json"
    run.write_text(json.dumps(json.loads(run.read_text())["metrics"]))  # a run of an earlier version: no time
    older = run_vl_study({"pre": {0: str(path), 1: str(path)}, "random": {0: "HiCLIP-Tiny"}}, cfg)
    assert older["table"] == table and older["time_s"] is None
    with pytest.raises(ValueError, match=r"another recipe \(lr 0.0001 -> 0.001, steps 2 -> 3\)"):
        run_vl_study({"pre": {0: str(path)}}, dataclasses.replace(cfg, steps=3, lr=1e-3, workers=1))
    (tmp_path / "study" / "recipe.json").unlink()  # a study of an earlier version: its study.json says the recipe
    with pytest.raises(ValueError, match="another recipe"):
        run_vl_study({"pre": {0: str(path)}}, dataclasses.replace(cfg, steps=3))
