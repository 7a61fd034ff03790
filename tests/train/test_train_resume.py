"""Exact resume, clean stops, SIGKILL at every point of a save, atomic checkpoints and NaN handling."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import train_fakes as fakes
from _helpers import assert_states_close
from hiclip.train import TrainConfig, TrainingDiverged, train
from hiclip import checkpoint as ckpt
from hiclip.train.metrics import read_csv

def config(out: Path, model: str, **changes) -> TrainConfig:
    base = dict(output_dir=str(out), model=model, batch_size=4, steps=8,
                warmup_steps=2, save_every=0, val_every=0, workers=0, tensorboard=False, progress=False)
    return TrainConfig(**{**base, **changes})


def run(cfg: TrainConfig, data: str = "fake:5") -> dict:
    return train(cfg, make_loader=fakes.loaders(data, val="fake:2"))


def losses(out: Path) -> list[float]:
    rows = read_csv(out / "metrics.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, len(rows) + 1))
    return [r["loss"] for r in rows]


@pytest.fixture(scope="module")
def model_json(tmp_path_factory) -> str:
    return fakes.write_config(tmp_path_factory.mktemp("cfg"))


@pytest.fixture(scope="module")
def straight(tmp_path_factory, model_json):
    """8 steps over 2 epochs (5 batches each) without interruption, validating every 3 steps."""
    out = tmp_path_factory.mktemp("straight")
    summary = run(config(out, model_json, val_every=3, tensorboard=True))
    return out, summary


def test_straight_run_outputs(straight, model_json):
    out, summary = straight
    assert summary["stopped"] == "completed" and summary["steps"] == 8 and summary["epoch"] == 1
    assert summary["skipped"] == {"fake reason": 8}
    assert [int(r["epoch"]) for r in read_csv(out / "metrics.csv")] == [0] * 5 + [1] * 3
    val = read_csv(out / "val.csv")
    assert [int(r["step"]) for r in val] == [0, 3, 6, 8]
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    # the last validation row is the contrastive loss of the final weights over all val pairs
    state = ckpt.Checkpoint.load(out / "checkpoints" / "latest.pt")
    assert state.step == 8 and state.model == model_json and state.format_version == ckpt.FORMAT_VERSION
    from hiclip import create_model
    model = create_model(model_json, pretrained=out / "checkpoints" / "latest.pt").eval()
    images, tokens = zip(*fakes.FakeLoader("fake:2", 4, 0, 1, 0, 0, 0, "val"))
    with torch.no_grad():
        f = model(torch.cat(images), torch.cat(tokens))
    from hiclip.train import contrastive_loss
    expected = contrastive_loss(f["image_features"], f["text_features"], f["logit_scale"]).item()
    assert val[-1]["val_loss"] == pytest.approx(expected, abs=1e-5) and val[-1]["samples"] == 8


def test_signal_stop_then_resume_matches_straight_run(straight, model_json, tmp_path):
    out, _ = straight
    first = run(config(tmp_path, model_json, val_every=3), data="fake:5:sigint@3")  # SIGINT during step 4
    assert first["stopped"] == "signal" and first["steps"] == 4
    state = ckpt.Checkpoint.load(tmp_path / "checkpoints" / "latest.pt")
    assert (state.step, state.epoch, state.batch_in_epoch) == (4, 0, 4)
    second = run(config(tmp_path, model_json, val_every=3, resume="latest"))
    assert second["start_step"] == 4 and second["steps"] == 8
    assert losses(tmp_path) == pytest.approx(losses(out), abs=1e-5)
    assert [r["val_loss"] for r in read_csv(tmp_path / "val.csv")] == pytest.approx(
        [r["val_loss"] for r in read_csv(out / "val.csv")], abs=1e-5)
    assert second["skipped"] == {"fake reason": 8}
    a = ckpt.Checkpoint.load(out / "checkpoints" / "latest.pt").state_dict
    b = ckpt.Checkpoint.load(tmp_path / "checkpoints" / "latest.pt").state_dict
    assert_states_close(a, b)  # float32 training: tolerance scaled by the tensor's norm, not per element


def test_time_budget_stops_with_checkpoint(model_json, tmp_path):
    summary = run(config(tmp_path, model_json, max_minutes=0.0))
    assert summary["stopped"] == "time budget" and summary["steps"] == 1
    assert ckpt.Checkpoint.load(tmp_path / "checkpoints" / "latest.pt").step == 1


# the save of step 4 (save_every 1, keep 2) killed at each point -> latest.pt's step, the step files left
CRASHES = {"mid_step_file": (3, [2, 3]), "after_step_file": (3, [2, 3, 4]),
           "after_latest": (4, [2, 3, 4]), "after_prune": (4, [3, 4])}


@pytest.fixture(scope="module")
def crashed(tmp_path_factory, model_json) -> Path:
    """One run per point of ``CRASHES``, each killed there (see crash_child); -> their parent folder."""
    import crash_child
    base = tmp_path_factory.mktemp("crashed")
    (base / "cfg.json").write_text(json.dumps(config(base, model_json, save_every=1, keep_checkpoints=2).to_dict()))
    child = subprocess.run([sys.executable, crash_child.__file__, str(base / "cfg.json"), "4"],
                           env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    assert child.returncode == 0, child.stderr
    status = json.loads((base / "status.json").read_text())
    assert {p: os.waitstatus_to_exitcode(s) for p, s in status.items()} == {p: -signal.SIGKILL for p in CRASHES}
    return base


@pytest.mark.slow  # trains in a subprocess that SIGKILLs itself
@pytest.mark.parametrize("point", list(CRASHES))
def test_a_kill_at_any_point_of_a_save_resumes_exactly(straight, crashed, model_json, point):
    keep, (latest_step, left) = 2, CRASHES[point]
    out = crashed / point
    paths = ckpt.RunPaths(out)
    assert ckpt.Checkpoint.load(paths.latest).step == latest_step  # never corrupt
    assert [s for s, _ in paths.step_checkpoints()] == left and len(left) <= keep + 1
    partial = [p.name for p in paths.checkpoints.iterdir() if p.name.startswith(".tmp-")]
    assert bool(partial) == (point == "mid_step_file")
    # the first save after the resume restores the bound, and removes the partial file
    first = run(config(out, model_json, save_every=1, keep_checkpoints=keep, resume="latest"),
                data=f"fake:5:sigint@{latest_step}")
    assert (first["start_step"], first["steps"], first["stopped"]) == (latest_step, latest_step + 1, "signal")
    assert [s for s, _ in paths.step_checkpoints()] == [latest_step, latest_step + 1]
    assert not [p for p in paths.checkpoints.iterdir() if p.name.startswith(".tmp-")]
    final = run(config(out, model_json, save_every=1, keep_checkpoints=keep, resume="latest"))
    assert final["steps"] == 8 and len(paths.step_checkpoints()) == keep
    assert losses(out) == pytest.approx(losses(straight[0]), abs=1e-5)
    assert_states_close(ckpt.Checkpoint.load(straight[0] / "checkpoints" / "latest.pt").state_dict,
                        ckpt.Checkpoint.load(paths.latest).state_dict)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(model_json, tmp_path):
    with pytest.raises(TrainingDiverged, match=r"loss is nan at step 4 .*last good checkpoint is .*latest\.pt"):
        run(config(tmp_path, model_json, save_every=2), data="fake:5:nan@3")
    state = ckpt.Checkpoint.load(tmp_path / "checkpoints" / "latest.pt")
    assert state.step == 2
    assert all(torch.isfinite(v).all() for v in state.state_dict.values())
    assert [s for s, _ in ckpt.RunPaths(tmp_path).step_checkpoints()] == [2]
    assert len(losses(tmp_path)) == 3


def test_resume_guards(model_json, tmp_path):
    run(config(tmp_path, model_json, steps=1))
    with pytest.raises(ValueError, match="already holds checkpoints"):
        run(config(tmp_path, model_json, steps=2))
    other = fakes.write_config(tmp_path, "wide.json", embed_dim=24)
    with pytest.raises(ValueError, match="config differs"):
        run(config(tmp_path, other, steps=2, resume="latest"))
    with pytest.raises(ValueError, match="batch_size: 4 -> 2"):
        run(config(tmp_path, model_json, steps=2, batch_size=2, resume="latest"))
    with pytest.raises(FileNotFoundError, match="not found"):
        run(config(tmp_path, model_json, resume=str(tmp_path / "missing.pt")))
    fresh = run(config(tmp_path / "new", model_json, steps=1, resume="latest"))  # nothing to resume yet
    assert fresh["start_step"] == 0 and fresh["steps"] == 1


def test_atomic_save_failure_keeps_previous_latest(tmp_path, monkeypatch):
    run_dir = ckpt.RunPaths(tmp_path)
    d = run_dir.checkpoints

    def state(step: int) -> ckpt.Checkpoint:
        return ckpt.Checkpoint("m", {}, {"payload": torch.full((3,), float(step))}, step=step)
    for step in range(1, 5):
        run_dir.save(state(step), keep=2)
    assert [s for s, _ in run_dir.step_checkpoints()] == [3, 4]

    def crash(obj, f):
        f.write(b"partial bytes")
        raise OSError("disk full")
    monkeypatch.setattr(ckpt.torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        run_dir.save(state(5), keep=2)
    monkeypatch.undo()
    assert ckpt.Checkpoint.load(d / "latest.pt").step == 4
    assert sorted(p.name for p in d.iterdir()) == ["latest.pt", "step_3.pt", "step_4.pt"]
    (d / ".tmp-left-by-a-kill.pt").write_bytes(b"x")
    assert run_dir.remove_partial_files() == 1


def test_an_injected_loader_factory_gets_checked_specs(model_json, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.csv"):  # cfg.data is checked before any loader
        run(config(tmp_path, model_json, data=f"csv:{tmp_path / 'missing.csv'}"))
    with pytest.raises(ValueError, match="takes at least one path"):  # val_data too
        run(config(tmp_path, model_json, val_data="csv:", val_every=1))


# a child that runs `hiclip train` on the fake loader of argv[1]; its own SIGINTs arrive at a named batch
CTRL_C_CHILD = """
import sys
import torch; torch.set_num_threads(1)
import train_fakes
from hiclip.data import loader
loader.make_loader = train_fakes.loaders(sys.argv[1])
from hiclip.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow  # runs `hiclip train` in a subprocess
@pytest.mark.parametrize("presses, status, stopped_at", [(2, 0, 4), (3, 130, 3)])
def test_repeated_ctrl_c_exits_quietly_with_the_checkpoint(model_json, tmp_path, presses, status, stopped_at):
    """Two presses: the first one's stop (step 4 finished and saved), no traceback; three: out at once,
    with the checkpoint of step 3 intact."""
    sigint = {2: "sigint2", 3: "sigint3"}[presses]
    argv = ["train", "--output-dir", str(tmp_path), "--model", model_json, "--data", "world", "--val-data", "none",
            "--batch-size", "4", "--steps", "8", "--save-every", "1", "--workers", "0", "--no-tensorboard",
            "--no-progress", "--warmup-steps", "2"]
    child = subprocess.run([sys.executable, "-c", CTRL_C_CHILD, f"fake:5:{sigint}@3", *argv],
                           env={**os.environ, "OMP_NUM_THREADS": "1",
                                "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get(
                                    "PYTHONPATH", "")])}, capture_output=True, text=True)
    assert child.returncode == status, child.stderr
    assert "Traceback" not in child.stderr
    errors = [line for line in child.stderr.splitlines() if not line.startswith(("INFO ", "WARNING "))]
    assert errors == ([] if presses == 2 else ["hiclip train: interrupted; the last complete checkpoint is kept"])
    assert ckpt.Checkpoint.load(tmp_path / "checkpoints" / "latest.pt").step == stopped_at
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".tmp-")]
