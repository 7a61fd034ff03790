"""The one checkpoint format: :class:`Checkpoint`, safe loading, atomic saving, run layout.

On disk a checkpoint is a ``torch.save``'d dict of plain data (tensors, numbers, strings,
lists, dicts): the fields of :class:`Checkpoint` plus ``format_version``. Every file is
read with ``torch.load(weights_only=True)``; the only globals allowed beyond torch's own
are those of a NumPy array (the NumPy RNG state of version-0 files). A file holding any
other Python object is refused before any of it runs (:class:`UnsafeCheckpointError`).

Versions: 0, files written before the field existed (NumPy RNG state as a tuple holding
an ndarray); 1, the current one (RNG states as tensors and ints, ``objective`` state).

Writes go to a temporary file in the same directory, are fsync'd and renamed over the
target, so a crash leaves the old or the new file, never a partial one. A run directory
holds ``checkpoints/step_N.pt`` and ``checkpoints/latest.pt`` (see :class:`RunPaths`).
Plain weights also load from ``.safetensors`` files (:func:`export_safetensors`).
"""
from __future__ import annotations

import errno
import json
import os
import random
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

FORMAT_VERSION = 1
LATEST = "latest.pt"
_STEP_FILE = re.compile(r"^step_(\d+)\.pt$")
_TMP_PREFIX = ".tmp-"
_ALLOWED_GLOBALS = [np._core.multiarray._reconstruct, np.ndarray, np.dtype, np.dtypes.UInt32DType]
_DROP_KEYS = {"input_resolution", "context_length", "vocab_size"}  # OpenAI state-dict extras
_META = "hiclip."  # prefix of the metadata keys hiclip writes into .safetensors files


class UnsafeCheckpointError(ValueError):
    """The file holds Python objects a checkpoint never contains; it was not loaded."""


@dataclass
class TaskHead:
    """The ``vl`` part of a ``hiclip finetune`` checkpoint: the task (its spec) and answer classes,
    the head's config (``hiclip.vl.model.HeadCfg.to_dict()``) and weights, and whether the
    encoders were frozen. On disk it is a plain dict of these fields."""
    task: str
    answers: list[str]
    head: dict[str, Any]
    head_state_dict: dict[str, torch.Tensor]
    freeze_encoders: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Any, source: str | Path = "checkpoint") -> "TaskHead":
        """Check and type a loaded ``vl`` dict; ValueError naming ``source`` when it is not one."""
        need = {"task": str, "answers": list, "head": dict, "head_state_dict": dict}
        bad = [k for k, t in need.items() if not (isinstance(d, dict) and isinstance(d.get(k), t))]
        if bad:
            raise ValueError(f"{source} has no usable fine-tuned task head (its `vl` part lacks {bad})")
        return cls(**{k: d[k] for k in need}, freeze_encoders=bool(d.get("freeze_encoders", False)))


