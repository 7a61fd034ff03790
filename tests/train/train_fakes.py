"""Test doubles for hiclip.train: a tiny model config and a loader factory with make_loader's API.

``train(cfg, make_loader=loaders(train, val))`` parses and checks ``cfg.data`` as always, then
gets fake batches described by ``"fake:N[:nan@K][:sigint@K][:sigint2@K][:sigint3@K]"``: N global
batches per epoch; the batch of index K (epoch 0) has NaN images, or sends this process SIGINT
(once, twice or three times) when yielded.
Batch i of epoch e is drawn from a generator seeded by (seed, epoch, i, split) and
holds world_size * batch_size pairs; rank r gets rows [r*b, (r+1)*b).
"""
from __future__ import annotations

import json
import os
import signal
import zlib
from collections import Counter
from pathlib import Path

import torch

from hiclip.data.loader import DataSpec

IMAGE_SIZE, CONTEXT, VOCAB = 16, 8, 64

TINY = {"embed_dim": 16,
        "vision_cfg": {"image_size": IMAGE_SIZE, "patch_size": 8, "width": 32, "layers": 2, "heads": 2,
                       "hierarchy": {"enabled": True}},
        "text_cfg": {"context_length": CONTEXT, "vocab_size": VOCAB, "width": 32, "heads": 2, "layers": 2,
                     "hierarchy": {"enabled": True}}}


def write_config(directory: Path, name: str = "tiny.json", **changes) -> str:
    cfg = json.loads(json.dumps(TINY))
    cfg.update(changes)
    path = Path(directory) / name
    path.write_text(json.dumps(cfg))
    return str(path)


def global_batch(seed: int, epoch: int, index: int, size: int, split: str = "train"
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """images (size, 3, S, S), tokens (size, CONTEXT): start 62, content ids, end 63, padding 0."""
    g = torch.Generator().manual_seed(zlib.crc32(repr((seed, epoch, index, split)).encode()))
    images = torch.randn(size, 3, IMAGE_SIZE, IMAGE_SIZE, generator=g)
    tokens = torch.zeros(size, CONTEXT, dtype=torch.long)
    lengths = torch.randint(1, CONTEXT - 1, (size,), generator=g)
    for row, n in enumerate(lengths.tolist()):
        tokens[row, 0] = 62
        tokens[row, 1:n + 1] = torch.randint(1, 60, (n,), generator=g)
        tokens[row, n + 1] = 63
    return images, tokens


class FakeLoader:
    def __init__(self, spec: str, batch_size: int, rank: int, world_size: int, seed: int, epoch: int,
                 start_batch: int, split: str):
        parts = spec.split(":")
        self.num_batches = int(parts[1])
        self.events = {kind: int(at) for kind, at in (p.split("@") for p in parts[2:])}
        self.b, self.rank, self.world, self.seed, self.epoch = batch_size, rank, world_size, seed, epoch
        self.start, self.split = start_batch, split
        self.skips: Counter = Counter()

    def __iter__(self):
        for i in range(self.start, self.num_batches):
            images, tokens = global_batch(self.seed, self.epoch, i, self.b * self.world, self.split)
            rows = slice(self.rank * self.b, (self.rank + 1) * self.b)
            images, tokens = images[rows], tokens[rows]
            if self.epoch == 0 and self.events.get("nan") == i:
                images = torch.full_like(images, float("nan"))
            self.skips["fake reason"] += 1
            for times, kind in enumerate(("sigint", "sigint2", "sigint3"), 1):
                if self.epoch == 0 and self.events.get(kind) == i:
                    for _ in range(times):
                        os.kill(os.getpid(), signal.SIGINT)
            yield images, tokens


def loaders(train: str, val: str = "fake:2"):
    """A loader factory for ``train``: the train split gets batches described by ``train``,
    the val split those of ``val`` (the parsed spec it receives is checked, then ignored)."""
    def make_loader(spec: DataSpec, transform, tokenizer, batch_size, *, workers=2, rank=0, world_size=1, seed=0,
                    epoch=0, start_batch=0, split="train", drop_last=True):
        assert isinstance(spec, DataSpec)
        return FakeLoader(train if split == "train" else val, batch_size, rank, world_size, seed, epoch,
                          start_batch, split)
    return make_loader
