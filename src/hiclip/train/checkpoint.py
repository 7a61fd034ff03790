"""Checkpoints that survive crashes: atomic writes, ``latest.pt``, RNG states, pruning.

A checkpoint is a dict in the shape ``hiclip.create_model(name, pretrained=path)``
reads: ``{"model": name, "model_config", "state_dict", ...}`` plus the training state
(``optimizer``, ``scheduler``, ``scaler``, ``rng`` (one entry per rank), ``step``,
``epoch``, ``batch_in_epoch``, ``config`` ...). Every file is written to a temporary
file in the same directory, fsync'd and renamed over its target, so a crash at any
moment leaves either the old or the new file, never a partial one.
"""
from __future__ import annotations

import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

LATEST = "latest.pt"
_STEP_FILE = re.compile(r"^step_(\d+)\.pt$")
_TMP_PREFIX = ".tmp-"


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save(obj)`` to ``path`` via a temporary file, fsync and ``os.replace``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_TMP_PREFIX, suffix=".pt")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _atomic_alias(src: Path, dst: Path) -> None:
    """Make ``dst`` a copy of ``src`` atomically (a hard link where the filesystem allows)."""
    tmp = dst.with_name(f"{_TMP_PREFIX}{dst.name}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
    os.replace(tmp, dst)
    _fsync_dir(dst.parent)


def step_checkpoints(ckpt_dir: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every ``step_N.pt`` in ``ckpt_dir``, by step."""
    if not ckpt_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := _STEP_FILE.match(p.name))]
    return sorted(found)


def save_checkpoint(state: dict[str, Any], ckpt_dir: Path, keep: int) -> Path:
    """Write ``state`` as ``step_{state['step']}.pt``, point ``latest.pt`` at it, keep the last ``keep``."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    path = ckpt_dir / f"step_{state['step']}.pt"
    atomic_save(state, path)
    _atomic_alias(path, ckpt_dir / LATEST)
    for _, old in step_checkpoints(ckpt_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def remove_partial_files(ckpt_dir: Path) -> int:
    """Delete temporary files left by a write that was killed; returns how many."""
    if not ckpt_dir.is_dir():
        return 0
    stale = [p for p in ckpt_dir.iterdir() if p.name.startswith(_TMP_PREFIX)]
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)


def resolve_resume(resume: str, ckpt_dir: Path) -> Path | None:
    """``latest`` -> ``ckpt_dir/latest.pt`` (None when the run has no checkpoint yet); else the path."""
    if resume == "latest":
        latest = ckpt_dir / LATEST
        return latest if latest.is_file() else None
    path = Path(resume)
    if not path.is_file():
        raise FileNotFoundError(f"--resume: checkpoint file not found: {path}")
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a training checkpoint (CPU tensors); a file without training state is an error."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises many kinds for a bad file
        raise ValueError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}") from None
    needed = ("model", "model_config", "state_dict", "optimizer", "step", "epoch", "batch_in_epoch")
    missing = [k for k in needed if not (isinstance(state, dict) and k in state)]
    if missing:
        raise ValueError(f"{path} is not a hiclip training checkpoint (missing {missing}); "
                         "to start from its weights use --pretrained instead of --resume")
    return state


def rng_state() -> dict[str, Any]:
    """This process's Python, NumPy, torch (and CUDA) RNG states."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
