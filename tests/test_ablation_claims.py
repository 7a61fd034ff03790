"""experiments/ablate_hierarchy.py shares runs between processes through claim files: a live
claim is respected, a claim of a finished process or a bare PID of an older version is taken over.
A shipped config named after an ablation row is that row's config."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hiclip.config import ModelCfg, load_config

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "ablate_hierarchy.py"
LINUX = pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="process tokens read /proc (Linux)")


@pytest.fixture(scope="module")
def ablate():
    spec = importlib.util.spec_from_file_location("ablate_hierarchy", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@LINUX
def test_live_claim_is_respected(ablate, tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        token = ablate._process_token(child.pid)
        assert token is not None and token.split(":")[2] == str(child.pid)
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "claim").write_text(token)
        assert ablate._claim(tmp_path / "run") is False
    finally:
        child.kill()
        child.wait()
    # the same PID, now gone: the claim is stale and taken over by this process
    assert ablate._process_token(child.pid) is None
    assert ablate._claim(tmp_path / "run") is True
    assert (tmp_path / "run" / "claim").read_text() == ablate._process_token(os.getpid())


@LINUX
def test_new_and_old_format_claims(ablate, tmp_path):
    assert ablate._claim(tmp_path / "fresh") is True  # created exclusively
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "claim").write_text("1")  # a bare PID (PID 1 always lives): cannot be verified
    assert ablate._claim(tmp_path / "old") is True


def test_without_proc_a_bare_pid_is_checked_by_signal(ablate, tmp_path, monkeypatch):
    monkeypatch.setattr(ablate, "_process_token", lambda pid: None)  # as on a system without /proc
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert ablate._claim_is_live(str(child.pid)) is True
    finally:
        child.kill()
        child.wait()
    assert ablate._claim_is_live(str(child.pid)) is False
    assert ablate._claim(tmp_path / "run") is True
    assert (tmp_path / "run" / "claim").read_text() == str(os.getpid())


def test_the_distance_candidate_config_is_the_ablated_row(ablate):
    """``HiCLIP-Tiny-Distance`` (design §5) is exactly what the ``distance_constituent`` row trained."""
    row = ModelCfg.from_dict(ablate.variant_config("distance_constituent"))
    assert row == load_config("HiCLIP-Tiny-Distance") != load_config("HiCLIP-Tiny")
