"""Fixtures shared by every test folder; tests marked ``cuda`` need a CUDA GPU and are skipped
without one (benchmarks/gpu_check.sh runs them)."""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pytest
import torch
from PIL import Image


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def _huge_png(path: Path, width: int = 30_000, height: int = 20_000) -> Path:
    """A tiny file whose PNG header declares width x height pixels (600 megapixels by default)."""
    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))
    return path


@pytest.fixture
def huge_png():
    """huge_png(path, width=30000, height=20000) writes a decompression-bomb PNG header."""
    return _huge_png
