"""hiclip.runlock: one writer per output folder, across real processes (synchronised by pipes)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hiclip.cli import main
from hiclip.runlock import LOCK_NAME, FolderInUse, folder_lock

RUNLOCK = str(Path(__file__).parents[1] / "src" / "hiclip" / "runlock.py")

# holds the lock of argv[1], says so on stdout, then waits for stdin to close (or, with "fork",
# forks a child that waits on stdin and SIGKILLs itself while holding the lock, once the child
# has come out of fork -- its at-fork hooks, which close its copy of the lock, have run then --
# and said so on a pipe: no race with a child not yet scheduled); the module is loaded from its
# file, without the package (and torch)
HOLDER = f"""
import importlib.util, os, signal, sys
spec = importlib.util.spec_from_file_location("runlock", {RUNLOCK!r})
runlock = importlib.util.module_from_spec(spec)
spec.loader.exec_module(runlock)
with runlock.folder_lock(sys.argv[1]):
    if sys.argv[2:] == ["fork"]:
        ready_r, ready_w = os.pipe()
        child = os.fork()
        if child == 0:
            os.write(ready_w, b"1")
            sys.stdin.read()
            os._exit(0)
        assert os.read(ready_r, 1) == b"1"
        print("locked", child, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    print("locked", os.getpid(), flush=True)
    sys.stdin.read()
"""


def hold(folder: Path, *extra: str) -> tuple[subprocess.Popen, int]:
    """A process holding ``folder``'s lock; -> (it, the PID it reports) once the lock is held."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), *extra], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    word, pid = proc.stdout.readline().split()
    assert word == "locked"
    return proc, int(pid)


def release(proc: subprocess.Popen) -> int:
    proc.stdin.close()
    return proc.wait()


def test_a_second_process_is_refused_while_the_first_lives(tmp_path):
    proc, pid = hold(tmp_path / "run")
    try:
        with pytest.raises(FolderInUse) as e:
            with folder_lock(tmp_path / "run"):
                pass
        assert str(e.value) == (f"{tmp_path / 'run'} is in use by another hiclip run (PID {pid}); wait for it "
                                "to end or choose another output folder")
    finally:
        assert release(proc) == 0
    with folder_lock(tmp_path / "run") as folder:  # free once the holder has ended
        assert (folder / LOCK_NAME).read_text() == f"{os.getpid()}\n"


def test_a_killed_holder_leaves_no_stale_lock_even_with_a_forked_child_alive(tmp_path):
    proc, grandchild = hold(tmp_path / "run", "fork")
    try:
        assert proc.wait() == -signal.SIGKILL
        os.kill(grandchild, 0)  # the forked child still lives (it waits on the pipe)...
        with folder_lock(tmp_path / "run"):  # ... and holds no lock
            pass
    finally:
        assert release(proc) == -signal.SIGKILL
        proc.stdout.close()


def test_one_process_cannot_take_a_folder_twice(tmp_path):
    with folder_lock(tmp_path):
        with pytest.raises(FolderInUse, match=f"PID {os.getpid()}"):
            with folder_lock(tmp_path):
                pass


@pytest.mark.parametrize("command", ["train", "finetune", "demo", "prepare"])
def test_every_writing_command_refuses_a_folder_in_use(tmp_path, capsys, command):
    out = tmp_path / "out"
    csv = tmp_path / "rows.csv"
    csv.write_text("filepath,title\nmissing.png,a red square\n")
    argv = {"train": ["train", "--output-dir", str(out), "--model", "CLIP-Tiny", "--steps", "1", "--workers", "0"],
            "finetune": ["finetune", "--task", "world-vqa", "--output-dir", str(out), "--steps", "1",
                         "--workers", "0"],
            "demo": ["demo", "--out", str(out)],
            "prepare": ["prepare", str(csv), "--out", str(out)]}[command]
    proc, pid = hold(out)
    try:
        assert main(argv) == 2
    finally:
        release(proc)
    err = capsys.readouterr().err.splitlines()
    assert err == [f"hiclip {command}: error: {out} is in use by another hiclip run (PID {pid}); wait for it to "
                   "end or choose another output folder"]
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # no work was done