@dataclass
class Checkpoint:
    """A model's weights and, for a training checkpoint, everything an exact resume needs.

    ``model``: the model name or JSON config path; ``model_config``: ``ModelCfg.to_dict()``;
    ``optimizer`` / ``scheduler`` / ``scaler``: their ``state_dict()``s (None outside
    training); ``objective``: extra state of the training objective (tensors by name, e.g.
    a feature queue); ``vl``: a fine-tuned task head (:class:`TaskHead`); ``rng`` and ``skips``: one entry per rank; ``config``: the run's config as a dict.
    """
    model: str
    model_config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    optimizer: dict[str, Any] | None = None
    scheduler: dict[str, Any] | None = None
    scaler: dict[str, Any] | None = None
    objective: dict[str, torch.Tensor] = field(default_factory=dict)
    vl: TaskHead | None = None
    rng: list[dict[str, Any]] = field(default_factory=list)
    skips: list[dict[str, int]] = field(default_factory=list)
    world_size: int = 1
    batch_size: int | None = None
    accum_freq: int = 1
    config: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @property
    def resumable(self) -> bool:
        """Whether it holds the training state (optimizer, RNG) that ``--resume`` needs."""
        return self.optimizer is not None and bool(self.rng)

    def to_dict(self) -> dict[str, Any]:
        """The on-disk dict (shares the tensors, copies nothing)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        return d | {"vl": self.vl.to_dict() if self.vl is not None else None}

    @classmethod
    def from_dict(cls, d: Any, source: str | Path = "checkpoint") -> "Checkpoint":
        """Check and type a loaded dict; ValueError naming ``source`` when it is not a checkpoint."""
        missing = [k for k in ("model", "model_config", "state_dict") if not (isinstance(d, dict) and k in d)]
        if missing:
            raise ValueError(f"{source} is not a hiclip checkpoint (missing {missing})")
        version = d.get("format_version", 0)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ValueError(f"{source} has checkpoint format {version!r}; this hiclip reads formats "
                             f"0..{FORMAT_VERSION}: upgrade hiclip")
        known = {f.name for f in fields(cls)}
        vl = None if d.get("vl") is None else TaskHead.from_dict(d["vl"], source)
        return cls(**{k: v for k, v in d.items() if k in known} | {"format_version": version, "vl": vl})

    def save(self, path: str | Path) -> Path:
        """Write atomically to ``path`` in the current format; returns the path."""
        self.format_version = FORMAT_VERSION
        atomic_save(self.to_dict(), Path(path))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "Checkpoint":
        """Read a checkpoint safely (CPU tensors); ValueError for anything else."""
        return cls.from_dict(safe_load(path), path)


def safe_load(path: str | Path, mmap: bool = False) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU with hiclip's allowlist and clear errors.

    Raises FileNotFoundError, :class:`UnsafeCheckpointError` (code-carrying pickle, nothing
    run) or ValueError (not a torch file, TorchScript archive).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint / weights file not found: {path}")
    try:
        with torch.serialization.safe_globals(_ALLOWED_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True,
                              mmap=mmap and zipfile.is_zipfile(path))
    except Exception as e:  # torch raises many kinds for a bad file
        text = str(e)
    if not zipfile.is_zipfile(path) and _looks_cut(path):
        raise ValueError(f"{path} is {'empty' if path.stat().st_size == 0 else 'truncated'} (a write was cut "
                         f"short){_previous_hint(path)}") from None
    if "Weights only load failed" in text:
        try:
            names = ", ".join(torch.serialization.get_unsafe_globals_in_checkpoint(path)) or "unknown"
        except Exception:  # not a zip file: the pickle itself names nothing we can list
            names = "unknown"
        raise UnsafeCheckpointError(
            f"{path} holds Python objects that no hiclip or open_clip checkpoint contains ({names}); refusing "
            "to load it, because unpickling them could run code. Only tensors, numbers, strings, lists and "
            "dicts are read. If you wrote this file yourself, save model.state_dict() instead.") from None
    if "TorchScript" in text:
        raise ValueError(f"{path} is a TorchScript archive (like OpenAI's released CLIP files); hiclip reads "
                         "state dicts: convert it once with torch.save(torch.jit.load(path, map_location='cpu')"
                         ".state_dict(), 'weights.pt')") from None
    first = text.strip().splitlines()[0][:200] if text.strip() else "unreadable"
    raise ValueError(f"{path} is not a torch checkpoint or state dict ({first})") from None


def _looks_cut(path: Path) -> bool:
    """Whether ``path`` is empty, or starts like a torch zip archive but lacks its end."""
    with path.open("rb") as f:
        head = f.read(4)
    return not head or head == b"PK\x03\x04"


def _previous_hint(path: Path) -> str:
    """'; the previous checkpoint is .../step_N.pt' for a file of a run folder that has another one."""
    others = [p for _, p in RunPaths(path.parent.parent).step_checkpoints()
              if p.parent == path.parent and not os.path.samefile(p, path)]
    return f"; the previous checkpoint is {others[-1]}: resume with --resume {others[-1]}" if others else ""


def _clean(sd: dict[str, Any], path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{path} does not hold a state dict (a dict of parameter name -> tensor), "
                         f"got {type(sd).__name__}")
    return {k.removeprefix("module."): v for k, v in sd.items() if k not in _DROP_KEYS}


def _safetensors_info(path: Path) -> dict[str, Any]:
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for a bad header
        raise ValueError(f"{path} is not a readable .safetensors file ({e})") from None
    return {k[len(_META):]: json.loads(v) for k, v in meta.items() if k.startswith(_META)}


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Any weights file -> (state dict without ``module.`` prefixes, other fields such as ``model``).

    A ``.safetensors`` file (fields from its metadata), a hiclip checkpoint, or a plain
    open_clip / OpenAI-format state dict (no other fields).
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint / weights file not found: {path}")
        info = _safetensors_info(path)
        return _clean(load_file(str(path)), path), info
    obj = safe_load(path)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        return _clean(obj["state_dict"], path), {k: v for k, v in obj.items() if k != "state_dict"}
    return _clean(obj, path), {}


def read_info(path: str | Path) -> dict[str, Any]:
    """The non-weight fields of a weights file ({} for a bare state dict), memory-mapped: asking a
    large checkpoint for its model name does not read its weights."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return _safetensors_info(path)
    obj = safe_load(path, mmap=True)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        return {k: v for k, v in obj.items() if k != "state_dict"}
    return {}


