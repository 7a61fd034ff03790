"""Training data loaders: the embedded world, WebDataset shards or CSV, one epoch per Loader.

World and CSV (map-style): the epoch's order is a permutation of the sample indices
seeded by (seed, epoch); global batch g is ``order[g*B*W:(g+1)*B*W]`` and rank r takes
its r-th slice of B. With ``drop_last=False`` the last, short global batch is split into
W near-equal parts (a rank whose part is empty has one batch fewer). A batch is decoded
as a whole by one DataLoader worker; a bad sample in it is counted and replaced by the
next good samples of the rank's order (wrapping round), so such a fill-in sample is seen
twice in that epoch. Random augmentation is seeded per sample by (seed, epoch, index).
Every batch is therefore a function of (seed, epoch, layout) only: resuming at
``start_batch`` gives exactly the batches an uninterrupted run sees from there, for any
number of workers. The world's scenes are fixed (``ShapesWorld(seed=0)``); ``seed`` only
orders and augments them. ``split`` picks the world's split; CSV and shards are used as
given. WebDataset: see ``hiclip.data.wds``.
"""

from __future__ import annotations

import dataclasses
import itertools
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from hiclip.data import csvdata, wds
from hiclip.data.images import DEFAULT_MAX_PIXELS, ImagePolicy
from hiclip.data.skips import Skip, collate, sample_seed, seeded_transform
from hiclip.data.world import ShapesWorld

KINDS = ("world", "wds", "csv")
_SUFFIXES = {".tar": "wds", ".tar.gz": "wds", ".tgz": "wds", ".csv": "csv", ".tsv": "csv"}


@dataclass
class DataSpec:
    """Where training pairs come from.

    kind: "world" (the embedded world, ``paths`` empty), "wds" (shard patterns,
    brace-expanded) or "csv" (one or more CSV/TSV files). ``csv_sep`` None: "," for
    .csv, "\\t" for .tsv. ``world_size_samples``: scenes in the world (one epoch);
    ``image_size``: the world's rendering size in pixels, and the shorter side image files are
    decoded at (at least); ``max_pixels``: larger image files are skipped (``hiclip.data.images``).
    """
    kind: str
    paths: list[str] = field(default_factory=list)
    csv_img_key: str = csvdata.IMAGE_KEY
    csv_caption_key: str = csvdata.CAPTION_KEY
    csv_sep: str | None = None
    world_size_samples: int = 10_000
    image_size: int = 64
    max_pixels: int | None = DEFAULT_MAX_PIXELS

    @property
    def image_policy(self) -> ImagePolicy:
        return ImagePolicy(self.max_pixels, min_side=self.image_size)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"data kind must be one of {KINDS}, got {self.kind!r}")
        self.paths = [self.paths] if isinstance(self.paths, str) else [str(p) for p in self.paths]
        if (self.kind == "world") == bool(self.paths):
            need = "no paths" if self.kind == "world" else "at least one path"
            raise ValueError(f"data kind {self.kind!r} takes {need}, got {self.paths}")
        if self.world_size_samples < 1 or self.image_size < 16:
            raise ValueError(f"need world_size_samples >= 1 and image_size >= 16, got "
                             f"{self.world_size_samples} and {self.image_size}")

    @classmethod
    def parse(cls, s: str, **kw: Any) -> "DataSpec":
        """"world", "wds:PATTERN[::PATTERN]", "csv:FILE[::FILE]", or paths joined by "::"
        whose suffix tells the kind (.tar, .tar.gz, .tgz: wds; .csv, .tsv: csv).
        ``kw``: the other fields (csv_img_key, ...)."""
        text = s.strip()
        if text == "world":
            return cls("world", [], **kw)
        head, sep, rest = text.partition(":")
        if sep and head in ("wds", "csv"):
            kind, parts = head, rest.split("::")
        else:
            parts = text.split("::")
            kinds = {next((k for suf, k in _SUFFIXES.items() if p.lower().endswith(suf)), None) for p in parts}
            if len(kinds) != 1 or None in kinds:
                raise ValueError(f"cannot tell the kind of data {s!r}: expected 'world', 'wds:PATTERN[::PATTERN]', "
                                 f"'csv:FILE[::FILE]', or paths ending in .tar or .csv / .tsv")
            kind = kinds.pop()
        return cls(kind, [p for p in parts if p], **kw)


class Source(Protocol):
    """A map-style sample source: ``load(i)`` -> (RGB image, caption), Skip when bad."""

    def __len__(self) -> int: ...

    def load(self, index: int) -> tuple[Image.Image, str]: ...


