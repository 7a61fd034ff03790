"""Bad input through ``hiclip.cli.main``: exit 2, exactly one line on stderr, no traceback, and no
file that existed before is changed (one table per writing command)."""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from hiclip import checkpoint as ckpt
from hiclip.cli import main

# trains on the embedded world in well under a second a step (CLIP's tokenizer, 16-pixel images)
TOWER = {"width": 32, "layers": 2, "heads": 2, "hierarchy": {"enabled": True}}
TINY_WORLD = {"embed_dim": 16, "vision_cfg": {"image_size": 16, "patch_size": 8, **TOWER},
              "text_cfg": {"context_length": 16, "vocab_size": 49408, **TOWER}}

TRAIN = ["--steps", "1", "--batch-size", "8", "--workers", "0", "--val-data", "none", "--no-tensorboard",
         "--no-progress", "--world-samples", "16"]


def model_json(tmp_path: Path, **changes) -> str:
    cfg = json.loads(json.dumps(TINY_WORLD))
    for key, value in changes.items():  # "text_cfg.context_length": 20000
        *parents, last = key.split(".")
        target = cfg
        for p in parents:
            target = target[p]
        target[last] = value
    path = tmp_path / "model.json"
    path.write_text(json.dumps(cfg))
    return str(path)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def run_bad(tmp_path: Path, capsys, argv: list[str], message: str) -> None:
    before = snapshot(tmp_path)
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert message in err, err
    after = snapshot(tmp_path)
    assert {k: after.get(k) for k in before} == before  # nothing that existed was changed


def a_file(tmp_path: Path) -> str:
    (tmp_path / "taken").write_text("my notes")
    return str(tmp_path / "taken")


def empty_latest(tmp_path: Path) -> str:
    run = ckpt.RunPaths(tmp_path / "run")
    for step in (1, 2):
        run.save(ckpt.Checkpoint("m", {}, {"w": ckpt.torch.zeros(3)}, step=step), keep=2)
    run.step(2).write_bytes(b"")  # latest.pt is its hard link
    return str(tmp_path / "run")


TRAIN_CASES = {  # name: (model changes, output folder maker, extra options, message)
    "zero layers": ({"vision_cfg.layers": 0}, None, [], "vision_cfg.layers = 0; allowed: an integer >= 1"),
    "negative width": ({"text_cfg.width": -32}, None, [], "text_cfg.width = -32"),
    "negative mlp": ({"vision_cfg.mlp_ratio": -4}, None, [], "vision_cfg.mlp_ratio = -4"),
    "hierarchy null": ({"text_cfg.hierarchy": None}, None, [], "text_cfg.hierarchy = null"),
    "list for object": ({"vision_cfg": [1, 2]}, None, [], "vision_cfg = [1, 2]"),
    "string for number": ({"embed_dim": "16"}, None, [], 'embed_dim = "16"; allowed: an integer'),
    "huge context": ({"text_cfg.context_length": 20000}, None, [], "text_cfg.context_length = 20000"),
    "heads not dividing": ({"text_cfg.heads": 3}, None, [], "text_cfg.heads = 3"),
    "output is a file": ({}, a_file, [], "is an existing file"),
    "empty latest.pt": ({}, empty_latest, ["--resume", "latest"], "is empty (a write was cut short); the previous "
                                                                  "checkpoint is"),
    "huge brace pattern": ({}, None, ["--data", "wds:x-{0..99999999}.tar"], "expands to 100000000 names"),
    "pattern matching nothing": ({}, None, ["--data", "wds:nowhere/s-{0..3}.tar"], "matches no file"),
}


@pytest.mark.parametrize("case", list(TRAIN_CASES))
def test_train_bad_input(tmp_path, capsys, case):
    changes, make_out, extra, message = TRAIN_CASES[case]
    out = make_out(tmp_path) if make_out else str(tmp_path / "out")
    run_bad(tmp_path, capsys, ["train", "--output-dir", out, "--model", model_json(tmp_path, **changes),
                               *TRAIN, *extra], message)


def test_train_read_only_output_folder(tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as root: permissions do not make a folder read-only")
        run_bad(tmp_path, capsys, ["train", "--output-dir", str(folder), "--model", model_json(tmp_path), *TRAIN],
                "is not writable")
    finally:
        folder.chmod(0o755)


def test_train_full_disk_during_the_save(tmp_path, capsys, monkeypatch):
    def full_disk(obj, f, *args, **kwargs):
        f.write(b"the first bytes")
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(ckpt.torch, "save", full_disk)
    run_bad(tmp_path, capsys, ["train", "--output-dir", str(tmp_path / "out"), "--model", model_json(tmp_path),
                               *TRAIN], "step_1.pt: no space left on device; the partial file was removed")
    assert not [p for p in (tmp_path / "out" / "checkpoints").iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.parametrize("command", ["finetune", "demo", "prepare"])
def test_other_writers_refuse_an_output_that_is_a_file(tmp_path, capsys, command):
    taken = a_file(tmp_path)
    (tmp_path / "rows.csv").write_text("filepath,title\nmissing.png,a red square\n")
    argv = {"finetune": ["finetune", "--task", "world-vqa", "--output-dir", taken, "--steps", "1", "--workers", "0"],
            "demo": ["demo", "--out", taken],
            "prepare": ["prepare", str(tmp_path / "rows.csv"), "--out", taken]}[command]
    run_bad(tmp_path, capsys, argv, f"output folder {taken} is an existing file")


def test_finetune_bad_model_config(tmp_path, capsys):
    run_bad(tmp_path, capsys, ["finetune", "--task", "world-vqa", "--output-dir", str(tmp_path / "out"),
                               "--model", model_json(tmp_path, **{"vision_cfg.hierarchy": None}), "--steps", "1"],
            "vision_cfg.hierarchy = null")
