"""Features of images and texts for every evaluation, and image features cached on disk.

The encoders (:func:`encode_images`, :func:`encode_texts`, :func:`extract_image_features`)
take any :class:`hiclip.protocols.ImageTextModel` and return L2-normalised float32 features
on the CPU; zero-shot classification, retrieval, compositional tests and the linear probe
all use them. :func:`image_features` caches image features, so that rerunning a linear probe
does not re-encode. A cache entry is keyed by the model's weights (a SHA-256 of every tensor
of its state dict, so any change of weights is a new key), the dataset (name, split, sample
subset, size) and the image transform (its ``repr``, which lists sizes and normalisation).
It is a ``torch.save``'d dict of tensors read back with ``weights_only=True``, beside a JSON
file holding the key in readable form.
"""
from __future__ import annotations

import hashlib
import json
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from hiclip.checkpoint import atomic_save
from hiclip.protocols import ImageTextModel


def _autocast(device: str | torch.device, amp: bool) -> torch.autocast:
    return torch.autocast(torch.device(device).type, enabled=amp)


def iter_batches(dataloader: DataLoader, desc: str) -> Iterator[tuple]:
    """Batches of a loader with a progress bar, leaving out empty (all-unreadable) batches."""
    for batch in tqdm(dataloader, desc=desc, leave=False):
        if batch is not None:
            yield batch


def count_skipped(dataloader: DataLoader, kept: int) -> int:
    """Items of the loader's dataset that produced no output."""
    return len(dataloader.dataset) - kept


@torch.no_grad()
def encode_images(model: ImageTextModel, images: torch.Tensor, device: str | torch.device, amp: bool = False
                  ) -> torch.Tensor:
    """Images (B, 3, H, W) -> L2-normalised float32 features on CPU (B, E)."""
    with _autocast(device, amp):
        features = model.encode_image(images.to(device))
    return F.normalize(features.float(), dim=-1).cpu()


@torch.no_grad()
def encode_texts(model: ImageTextModel, tokenizer: Callable, texts: Sequence[str], device: str | torch.device,
                 amp: bool = False) -> torch.Tensor:
    """Strings (B,) -> L2-normalised float32 features on CPU (B, E)."""
    with _autocast(device, amp):
        features = model.encode_text(tokenizer(list(texts)).to(device))
    return F.normalize(features.float(), dim=-1).cpu()


def extract_image_features(model: ImageTextModel, dataloader: DataLoader, device: str | torch.device,
                           amp: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Loader of (images, labels) -> features (N, E) and labels (N,) of the readable images."""
    features, labels = [], []
    for images, target in iter_batches(dataloader, "image features"):
        features.append(encode_images(model, images, device, amp))
        labels.append(torch.as_tensor(target))
    if not features:
        raise ValueError("no readable images in the dataset "
                         f"({len(dataloader.dataset)} items, all skipped)")
    return torch.cat(features), torch.cat(labels)


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


def image_features(model: ImageTextModel, dataloader: DataLoader, device: str | torch.device, amp: bool = False,
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
