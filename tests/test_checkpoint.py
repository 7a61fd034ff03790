"""hiclip.checkpoint: refusing code-carrying files, old files, RNG states, safetensors, run layout."""
import errno
import pickle
import random

import numpy as np
import pytest
import torch

import hiclip
from hiclip import checkpoint as ckpt
from hiclip.cli import main


class _CreatesFile:
    """Unpickling this object opens (so creates) ``path``: what a malicious checkpoint does."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def tiny_state():
    torch.manual_seed(0)
    model = hiclip.create_model("CLIP-Tiny")
    return model, {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_crafted_pickle_is_refused_and_runs_nothing(tmp_path, writer, capsys):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    payload = {"model": "CLIP-Tiny", "state_dict": {"w": torch.zeros(1)}, "x": _CreatesFile(marker)}
    if writer == "torch":
        torch.save(payload, evil)
    else:
        evil.write_bytes(pickle.dumps(payload))
    with pytest.raises(ckpt.UnsafeCheckpointError, match="refusing to load it, because unpickling them could run"):
        ckpt.Checkpoint.load(evil)
    with pytest.raises(ckpt.UnsafeCheckpointError):
        hiclip.create_model("CLIP-Tiny", pretrained=evil)
    assert main(["eval", "--model", str(evil), "--tasks", "compositional"]) == 2
    err = capsys.readouterr().err
    assert "refusing to load it" in err and "Traceback" not in err
    assert not marker.exists()
    if writer == "torch":  # the zip format lets the message name the object
        with pytest.raises(ckpt.UnsafeCheckpointError, match=r"\(io\.open\)"):
            ckpt.read_info(evil)


def test_version0_checkpoint_loads_and_restores_rng(tmp_path, tiny_state):
    """A file as the code before format versions wrote it: NumPy's RNG state as a tuple with an ndarray."""
    model, sd = tiny_state
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    old = {"model": "CLIP-Tiny", "model_config": model.cfg.to_dict(), "state_dict": sd, "optimizer": {"state": {}},
           "rng": [rng], "skips": [{"empty caption": 2}], "step": 5, "epoch": 1, "batch_in_epoch": 2,
           "world_size": 1, "batch_size": 4, "accum_freq": 1, "config": {"lr": 1e-3}, "scaler": None}
    torch.save(old, tmp_path / "old.pt")
    state = ckpt.Checkpoint.load(tmp_path / "old.pt")
    assert state.format_version == 0 and state.step == 5 and state.resumable and state.objective == {}
    ckpt.set_rng_state(state.rng[0])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    assert ckpt.read_info(tmp_path / "old.pt")["step"] == 5


def test_save_load_round_trip_with_objective_and_rng(tmp_path, tiny_state):
    model, sd = tiny_state
    random.seed(4), np.random.seed(5), torch.manual_seed(6)
    state = ckpt.Checkpoint("CLIP-Tiny", model.cfg.to_dict(), sd, step=7, optimizer={"state": {}},
                            rng=[ckpt.rng_state()], objective={"queue": torch.arange(6.0).view(2, 3)})
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    state.save(tmp_path / "c.pt")
    assert torch.serialization.get_unsafe_globals_in_checkpoint(tmp_path / "c.pt") == []  # plain data only
    again = ckpt.Checkpoint.load(tmp_path / "c.pt")
    assert again.format_version == ckpt.FORMAT_VERSION and again.step == 7
    assert torch.equal(again.objective["queue"], torch.arange(6.0).view(2, 3))
    ckpt.set_rng_state(again.rng[0])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_bad_and_newer_files(tmp_path, tiny_state):
    model, sd = tiny_state
    torch.save(sd, tmp_path / "bare.pt")
    with pytest.raises(ValueError, match="is not a hiclip checkpoint"):
        ckpt.Checkpoint.load(tmp_path / "bare.pt")
    future = ckpt.Checkpoint("CLIP-Tiny", {}, sd).to_dict() | {"format_version": ckpt.FORMAT_VERSION + 1}
    torch.save(future, tmp_path / "future.pt")
    with pytest.raises(ValueError, match="upgrade hiclip"):
        ckpt.Checkpoint.load(tmp_path / "future.pt")
    scripted = torch.jit.script(torch.nn.Linear(2, 2))
    scripted.save(str(tmp_path / "jit.pt"))
    with pytest.raises(ValueError, match="TorchScript archive"):
        hiclip.create_model("CLIP-Tiny", pretrained=tmp_path / "jit.pt")


