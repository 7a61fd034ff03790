"""Helpers shared by test folders (importable everywhere: tests/conftest.py puts tests/ on the path)."""
from __future__ import annotations

from typing import Mapping

import torch


def assert_states_close(expected: Mapping[str, torch.Tensor], got: Mapping[str, torch.Tensor],
                        rel: float = 1e-5, abs: float = 1e-7) -> None:
    """Two state dicts hold the same keys and, per tensor, ``|got - expected| <= rel * |expected| + abs``
    in the Frobenius norm: float32 training's rounding differences are judged against the tensor's
    size, not element by element (where a near-zero entry would need a per-element absolute bound)."""
    assert set(got) == set(expected), f"keys differ: {sorted(set(got) ^ set(expected))}"
    for name, a in expected.items():
        a, b = a.double(), got[name].double()
        err, size = (b - a).norm().item(), a.norm().item()
        assert err <= rel * size + abs, f"{name}: |got - expected| = {err:.3g}, |expected| = {size:.3g}"
