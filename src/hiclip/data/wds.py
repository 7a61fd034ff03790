"""WebDataset tar shards: shard lists, robust tar reading, and the per-epoch batch stream.

A sample is the run of consecutive tar members sharing a key (``base_plus_ext``): an
image (``jpg``/``jpeg``/``png``/``webp``) and a caption (``txt``); other members are
ignored. Shard lists are brace-expanded; several sources are joined with "::".

Epoch layout (``WdsBatches``): the shard list is permuted with a seed from (seed, epoch)
(when shuffling), dealt to ranks (rank r takes every W-th shard), then to the rank's
DataLoader workers (every nw-th). With fewer shards than ranks, every rank reads every
shard and keeps the samples j of shard s with (j + s) % W == r. With fewer shards than
workers on a rank, fewer workers are used (with a warning). Inside a worker the samples
keep their tar order (no shuffle buffer); batch i of the rank comes from worker i % nw.

Length: shard sizes come from a ``sizes.json`` beside the shards (open_clip's
{shard file name: samples}) or, for local files, from one scan of the tar headers. From
them ``num_batches`` is the largest count every rank can fill without reusing a sample
(shards are of unequal size, so some samples of a bigger rank may go unused in an epoch).
A worker that runs out because of bad samples starts its shards again, so every rank
yields exactly ``num_batches`` batches (DDP-safe). Remote shards without ``sizes.json``,
or ``drop_last=False``: one pass per worker, ``num_batches`` None, ranks may differ.
Skips are counted on the first pass only; a truncated tar counts the sample being read
at the cut (the samples after it are not seen).

Resume: ``start_batch`` skips that many batches' worth of samples, checking members and
captions but not decoding images; this reproduces the uninterrupted order exactly unless
the skipped part holds undecodable images (each one shifts the stream by a sample). The
order depends on the number of workers: resume with the same ``workers``.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import re
import tarfile
import zlib
from collections import Counter
from pathlib import Path
from typing import Callable, Iterator, NamedTuple, Sequence

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info
from webdataset.gopen import gopen
from webdataset.shardlists import braceexpand, expand_urls  # braceexpand: webdataset's own dependency
from webdataset.tariterators import base_plus_ext

from hiclip.data.images import ImagePolicy, load_image
from hiclip.data.skips import NO_IMAGE, TRUNCATED_TAR, Skip, check_caption, collate, sample_seed, seeded_transform

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")


class Unit(NamedTuple):
    """Part of one shard read by a rank: samples j with (j + pos) % m == k."""
    pos: int
    k: int = 0
    m: int = 1


def is_local(url: str) -> bool:
    """Whether ``url`` is a plain file path (no "scheme:" such as pipe:, s3:, https:)."""
    return re.match(r"^[A-Za-z][\w+.-]*:", url) is None


MAX_SHARDS = 1_000_000  # names one --data spec may expand to (more would take minutes and gigabytes)
_RANGE = re.compile(r"^(-?\d+|[A-Za-z])\.\.(-?\d+|[A-Za-z])(?:\.\.(-?\d+))?$")


def _split_top(text: str, sep: str) -> list[str]:
    """``text`` split at each ``sep`` outside braces (backslash escapes kept)."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 1
        elif c == "{":
            depth += 1
        elif c == "}":
            depth = max(0, depth - 1)
        elif c == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    return parts + [text[start:]]


def count_expansions(pattern: str) -> int:
    """How many names brace expansion makes of ``pattern`` ({a..b[..step]} ranges, {x,y} lists,
    nested), computed without making them."""
    total, i, n = 1, 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if c != "{":
            i += 1
            continue
        depth, j = 0, i
        while j < n:  # the matching brace
            depth += {"{": 1, "}": -1}.get(pattern[j], 0)
            if depth == 0:
                break
            j += 2 if pattern[j] == "\\" else 1
        if j >= n:  # unmatched: literal
            return total
        body = pattern[i + 1:j]
        alternatives = _split_top(body, ",")
        if m := _RANGE.match(body):
            a, b, step = m.group(1), m.group(2), abs(int(m.group(3) or 1)) or 1
            lo, hi = (int(a), int(b)) if a.lstrip("-").isdigit() and b.lstrip("-").isdigit() else (ord(a), ord(b))
            total *= abs(hi - lo) // step + 1
        elif len(alternatives) > 1:
            total *= sum(count_expansions(alt) for alt in alternatives)
        i = j + 1
    return total


def expand_shards(patterns: Sequence[str]) -> list[str]:
    """Shard URLs of brace-expanded patterns, in order ("d/s-{0..2}.tar" -> 3 URLs).

    ValueError, before expanding anything, when they would make more than :data:`MAX_SHARDS` names.
    """
    sources = [p for pattern in patterns for p in pattern.split("::")]
    count = sum(count_expansions(p) for p in sources)
    if count > MAX_SHARDS:
        raise ValueError(f"shard pattern {'::'.join(patterns)!r} expands to {count} names, more than the "
                         f"{MAX_SHARDS} hiclip accepts; check the brace ranges (e.g. data/shard-{{000000..000099}}.tar)")
    try:
        urls = expand_urls("::".join(patterns)) if patterns else []
    except braceexpand.UnbalancedBracesError:
        raise ValueError(f"shard pattern {'::'.join(patterns)!r} has unbalanced braces") from None
    if not urls:
        raise ValueError(f"no shards in {list(patterns)} (expected patterns such as "
                         f"'data/shard-{{000000..000009}}.tar')")
    return urls


