"""Image features cached on disk, so that rerunning a linear probe does not re-encode.

An entry is keyed by the model's weights (a SHA-256 of every tensor of its state dict,
so any change of weights is a new key), the dataset (name, split, sample subset, size)
and the image transform (its ``repr``, which lists sizes and normalisation). It is a
``torch.save``'d dict of tensors read back with ``weights_only=True``, beside a JSON file
holding the key in readable form.
"""
from __future__ import annotations

import hashlib
import json
import weakref
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from hiclip.checkpoint import atomic_save
from .zeroshot import count_skipped, extract_image_features

_FINGERPRINTS: "weakref.WeakKeyDictionary[torch.nn.Module, str]" = weakref.WeakKeyDictionary()


def model_fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 (hex, 16 characters) of the model's parameter names, shapes, dtypes and values."""
    if model not in _FINGERPRINTS:
        digest = hashlib.sha256()
        for name, tensor in model.state_dict().items():
            t = tensor.detach().cpu().contiguous()
            digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        _FINGERPRINTS[model] = digest.hexdigest()[:16]
    return _FINGERPRINTS[model]


def image_features(model: torch.nn.Module, dataloader: DataLoader, device: str | torch.device, amp: bool = False,
                   cache_dir: str | Path | None = None, key: dict[str, Any] | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """-> (features (N, E), labels (N,), skipped items) of a loader of (images, labels), from
    ``cache_dir`` when an entry for (model, ``key``, transform) is there, else encoded and stored."""
    if cache_dir is None:
        features, labels = extract_image_features(model, dataloader, device, amp)
        return features, labels, count_skipped(dataloader, len(labels))
    dataset = dataloader.dataset
    transform = getattr(getattr(dataset, "base", dataset), "transform", None)
    full = {"model": model_fingerprint(model), "transform": repr(transform), "items": len(dataset),
            "amp": amp, **(key or {})}
    name = hashlib.sha256(json.dumps(full, sort_keys=True, default=str).encode()).hexdigest()[:24]
    path = Path(cache_dir) / f"{name}.pt"
    if path.is_file():
        cached = torch.load(path, map_location="cpu", weights_only=True)
        return cached["features"], cached["labels"], int(cached["skipped"])
    features, labels = extract_image_features(model, dataloader, device, amp)
    skipped = count_skipped(dataloader, len(labels))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save({"features": features, "labels": labels, "skipped": skipped}, path)
    path.with_suffix(".json").write_text(json.dumps(full, indent=2, default=str) + "\n", encoding="utf-8")
    return features, labels, skipped