def test_safetensors_export_and_load(tmp_path, tiny_state, capsys):
    model, sd = tiny_state
    ckpt.Checkpoint("CLIP-Tiny", model.cfg.to_dict(), sd, step=3).save(tmp_path / "c.pt")
    assert main(["export", str(tmp_path / "c.pt"), "--out", str(tmp_path / "m.safetensors")]) == 0
    assert "m.safetensors" in capsys.readouterr().out
    again = hiclip.create_model("CLIP-Tiny", pretrained=tmp_path / "m.safetensors")
    for k, v in again.state_dict().items():
        assert torch.equal(v, sd[k]), k
    assert ckpt.read_info(tmp_path / "m.safetensors") == {"model": "CLIP-Tiny", "model_config": model.cfg.to_dict(),
                                                          "step": 3}
    assert hiclip.factory.resolve_model(str(tmp_path / "m.safetensors")) == ("CLIP-Tiny", tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match="checkpoint of model 'CLIP-Tiny', not 'HiCLIP-Tiny'"):
        hiclip.create_model("HiCLIP-Tiny", pretrained=tmp_path / "m.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(ValueError, match="not a readable .safetensors file"):
        hiclip.create_model("CLIP-Tiny", pretrained=tmp_path / "bad.safetensors")
    assert main(["export", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "x.safetensors")]) == 2


def test_run_paths(tmp_path):
    assert ckpt.run_name("HiCLIP-Tiny", 2) == "HiCLIP-Tiny-s2"
    run = ckpt.RunPaths(tmp_path / "r")
    assert run.latest == tmp_path / "r" / "checkpoints" / "latest.pt" and run.step(3).name == "step_3.pt"
    assert run.resolve_resume("latest") is None and run.step_checkpoints() == []
    with pytest.raises(FileNotFoundError, match="checkpoint file not found"):
        run.resolve_resume(str(tmp_path / "nope.pt"))


def _run_with_steps(tmp_path, steps=(1, 2, 3), keep=2) -> ckpt.RunPaths:
    run = ckpt.RunPaths(tmp_path)
    for step in steps:
        run.save(ckpt.Checkpoint("m", {}, {"w": torch.full((2000,), float(step))}, step=step), keep=keep)
    return run


class _FullDisk:
    """A binary file that takes ``room`` bytes, then fails each write with ENOSPC (as a full disk)."""

    def __init__(self, f, room: int):
        self.f, self.room = f, room

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def test_a_full_disk_during_a_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    run = _run_with_steps(tmp_path)
    before = {p.name: p.read_bytes() for p in run.checkpoints.iterdir()}
    real_fdopen = ckpt.os.fdopen
    monkeypatch.setattr(ckpt.os, "fdopen", lambda fd, mode: _FullDisk(real_fdopen(fd, mode), room=3000))
    with pytest.raises(ckpt.CheckpointWriteError) as e:
        run.save(ckpt.Checkpoint("m", {}, {"w": torch.zeros(2000)}, step=4), keep=2)
    assert str(e.value) == (f"cannot write {run.step(4)}: no space left on device; the partial file was removed "
                            "and the previous checkpoint is kept") and e.value.errno == errno.ENOSPC
    assert {p.name: p.read_bytes() for p in run.checkpoints.iterdir()} == before  # no partial file, nothing pruned
    assert ckpt.Checkpoint.load(run.latest).step == 3


@pytest.mark.parametrize("cut", ["empty", "half"])
def test_a_cut_latest_names_the_file_and_the_previous_checkpoint(tmp_path, cut):
    run = _run_with_steps(tmp_path)
    data = run.step(3).read_bytes()
    run.step(3).write_bytes(b"" if cut == "empty" else data[:len(data) // 2])  # latest.pt is its hard link
    what = "empty" if cut == "empty" else "truncated"
    expected = (f"{run.latest} is {what} (a write was cut short); the previous checkpoint is {run.step(2)}: "
                f"resume with --resume {run.step(2)}")
    with pytest.raises(ValueError) as e:
        ckpt.Checkpoint.load(run.latest)
    assert str(e.value) == expected
    assert ckpt.Checkpoint.load(run.step(2)).step == 2


def test_a_task_head_is_typed_in_memory_and_plain_data_on_disk(tmp_path, tiny_state):
    model, sd = tiny_state
    head = ckpt.TaskHead(task="world-vqa", answers=["yes", "no"], head={"kind": "mlp", "num_answers": 2},
                         head_state_dict={"w": torch.arange(4.0)}, freeze_encoders=True)
    ckpt.Checkpoint("CLIP-Tiny", model.cfg.to_dict(), sd, vl=head).save(tmp_path / "c.pt")
    raw = torch.load(tmp_path / "c.pt", weights_only=True)  # what another reader sees: a plain dict
    assert raw["vl"]["answers"] == ["yes", "no"] and raw["vl"]["freeze_encoders"] is True
    again = ckpt.Checkpoint.load(tmp_path / "c.pt").vl
    assert isinstance(again, ckpt.TaskHead) and again.task == "world-vqa" and again.head == head.head
    assert torch.equal(again.head_state_dict["w"], torch.arange(4.0))
    assert ckpt.Checkpoint.load(tmp_path / "c.pt").to_dict()["vl"].keys() == raw["vl"].keys()
    raw["vl"].pop("head_state_dict")
    torch.save(raw, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=r"bad\.pt has no usable fine-tuned task head .*head_state_dict"):
        ckpt.Checkpoint.load(tmp_path / "bad.pt")
