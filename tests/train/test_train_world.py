"""train() on the real data API (hiclip.data.loader) over the embedded world."""
from __future__ import annotations

import pytest

import train_fakes as fakes
from hiclip.data import ShapesWorld
from hiclip.data.export import write_csv
from hiclip.train import TrainConfig, train
from hiclip import checkpoint as ckpt
from hiclip.train.__main__ import main as train_main
from hiclip.train.metrics import read_csv


@pytest.fixture(scope="module")
def world_model(tmp_path_factory) -> str:
    """The tiny config with CLIP's vocabulary (the world's captions use the real tokenizer)."""
    text = {**fakes.TINY["text_cfg"], "vocab_size": 49408, "context_length": 16}
    return fakes.write_config(tmp_path_factory.mktemp("cfg"), text_cfg=text)


def config(out, model: str, **changes) -> TrainConfig:
    base = dict(output_dir=str(out), model=model, batch_size=8, steps=3, warmup_steps=1, val_every=2,
                val_samples=16, save_every=0, workers=0, tensorboard=False, progress=False)
    return TrainConfig(**{**base, **changes})


def test_world_training_resumes_exactly(world_model, tmp_path):
    straight = train(config(tmp_path / "a", world_model))
    assert straight["steps"] == 3 and straight["skipped"] == {}
    assert straight["final_val"]["samples"] == 16
    assert [int(r["step"]) for r in read_csv(tmp_path / "a" / "val.csv")] == [0, 2, 3]
    first = train(config(tmp_path / "b", world_model, max_minutes=0.0))
    assert first["stopped"] == "time budget" and first["steps"] == 1
    second = train(config(tmp_path / "b", world_model, resume="latest"))
    assert second["start_step"] == 1 and second["steps"] == 3
    a = [r["loss"] for r in read_csv(tmp_path / "a" / "metrics.csv")]
    b = [r["loss"] for r in read_csv(tmp_path / "b" / "metrics.csv")]
    assert len(a) == 3 and b == pytest.approx(a, abs=1e-5)
    assert ckpt.Checkpoint.load(tmp_path / "b" / "checkpoints" / "latest.pt").batch_in_epoch == 3


def test_epochs_of_a_small_world_and_a_csv_export(world_model, tmp_path):
    summary = train(config(tmp_path / "w", world_model, steps=None, epochs=2, world_samples=20))
    assert summary["total_steps"] == 4 and summary["epoch"] == 1  # 20 // 8 = 2 batches per epoch
    csv_path = write_csv(ShapesWorld("train", size=8, image_size=16), tmp_path / "csv")
    summary = train(config(tmp_path / "c", world_model, data=f"csv:{csv_path}", batch_size=4, steps=None,
                           epochs=1, val_data="none"))
    assert summary["steps"] == 2 and summary["skipped"] == {}


@pytest.mark.parametrize("changes", [{"data": "csv:{tmp}/missing.csv"},
                                     {"data": "csv:{csv}", "csv_caption_key": "nope"},
                                     {"data": "csv:{csv}", "batch_size": 64}])
def test_bad_data_fails_before_training(world_model, tmp_path, changes):
    csv_path = write_csv(ShapesWorld("train", size=8, image_size=16), tmp_path / "csv")
    changes = {k: v.format(tmp=tmp_path, csv=csv_path) if isinstance(v, str) else v for k, v in changes.items()}
    with pytest.raises((ValueError, FileNotFoundError)):
        train(config(tmp_path, world_model, val_data="none", **changes))
    assert not (tmp_path / "metrics.csv").exists()


def test_command_line_trains_and_prints_summary(world_model, tmp_path, capsys):
    """``python -m hiclip.train`` (what torchrun runs)."""
    assert train_main(["--output-dir", str(tmp_path), "--model", world_model, "--steps", "1", "--batch-size", "4",
                       "--workers", "0", "--val-data", "none", "--no-progress", "--no-tensorboard"]) == 0
    out = capsys.readouterr().out
    assert "training completed: step 1/1" in out and "skipped samples: none" in out
    assert ckpt.Checkpoint.load(tmp_path / "checkpoints" / "latest.pt").step == 1
