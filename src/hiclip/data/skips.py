"""Per-sample decoding shared by the loaders: skip reasons, checks, seeded augmentation.

A bad sample raises :class:`Skip` with one of the ``REASONS``; loaders catch it, count
the reason and go on with the next sample.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

UNREADABLE_IMAGE = "unreadable image"
IMAGE_TOO_LARGE = "image too large"
MISSING_IMAGE = "missing image file"
EMPTY_CAPTION = "empty caption"
CAPTION_NOT_UTF8 = "caption not UTF-8"
NO_CAPTION = "no caption"
NO_IMAGE = "no image"
TRUNCATED_TAR = "truncated tar"
REASONS = (UNREADABLE_IMAGE, IMAGE_TOO_LARGE, MISSING_IMAGE, EMPTY_CAPTION, CAPTION_NOT_UTF8, NO_CAPTION,
           NO_IMAGE, TRUNCATED_TAR)

_MASK64 = (1 << 64) - 1


class Skip(Exception):
    """A sample that cannot be used; ``reason`` is one of ``REASONS``."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def check_caption(raw: bytes | str | None) -> str:
    """The stripped caption; Skip for None (no caption), bad UTF-8 or an empty caption.

    A ``str`` counts as not UTF-8 when it holds lone surrogates, which is how text read
    with ``errors="surrogateescape"`` keeps its undecodable bytes.
    """
    if raw is None:
        raise Skip(NO_CAPTION)
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        text.encode("utf-8")
    except UnicodeError:
        raise Skip(CAPTION_NOT_UTF8) from None
    text = text.strip()
    if not text:
        raise Skip(EMPTY_CAPTION)
    return text


def sample_seed(*key: int) -> int:
    """A 64-bit seed derived from integers such as (seed, epoch, sample index)."""
    entropy = [k & _MASK64 for k in key]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0])


def seeded_transform(transform: Callable[[Image.Image], torch.Tensor], image: Image.Image,
                     *key: int) -> torch.Tensor:
    """``transform(image)`` (3, S, S) with torch's CPU RNG seeded from ``key``.

    The caller's RNG state is restored afterwards, so random augmentation depends on
    ``key`` alone (not on the worker or on what ran before). Only the CPU generator is
    seeded (``torch.manual_seed`` would also reseed every GPU, and is slow).
    """
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(sample_seed(*key))
        return transform(image)


def collate(images: Sequence[torch.Tensor], captions: Sequence[str],
            tokenizer: Callable[[list[str]], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (B, 3, S, S), tokens (B, ctx)) from B transformed images and captions."""
    return torch.stack(list(images)), tokenizer(list(captions))