def check_shards(urls: Sequence[str]) -> None:
    """Raise FileNotFoundError naming the local shards that do not exist."""
    missing = [u for u in urls if is_local(u) and not os.path.isfile(u)]
    if missing and len(missing) == len(urls):
        shown = urls[0] if len(urls) == 1 else f"{urls[0]} ... {urls[-1]}"
        raise FileNotFoundError(f"the shard pattern matches no file: none of its {len(urls)} shard(s) "
                                f"({shown}) exists")
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise FileNotFoundError(f"{len(missing)} of {len(urls)} shards not found: {shown}")


def _count_tar(path: str) -> int:
    """Samples (runs of members sharing a key) in a local tar, from its headers."""
    count, key = 0, None
    try:
        with tarfile.open(path) as tar:
            for info in tar:
                prefix = base_plus_ext(info.name)[0] if info.isreg() else None
                if prefix is not None and prefix != key and not os.path.basename(prefix).startswith("__"):
                    count, key = count + 1, prefix
    except (tarfile.TarError, OSError, EOFError, zlib.error):
        pass  # a truncated tar: the samples before the cut
    return count


def _read_sizes(path: str) -> dict:
    """{shard file name: samples} of a sizes.json, {} when there is none."""
    if not (is_local(path) and os.path.isfile(path)):
        return {}
    try:
        return dict(json.loads(Path(path).read_text()))
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path} should map shard file names to sample counts ({e})") from None


@functools.lru_cache(maxsize=8)
def _sizes_cached(urls: tuple[str, ...], stamps: tuple[int, ...]) -> tuple[int, ...] | None:
    tables: dict[str, dict] = {}
    sizes = []
    for url in urls:
        directory, name = os.path.split(url)
        if directory not in tables:
            tables[directory] = _read_sizes(os.path.join(directory, "sizes.json"))
        if name in tables[directory]:
            sizes.append(int(tables[directory][name]))
        elif is_local(url):
            sizes.append(_count_tar(url))
        else:
            return None
    return tuple(sizes)


def shard_sizes(urls: Sequence[str]) -> list[int] | None:
    """Samples per shard, from ``sizes.json`` beside the shards or by scanning local tars.

    None when a remote shard is not listed in a sizes.json. Cached while files are unchanged.
    """
    files = list(urls) + sorted({os.path.join(os.path.dirname(u), "sizes.json") for u in urls})
    stamps = tuple(os.stat(f).st_mtime_ns if is_local(f) and os.path.isfile(f) else -1 for f in files)
    sizes = _sizes_cached(tuple(urls), stamps)
    return None if sizes is None else list(sizes)


def iter_shard(url: str) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {extension: bytes}) for each complete sample of a shard, in tar order.

    Raises Skip(TRUNCATED_TAR) after the last complete sample when the tar is cut short
    (a read error, or, for a local file, no end-of-archive block); the sample being
    read at the cut is dropped.
    """
    size = os.path.getsize(url) if is_local(url) else None
    stream = gopen(url, "rb")
    try:
        key, members = None, {}
        try:
            tar = tarfile.open(fileobj=stream, mode="r|*")
            for info in tar:
                tar.members = []  # stream mode: keep no history
                prefix, suffix = base_plus_ext(info.name) if info.isreg() else (None, None)
                if prefix is None or os.path.basename(prefix).startswith("__"):
                    continue
                if prefix != key:
                    if key is not None:
                        yield key, members
                    key, members = prefix, {}
                members[suffix.lower()] = tar.extractfile(info).read()
        except (tarfile.TarError, OSError, EOFError, zlib.error):
            raise Skip(TRUNCATED_TAR) from None
        if size is not None and size - tar.offset < tarfile.BLOCKSIZE:
            raise Skip(TRUNCATED_TAR)
        if key is not None:
            yield key, members
    finally:
        stream.close()


def sample_fields(members: dict[str, bytes]) -> tuple[bytes, str]:
    """(encoded image, caption) of a sample; Skip when either is missing or the caption is bad."""
    image = next((members[e] for e in IMAGE_EXTS if e in members), None)
    if image is None:
        raise Skip(NO_IMAGE)
    return image, check_caption(members.get("txt"))


def check_has_sample(urls: Sequence[str]) -> None:
    """Raise ValueError unless some shard holds a usable sample (reads until the first)."""
    skips: Counter = Counter()
    for url in urls:
        try:
            for _, members in iter_shard(url):
                try:
                    image, _ = sample_fields(members)
                    load_image(image)
                    return
                except Skip as s:
                    skips[s.reason] += 1
        except Skip as s:
            skips[s.reason] += 1
    raise ValueError(f"no valid sample in {len(urls)} shard(s) (skipped: {dict(skips) or 'none, no samples'})")


def shard_units(n_shards: int, world_size: int, seed: int, epoch: int, shuffle: bool) -> list[list[Unit]]:
    """Every rank's units of the epoch, ``[rank][i]`` (see the module docstring)."""
    rng = np.random.default_rng(sample_seed(seed, epoch))
    order = [int(p) for p in (rng.permutation(n_shards) if shuffle else range(n_shards))]
    if n_shards >= world_size:
        return [[Unit(p) for p in order[r::world_size]] for r in range(world_size)]
    return [[Unit(p, r, world_size) for p in order] for r in range(world_size)]