class WorldSource:
    """``ShapesWorld`` as a ``Source`` (its samples are never bad)."""

    def __init__(self, world: ShapesWorld):
        self.world = world

    def __len__(self) -> int:
        return len(self.world)

    def load(self, index: int) -> tuple[Image.Image, str]:
        sample = self.world[index]
        return sample.image, sample.caption


def rank_batches(n: int, batch_size: int, rank: int, world_size: int, seed: int, epoch: int,
                 shuffle: bool, drop_last: bool) -> list[np.ndarray]:
    """Sample indices of each of the rank's batches of the epoch (see the module docstring)."""
    span = batch_size * world_size
    if n == 0 or (drop_last and n < span):
        raise ValueError(f"batch_size {batch_size} x world_size {world_size} = {span} is larger than "
                         f"the dataset ({n} samples)")
    order = np.random.default_rng(sample_seed(seed, epoch)).permutation(n) if shuffle else np.arange(n)
    full = n // span
    batches = [order[g * span + rank * batch_size:g * span + (rank + 1) * batch_size] for g in range(full)]
    if not drop_last and n > full * span:
        batches += [b for b in [np.array_split(order[full * span:], world_size)[rank]] if len(b)]
    return batches


class IndexedBatches(Dataset):
    """One rank's batches over a ``Source``: item b -> (images (B, 3, S, S), tokens (B, ctx), skips).

    ``skips`` counts the bad samples among batch b's own indices; fill-ins are taken from
    the following batches (and are counted in their own batch).
    """

    def __init__(self, source: Source, batches: list[np.ndarray], transform: Callable,
                 tokenizer: Callable, seed: int, epoch: int):
        self.source, self.batches, self.transform, self.tokenizer = source, batches, transform, tokenizer
        self.seed, self.epoch = seed, epoch

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, b: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, int]]:
        own = self.batches[b]
        rest = itertools.chain(*self.batches[b + 1:], *self.batches[:b])
        images, captions, skips = [], [], Counter()
        for pos, index in enumerate(itertools.chain(own, rest)):
            if len(images) == len(own):
                break
            try:
                image, caption = self.source.load(int(index))
            except Skip as s:
                skips[s.reason] += pos < len(own)
                continue
            images.append(seeded_transform(self.transform, image, self.seed, self.epoch, int(index)))
            captions.append(caption)
        if not images:
            raise ValueError(f"no valid sample in this rank's {sum(map(len, self.batches))} samples")
        return (*collate(images, captions, self.tokenizer), {k: v for k, v in skips.items() if v})


class Loader:
    """Batches of one epoch on one rank: iterate for (images (B, 3, S, S) float, tokens (B, ctx) long).

    ``num_batches``: the rank's batches in the whole epoch (None when unknown, see
    ``hiclip.data.wds``); iteration starts at ``start_batch`` and ``len()`` is the number
    still to come. ``skips``: reason -> samples skipped so far in this epoch on this rank,
    summed over the DataLoader workers (each batch carries its worker's new counts).
    """

    def __init__(self, dataloader: DataLoader, num_batches: int | None, start_batch: int):
        self._dataloader, self.num_batches, self.start_batch = dataloader, num_batches, start_batch
        self.skips: Counter = Counter()

    def __len__(self) -> int:
        if self.num_batches is None:
            raise TypeError("the number of batches is unknown (remote shards without sizes.json, or drop_last=False)")
        return self.num_batches - self.start_batch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.skips.clear()
        for images, tokens, skips in self._dataloader:
            self.skips.update(skips)
            if images is not None:
                yield images, tokens


def _wds_batches(patterns: Sequence[str], transform: Callable, tokenizer: Callable, batch_size: int,
                 *, workers: int, rank: int, world_size: int, seed: int, epoch: int,
                 start_batch: int, shuffle: bool, drop_last: bool, policy: ImagePolicy
                 ) -> tuple[wds.WdsBatches, int]:
    """The rank's ``WdsBatches`` for the epoch and the DataLoader worker count to use.

    Raises FileNotFoundError for missing local shards and ValueError when a batch does
    not fit in a worker's share of the shards (see the module docstring for the layout).
    """
    urls = wds.expand_shards(patterns)
    wds.check_shards(urls)
    units = wds.shard_units(len(urls), world_size, seed, epoch, shuffle)
    nw = wds.layout_workers(workers, len(units[rank]))
    if workers > nw:
        warnings.warn(f"rank {rank} has {len(units[rank])} shard(s) for {workers} DataLoader workers; "
                      f"using {nw} worker(s)", stacklevel=3)
    sizes = wds.shard_sizes(urls) if drop_last else None
    num_batches = None if sizes is None else wds.count_batches(units, sizes, workers, batch_size)
    if num_batches == 0:
        raise ValueError(f"batch_size {batch_size} is larger than the samples of a DataLoader worker: "
                         f"{sum(sizes)} samples in {len(urls)} shard(s) over {world_size} rank(s) with "
                         f"up to {workers} worker(s) each; lower the batch size or the workers")
    dataset = wds.WdsBatches(urls, units[rank], nw, batch_size, transform, tokenizer, seed=seed,
                             epoch=epoch, start_batch=start_batch, num_batches=num_batches,
                             drop_last=drop_last, policy=policy)
    return dataset, (nw if workers > 0 else 0)


