"""Linear probe on frozen image features.

A ``sklearn.linear_model.LogisticRegression`` is fitted on the L2-normalised features of
the training images. Its inverse regularisation strength C is the value of ``c_grid``
with the best accuracy on a validation split carved (stratified when every class has at
least two examples) from the training set; ties go to the earliest value in the grid.
The probe is then refitted on train + validation with that C.

Metrics: ``lp_acc1`` (top-1 accuracy on the test set), ``lp_mean_per_class_recall``,
``best_C``, ``val_acc@C=<c>`` for each grid value, and ``skipped`` unreadable images.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader

from ..protocols import ImageTextModel
from .features import image_features

DEFAULT_C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)


def _fit(x: np.ndarray, y: np.ndarray, c: float, max_iter: int) -> LogisticRegression:
    return LogisticRegression(C=c, max_iter=max_iter).fit(x, y)


def _split(x: np.ndarray, y: np.ndarray, val_fraction: float, seed: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train / validation split, stratified when each class has two examples and the
    validation part can hold one of each."""
    counts = np.unique(y, return_counts=True)[1]
    n_val = int(np.ceil(val_fraction * len(y)))
    stratify = y if counts.min() >= 2 and len(counts) <= n_val <= len(y) - len(counts) else None
    return train_test_split(x, y, test_size=n_val, random_state=seed, stratify=stratify)


def fit_linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                     test_y: np.ndarray, c_grid: Sequence[float] = DEFAULT_C_GRID,
                     val_fraction: float = 0.2, seed: int = 0, max_iter: int = 1000
                     ) -> dict[str, float]:
    """Features train_x (N, D), labels train_y (N,), test_x (M, D), test_y (M,) -> metrics
    (module docstring)."""
    if not c_grid or not 0 < val_fraction < 1:
        raise ValueError(f"expected a non-empty C grid and 0 < val_fraction < 1, "
                         f"got {list(c_grid)} and {val_fraction}")
    if len(np.unique(train_y)) < 2:
        raise ValueError(f"expected at least 2 classes in the training labels, got {np.unique(train_y)}")
    fit_x, val_x, fit_y, val_y = _split(train_x, train_y, val_fraction, seed)
    metrics: dict[str, float] = {}
    for c in c_grid:
        metrics[f"val_acc@C={c:g}"] = float((_fit(fit_x, fit_y, c, max_iter).predict(val_x)
                                             == val_y).mean())
    best = max(c_grid, key=lambda c: metrics[f"val_acc@C={c:g}"])
    pred = _fit(train_x, train_y, best, max_iter).predict(test_x)
    metrics["lp_acc1"] = float((pred == test_y).mean())
    metrics["lp_mean_per_class_recall"] = float(balanced_accuracy_score(test_y, pred))
    metrics["best_C"] = float(best)
    return metrics


def evaluate(model: ImageTextModel, train_dataloader: DataLoader, test_dataloader: DataLoader,
             device: str | torch.device, amp: bool = False,
             c_grid: Sequence[float] = DEFAULT_C_GRID, val_fraction: float = 0.2,
             seed: int = 0, cache_dir: str | Path | None = None, cache_key: dict[str, Any] | None = None
             ) -> dict[str, float]:
    """Linear probe of a model's image features: loaders of (images (B, 3, H, W), labels (B,)).

    With ``cache_dir``, features are read from / written to it (:mod:`hiclip.eval.features`);
    ``cache_key`` names the dataset (its split is added per loader)."""
    key = cache_key or {}
    train_x, train_y, train_skips = image_features(model, train_dataloader, device, amp, cache_dir,
                                                   {**key, "split": "train"})
    test_x, test_y, test_skips = image_features(model, test_dataloader, device, amp, cache_dir,
                                                {**key, "split": "test"})
    metrics = fit_linear_probe(train_x.numpy(), train_y.numpy(), test_x.numpy(), test_y.numpy(),
                               c_grid, val_fraction, seed)
    metrics["skipped"] = train_skips + test_skips
    return metrics
