"""Compatibility with CLIP_benchmark for users who evaluate hiclip models with it.

CLIP_benchmark 1.6.2's ``metrics.zeroshot_classification.accuracy`` converts a
one-element, one-dimensional array with ``float()``, which NumPy >= 2.4 refuses
(``TypeError: only 0-dimensional arrays can be converted to Python scalars``), so its
zero-shot classification and linear probe crash on any model. Upstream issue:
LAION-AI/CLIP_benchmark#147 ("Zeroshot-classification accuracy function dimensionality
bug"), open at the time of writing. :func:`patch_clip_benchmark` replaces the function
(in the two modules that use it) with one that computes the same top-k accuracies; the
other way out is ``pip install "numpy<2.4"``.
"""
from __future__ import annotations

import importlib
from collections.abc import Sequence

import torch

_USERS = ("clip_benchmark.metrics.zeroshot_classification", "clip_benchmark.metrics.linear_probe")


def topk_accuracy(output: torch.Tensor, target: torch.Tensor, topk: Sequence[int] = (1,)) -> list[float]:
    """Fraction of rows of ``output`` (N, C) whose ``target`` (N,) is among the k highest, per k."""
    pred = output.topk(max(topk), 1, True, True)[1].t()
    correct = pred.eq(target.view(1, -1).expand_as(pred))
    return [correct[:k].reshape(-1).float().sum().item() / len(target) for k in topk]


def clip_benchmark_needs_patch() -> bool:
    """Whether the installed CLIP_benchmark's ``accuracy`` fails under this NumPy."""
    module = importlib.import_module(_USERS[0])
    try:
        module.accuracy(torch.eye(2), torch.arange(2), topk=(1,))
    except TypeError:
        return True
    return False


def patch_clip_benchmark() -> bool:
    """Make CLIP_benchmark's zero-shot and linear-probe metrics work under NumPy >= 2.4 (module
    docstring). Returns True when it patched, False when nothing needed it; ImportError when
    CLIP_benchmark is not installed."""
    if not clip_benchmark_needs_patch():
        return False
    for name in _USERS:
        importlib.import_module(name).accuracy = topk_accuracy
    return True