def export_safetensors(src: str | Path, out: str | Path) -> Path:
    """Write the weights of ``src`` (any file :func:`read_weights` reads) to a ``.safetensors``
    file, with the model name, config and step in its metadata."""
    sd, info = read_weights(src)
    meta = {_META + k: json.dumps(info[k]) for k in ("model", "model_config", "step") if k in info}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().clone() for k, v in sd.items()}  # no shared storage
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=_TMP_PREFIX, suffix=".safetensors")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"format": "pt", **meta})
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (full disk, I/O error); the previous files are unchanged."""

    def __str__(self) -> str:
        return str(self.strerror)


class _Writer:
    """A binary file that remembers the first OSError of a write (torch.save reports it as a RuntimeError)."""

    def __init__(self, f: Any):
        self.f, self.error = f, None

    def write(self, data: bytes) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = self.error or e
            raise

    def flush(self) -> None:
        self.f.flush()


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save(obj)`` to ``path`` via a temporary file, fsync and ``os.replace``.

    A failed write (full disk...) removes the temporary file and raises
    :class:`CheckpointWriteError` naming ``path``; an existing ``path`` is left as it was.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_TMP_PREFIX, suffix=".pt")
    writer = None
    try:
        with os.fdopen(fd, "wb") as f:
            writer = _Writer(f)
            torch.save(obj, writer)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        cause = writer.error if writer and writer.error else e
        if isinstance(cause, OSError):
            reason = "no space left on device" if cause.errno == errno.ENOSPC else (cause.strerror or str(cause))
            raise CheckpointWriteError(cause.errno, f"cannot write {path}: {reason}; the partial file was "
                                       "removed and the previous checkpoint is kept") from None
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


def run_name(model: str, seed: int) -> str:
    """The run folder name of ``model`` trained with ``seed``: ``{model}-s{seed}``."""
    return f"{model}-s{seed}"


@dataclass(frozen=True)
class RunPaths:
    """The layout of one training run directory."""
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def latest(self) -> Path:
        return self.checkpoints / LATEST

    def step(self, n: int) -> Path:
        return self.checkpoints / f"step_{n}.pt"

    def step_checkpoints(self) -> list[tuple[int, Path]]:
        """``(step, path)`` of every ``step_N.pt``, by step."""
        if not self.checkpoints.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.checkpoints.iterdir() if (m := _STEP_FILE.match(p.name))]
        return sorted(found)

    def save(self, checkpoint: Checkpoint, keep: int) -> Path:
        """Write ``step_N.pt``, point ``latest.pt`` at it, keep the last ``keep`` step files.

        In that order: a crash at any point leaves a ``latest.pt`` that loads (the previous or
        the new one) and at most ``keep + 1`` step files, which the next save prunes to ``keep``.
        """
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        path = checkpoint.save(self.step(checkpoint.step))
        _atomic_alias(path, self.latest)
        self.prune(keep)
        return path

    def prune(self, keep: int) -> None:
        """Delete all but the last ``keep`` step files."""
        for _, old in self.step_checkpoints()[:-keep]:
            old.unlink(missing_ok=True)

    def remove_partial_files(self) -> int:
        """Delete temporary files left by a write that was killed; returns how many."""
        if not self.checkpoints.is_dir():
            return 0
        stale = [p for p in self.checkpoints.iterdir() if p.name.startswith(_TMP_PREFIX)]
        for p in stale:
            p.unlink(missing_ok=True)
        return len(stale)

    def resolve_resume(self, resume: str) -> Path | None:
        """``latest`` -> ``latest.pt`` (None when the run has no checkpoint yet); else the path."""
        if resume == "latest":
            return self.latest if self.latest.is_file() else None
        path = Path(resume)
        if not path.is_file():
            raise FileNotFoundError(f"--resume: checkpoint file not found: {path}")
        return path


def rng_state() -> dict[str, Any]:
    """This process's Python, NumPy, torch (and CUDA) RNG states, as plain data and tensors."""
    np_state = np.random.get_state(legacy=False)
    np_state["state"]["key"] = torch.from_numpy(np_state["state"]["key"].astype(np.int64))
    state = {"python": random.getstate(), "numpy": np_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` returned (or a version-0 checkpoint's NumPy tuple)."""
    random.setstate(state["python"])
    np_state = state["numpy"]
    if isinstance(np_state, dict):
        key = np.asarray(np_state["state"]["key"], dtype=np.int64).astype(np.uint32)
        np_state = {**np_state, "state": {**np_state["state"], "key": key}}
    np.random.set_state(np_state)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
