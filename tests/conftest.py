"""Fixtures shared by every test folder; tests marked ``cuda`` need a CUDA GPU and are skipped
without one (benchmarks/gpu_check.sh runs them)."""
from __future__ import annotations

import io
import struct
import sys
import zlib
from pathlib import Path

import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))  # tests/_helpers.py, importable from every folder


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


class ByteTokenizer:
    """Reversible fake tokenizer: ``tok(captions)`` -> (B, context_length) the captions' UTF-8
    bytes, zero-padded; ``tok.decode(tokens)`` gives the captions back."""

    def __init__(self, context_length: int = 256) -> None:
        self.context_length = context_length

    def __call__(self, captions: list[str]) -> torch.Tensor:
        return torch.tensor([list(c.encode().ljust(self.context_length, b"\0")) for c in captions])

    @staticmethod
    def decode(tokens: torch.Tensor) -> list[str]:
        return [bytes(row.tolist()).rstrip(b"\0").decode() for row in tokens]


@pytest.fixture
def byte_tokenizer() -> ByteTokenizer:
    """The loaders' tokenizer in data tests: captions are read back from a batch's tokens."""
    return ByteTokenizer()


@pytest.fixture
def huge_png():
    """huge_png(path, width=30000, height=20000) writes a decompression-bomb PNG header."""
    return _huge_png


@pytest.fixture
def offline(monkeypatch):
    """No connection leaves this machine: a socket connecting to anything but loopback or a Unix
    socket raises; huggingface_hub is told it is offline (HF_HUB_OFFLINE=1)."""
    import ipaddress
    import socket

    real_connect = socket.socket.connect

    def connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0]
            if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
                raise AssertionError(f"a test tried to connect to {address}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
