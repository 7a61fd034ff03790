"""One writer per output folder: an exclusive OS lock held for the whole run.

``train``, ``finetune``, ``demo`` and ``prepare`` hold :func:`folder_lock` on their output
folder. The lock is ``flock`` on ``FOLDER/.hiclip.lock``: the kernel drops it when the
holding process exits in any way (SIGKILL included), so a killed run never leaves a stale
lock and its folder can be resumed at once. The file keeps the holder's PID for the error
message of a second process. Forked children (data-loader or pool workers) close their copy
of the descriptor, so a lock never outlives the process that took it.

Taking the lock also checks that the folder can be written at all: a path that is a file, a
read-only file system or a folder without write permission fail here, before any work.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path
from typing import Iterator

LOCK_NAME = ".hiclip.lock"
_held: set[int] = set()  # descriptors of the locks this process holds


class FolderInUse(ValueError):
    """Another live process holds the folder's lock."""


def _close_in_child() -> None:
    for fd in _held:
        try:
            os.close(fd)  # closing (not unlocking) a duplicate leaves the parent's lock in place
        except OSError:
            pass
    _held.clear()


os.register_at_fork(after_in_child=_close_in_child)


def prepare_folder(folder: str | Path) -> Path:
    """Create ``folder`` (and parents) if needed; OSError / ValueError naming it when it cannot be
    a writable output folder."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"output folder {folder} is an existing file; choose a folder path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a parent is a file
        raise ValueError(f"cannot create output folder {folder}: a parent path is a file") from None
    except OSError as e:
        raise ValueError(f"cannot create output folder {folder}: {e.strerror}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"output folder {folder} is not writable (permission denied)")
    return folder


def _holder(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        pid = ""
    return f"PID {pid}" if pid.isdigit() else "a process that is still starting"


@contextlib.contextmanager
def folder_lock(folder: str | Path) -> Iterator[Path]:
    """Hold the exclusive lock of ``folder`` (created if needed) while the block runs; yields the folder.

    Raises :class:`FolderInUse` (naming the folder and the holder's PID) when another process
    holds it, ValueError when the folder cannot be written.
    """
    folder = prepare_folder(folder)
    path = folder / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        reason = "read-only file system" if e.errno == errno.EROFS else e.strerror
        raise ValueError(f"output folder {folder} is not writable ({reason})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise FolderInUse(f"{folder} is in use by another hiclip run ({_holder(path)}); wait for it to end "
                          "or choose another output folder") from None
    _held.add(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield folder
    finally:
        _held.discard(fd)
        os.close(fd)  # releases the lock
