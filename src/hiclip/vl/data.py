"""Batches of a ``VLTask``: (images (B, 3, S, S), tokens (B, N), targets, example indices).

Order: ``hiclip.data.loader.rank_batches`` (one process), seeded by (seed, epoch), so a run
that resumes at batch k of an epoch sees exactly the batches an uninterrupted run sees
from there, with any number of workers. An example whose image cannot be read is
dropped from its batch and counted by reason (``Loader.skips``); a batch left empty is
not yielded. Targets: (B,) class indices ("ce") or (B, C) soft scores ("bce").
"""
from __future__ import annotations

from collections import Counter
from typing import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..data.loader import rank_batches
from ..data.skips import Skip, sample_seed
from .tasks import VLTask

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def collate_targets(task: VLTask, indices: list[int]) -> torch.Tensor:
    if task.objective == "ce":
        return torch.tensor([task.target(i) for i in indices], dtype=torch.long)
    out = torch.zeros(len(indices), len(task.answers))
    for row, i in enumerate(indices):
        for c, s in task.target(i).items():
            out[row, c] = s
    return out


class TaskBatches(Dataset):
    """Item b -> (b, images, tokens, targets, indices, skips) of the b-th batch of example indices."""

    def __init__(self, task: VLTask, batches: list[np.ndarray], transform: Callable, tokenizer: Callable):
        self.task, self.batches, self.transform, self.tokenizer = task, batches, transform, tokenizer

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, b: int) -> tuple:
        images, kept, skips = [], [], Counter()
        for i in map(int, self.batches[b]):
            try:
                images.append(self.transform(self.task.image(i)))
            except Skip as s:
                skips[s.reason] += 1
                continue
            kept.append(i)
        if not kept:
            return b, None, None, None, None, dict(skips)
        tokens = self.tokenizer([self.task.text(i) for i in kept])
        return b, torch.stack(images), tokens, collate_targets(self.task, kept), torch.tensor(kept), dict(skips)


class Loader:
    """One epoch of batches from ``start_batch``; ``skips`` counts this epoch's dropped examples;
    ``next_batch``: the epoch's batch index after the last one yielded (where a resume starts)."""

    def __init__(self, dataloader: DataLoader, num_batches: int, start_batch: int):
        self._dataloader, self.num_batches, self.start_batch = dataloader, num_batches, start_batch
        self.skips: Counter = Counter()
        self.next_batch = start_batch

    def __len__(self) -> int:
        return self.num_batches - self.start_batch

    def __iter__(self) -> Iterator[Batch]:
        self.skips.clear()
        for b, images, tokens, targets, indices, skips in self._dataloader:
            self.skips.update(skips)
            self.next_batch = b + 1
            if images is not None:
                yield images, tokens, targets, indices


def _as_is(item):
    return item


def make_loader(task: VLTask, transform: Callable, tokenizer: Callable, batch_size: int, *, workers: int = 0,
                seed: int = 0, epoch: int = 0, start_batch: int = 0, train: bool = True,
                limit: int | None = None) -> Loader:
    """Batches of ``task`` (training: shuffled, full batches only; else in order, all of the
    first ``limit`` examples)."""
    n = len(task) if limit is None else min(limit, len(task))
    batches = rank_batches(n, batch_size, 0, 1, seed, epoch, shuffle=train, drop_last=train)
    if start_batch > len(batches):
        raise ValueError(f"start_batch {start_batch} is past the epoch's {len(batches)} batches")
    dataloader = DataLoader(TaskBatches(task, batches, transform, tokenizer), batch_size=None,
                            sampler=range(start_batch, len(batches)), num_workers=workers, collate_fn=_as_is,
                            generator=torch.Generator().manual_seed(sample_seed(seed, epoch)))
    return Loader(dataloader, len(batches), start_batch)