def layout_workers(workers: int, n_units: int) -> int:
    """Workers a rank's batches are dealt to: ``workers`` (at least 1), at most one per unit."""
    return max(1, min(workers, n_units))


def count_batches(units: list[list[Unit]], sizes: Sequence[int], workers: int, batch_size: int) -> int:
    """Batches every rank can fill without reusing a sample, batch i from worker i % nw."""
    counts = []
    for rank_units in units:
        nw = layout_workers(workers, len(rank_units))
        for w in range(nw):
            n = sum(len(range((u.k - u.pos) % u.m, sizes[u.pos], u.m)) for u in rank_units[w::nw])
            counts.append(nw * (n // batch_size) + w)  # batches w, w + nw, ... fit below this
    return min(counts)


class WdsBatches(IterableDataset):
    """One rank's batches of an epoch: (images (B, 3, S, S), tokens (B, ctx), skips dict).

    An item with images None carries only the skips counted after a worker's last batch.
    """

    def __init__(self, urls: Sequence[str], units: list[Unit], workers: int, batch_size: int,
                 transform: Callable, tokenizer: Callable, *, seed: int, epoch: int,
                 start_batch: int, num_batches: int | None, drop_last: bool,
                 policy: ImagePolicy = ImagePolicy()):
        self.urls, self.units, self.nw, self.batch_size = list(urls), units, workers, batch_size
        self.transform, self.tokenizer, self.seed, self.epoch = transform, tokenizer, seed, epoch
        self.start_batch, self.num_batches, self.drop_last = start_batch, num_batches, drop_last
        self.policy = policy

    def __iter__(self):
        info = get_worker_info()
        logical = ((info.id if info else 0) + self.start_batch) % self.nw  # serves batch start_batch first
        skip = len(range(logical, self.start_batch, self.nw))
        quota = None if self.num_batches is None else len(range(logical, self.num_batches, self.nw)) - skip
        yield from self._batches(self.units[logical::self.nw], skip, quota)

    def _stream(self, units: list[Unit], pending: Counter,
                cycle: bool) -> Iterator[tuple[int, bytes, str, int]]:
        """(sample id, image bytes, caption, pass) of samples with an image and a good caption."""
        for pass_ in itertools.count():
            found = False
            for unit in units:
                url, j = self.urls[unit.pos], 0
                try:
                    for key, members in iter_shard(url):
                        mine, j = (j + unit.pos) % unit.m == unit.k, j + 1
                        if not mine:
                            continue
                        try:
                            image, caption = sample_fields(members)
                        except Skip as s:
                            pending[s.reason] += pass_ == 0
                            continue
                        found = True
                        yield zlib.crc32(f"{url}/{key}".encode()), image, caption, pass_
                except Skip as s:  # truncated tar: counted on the rank that owns the cut sample
                    pending[s.reason] += pass_ == 0 and (j + unit.pos) % unit.m == unit.k
            if not cycle:
                return
            if not found:
                raise ValueError(f"no valid sample in shards {[self.urls[u.pos] for u in units]}")

    def _batches(self, units: list[Unit], skip: int, quota: int | None) -> Iterator[tuple]:
        """Skip ``skip`` batches' worth of samples, then yield ``quota`` batches (None: until the end)."""
        pending: Counter = Counter()
        stream = self._stream(units, pending, cycle=quota is not None)
        for _ in itertools.islice(stream, skip * self.batch_size):
            pass
        images, captions, made, last_good = [], [], 0, None
        for sid, data, caption, pass_ in stream if quota != 0 else ():
            last_good = pass_ if last_good is None else last_good
            if pass_ > last_good + 1:
                raise ValueError(f"no decodable image in shards {[self.urls[u.pos] for u in units]}")
            try:
                image = load_image(data, self.policy)
            except Skip as s:
                pending[s.reason] += pass_ == 0
                continue
            last_good = pass_
            images.append(seeded_transform(self.transform, image, self.seed, self.epoch, sid, pass_))
            captions.append(caption)
            if len(images) == self.batch_size:
                yield (*collate(images, captions, self.tokenizer), _take(pending))
                images, captions, made = [], [], made + 1
                if made == quota:
                    return
        if images and not self.drop_last:
            yield (*collate(images, captions, self.tokenizer), _take(pending))
        if pending:
            yield None, None, _take(pending)


def _take(pending: Counter) -> dict[str, int]:
    """The counts in ``pending`` (zeros dropped), leaving it empty."""
    counts = {k: v for k, v in pending.items() if v}
    pending.clear()
    return counts