def _as_is(item: Any) -> Any:
    return item


def _check_ints(**values: int) -> None:
    lowest = {"batch_size": 1, "world_size": 1}
    for name, value in values.items():
        if not isinstance(value, (int, np.integer)) or value < lowest.get(name, 0):
            raise ValueError(f"{name} must be an integer >= {lowest.get(name, 0)}, got {value!r}")


def make_loader(spec: DataSpec, transform: Callable, tokenizer: Callable, batch_size: int, *,
                workers: int = 2, rank: int = 0, world_size: int = 1, seed: int = 0, epoch: int = 0,
                start_batch: int = 0, split: str = "train", drop_last: bool = True,
                shuffle: bool | None = None, pin_memory: bool = False) -> Loader:
    """The Loader of epoch ``epoch`` on ``rank`` of ``world_size``, from batch ``start_batch``.

    ``transform``: PIL image -> (3, S, S); ``tokenizer``: list[str] -> (B, ctx).
    ``shuffle`` None: shuffle when ``split`` is "train". Raises ValueError for bad
    arguments or a batch larger than the data, FileNotFoundError for missing files
    (call ``validate`` first for the full up-front checks).
    """
    _check_ints(batch_size=batch_size, workers=workers, rank=rank, world_size=world_size,
                epoch=epoch, start_batch=start_batch)
    if rank >= world_size:
        raise ValueError(f"need rank < world_size, got rank={rank}, world_size={world_size}")
    shuffle = split == "train" if shuffle is None else shuffle
    sampler = None
    if spec.kind == "wds":
        dataset, workers = _wds_batches(
            spec.paths, transform, tokenizer, batch_size, workers=workers, rank=rank, world_size=world_size,
            seed=seed, epoch=epoch, start_batch=start_batch, shuffle=shuffle, drop_last=drop_last,
            policy=spec.image_policy)
        num_batches = dataset.num_batches
    else:
        source: Source = (WorldSource(ShapesWorld(split, spec.world_size_samples, spec.image_size))
                          if spec.kind == "world" else
                          dataclasses.replace(csvdata.read_csv(spec.paths, spec.csv_img_key, spec.csv_caption_key,
                                                               spec.csv_sep), policy=spec.image_policy))
        batches = rank_batches(len(source), batch_size, rank, world_size, seed, epoch, shuffle, drop_last)
        dataset = IndexedBatches(source, batches, transform, tokenizer, seed, epoch)
        num_batches = len(batches)
        sampler = range(min(start_batch, num_batches), num_batches)
    if num_batches is not None and start_batch > num_batches:
        raise ValueError(f"start_batch {start_batch} is past the epoch's {num_batches} batches")
    generator = torch.Generator().manual_seed(sample_seed(seed, epoch, rank))  # leaves the global RNG alone
    dataloader = DataLoader(dataset, batch_size=None, sampler=sampler, num_workers=workers,
                            collate_fn=_as_is, pin_memory=pin_memory, generator=generator)
    return Loader(dataloader, num_batches, start_batch)


def validate(spec: DataSpec) -> None:
    """Up-front checks before training: files exist, CSV columns, at least one usable sample.

    Raises FileNotFoundError (missing CSV or local shard) or ValueError (no such columns,
    listing those the file has; no valid sample). Reads data only until the first good sample.
    """
    if spec.kind == "csv":
        csvdata.check_has_sample(csvdata.read_csv(spec.paths, spec.csv_img_key, spec.csv_caption_key,
                                                  spec.csv_sep))
    elif spec.kind == "wds":
        urls = wds.expand_shards(spec.paths)
        wds.check_shards(urls)
        wds.check_has_sample(urls)
