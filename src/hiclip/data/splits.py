"""Train / val / test splits of a user's image-caption set by a stable hash of each item's key.

An item's split is a function of its key alone: ``h = int(sha1(key)[:8 bytes]) / 2**64`` in [0, 1)
falls into the first bucket whose cumulative fraction exceeds it (80 / 10 / 10 by default). So
the split never depends on the order of the rows, the process, the machine or ``PYTHONHASHSEED``,
every caption of one image lands with that image, and adding items never moves old ones.

Keys: for a CSV, the image path relative to the CSV file's folder (so a moved dataset keeps its
split); for WebDataset shards, the sample's ``__key__``. :func:`write_splits` turns either into
three CSV files (``train.csv``, ``val.csv``, ``test.csv``; absolute image paths, open_clip's
columns), the form ``hiclip train --data csv:`` and ``hiclip eval`` read. Shards are unpacked
once for this (images written under ``images/``): meant for demo-sized sets. A folder holding
``train.csv``, ``val.csv`` and ``test.csv`` is taken as already split.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from hiclip.data import csvdata, wds
from hiclip.data.loader import DataSpec
from hiclip.data.skips import Skip

SPLITS = ("train", "val", "test")
FRACTIONS = (0.8, 0.1, 0.1)


def unit_hash(key: str) -> float:
    """The key's position in [0, 1): the first 8 bytes of its UTF-8 SHA-1 over 2**64."""
    digest = hashlib.sha1(key.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def split_of(key: str, fractions: Sequence[float] = FRACTIONS) -> str:
    """The split (one of ``SPLITS``) whose bucket holds ``unit_hash(key)``."""
    if len(fractions) != len(SPLITS) or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"expected {len(SPLITS)} non-negative fractions summing to 1, got {list(fractions)}")
    h, edge = unit_hash(key), 0.0
    for name, fraction in zip(SPLITS, fractions):
        edge += fraction
        if h < edge:
            return name
    return SPLITS[-1]


def given_splits(folder: str | Path) -> dict[str, Path] | None:
    """``{split: folder/split.csv}`` when the folder holds all three files, else None."""
    files = {s: Path(folder) / f"{s}.csv" for s in SPLITS}
    return files if all(f.is_file() for f in files.values()) else None


def _csv_items(spec: DataSpec) -> Iterable[tuple[str, str, str]]:
    """(key, absolute image path, caption) of every row of the spec's CSV files."""
    for file in spec.paths:
        table = csvdata.read_csv([file], spec.csv_img_key, spec.csv_caption_key, spec.csv_sep)
        base = Path(file).resolve().parent
        for path, caption in zip(table.paths, table.captions):
            yield (os.path.relpath(path, base) if path else ""), path, caption


def _wds_items(spec: DataSpec, images: Path, skips: Counter) -> Iterable[tuple[str, str, str]]:
    """(key, written image file, caption) of every usable shard sample; bad ones counted in ``skips``."""
    images.mkdir(parents=True, exist_ok=True)
    urls = wds.expand_shards(spec.paths)
    wds.check_shards(urls)
    for url in urls:
        try:
            for key, members in wds.iter_shard(url):
                try:
                    data, caption = wds.sample_fields(members)
                except Skip as s:
                    skips[s.reason] += 1
                    continue
                ext = next(e for e in wds.IMAGE_EXTS if e in members)
                target = images / f"{hashlib.sha1(key.encode('utf-8', 'surrogateescape')).hexdigest()}.{ext}"
                target.write_bytes(data)
                yield key, str(target), caption
        except Skip as s:
            skips[s.reason] += 1


def write_splits(data: str, out_dir: str | Path, fractions: Sequence[float] = FRACTIONS) -> dict[str, Path]:
    """Split ``data`` ("csv:FILE[::FILE]", a folder with train/val/test.csv, or "wds:PATTERN") into
    ``out_dir/{train,val,test}.csv``; returns ``{split: csv file}``. The counts go to
    ``out_dir/splits.json``; a rerun with the same ``data`` reuses the files. Raises ValueError
    (unusable spec, an empty split) or FileNotFoundError (missing files)."""
    out = Path(out_dir)
    head, _, rest = data.partition(":")
    if head == "csv" and Path(rest).is_dir():
        files = given_splits(rest)
        if files is None:
            raise ValueError(f"data folder {rest} must hold {', '.join(f'{s}.csv' for s in SPLITS)}")
        return files
    files = {s: out / f"{s}.csv" for s in SPLITS}
    record = out / "splits.json"
    if record.is_file() and json.loads(record.read_text()).get("data") == data:
        return files
    spec = DataSpec.parse(data)
    if spec.kind == "world":
        raise ValueError("the world needs no split files; give csv:FILE, csv:FOLDER or wds:PATTERN")
    skips: Counter = Counter()
    items = _csv_items(spec) if spec.kind == "csv" else _wds_items(spec, out / "images", skips)
    out.mkdir(parents=True, exist_ok=True)
    counts: Counter = Counter()
    handles = {s: files[s].open("w", newline="", encoding="utf-8", errors="surrogateescape") for s in SPLITS}
    try:
        writers = {s: csv.writer(h) for s, h in handles.items()}
        for w in writers.values():
            w.writerow([csvdata.IMAGE_KEY, csvdata.CAPTION_KEY])
        for key, path, caption in items:
            split = split_of(key, fractions)
            writers[split].writerow([path, caption])
            counts[split] += 1
    finally:
        for h in handles.values():
            h.close()
    empty = [s for s in SPLITS if counts[s] == 0]
    if empty:
        raise ValueError(f"data {data!r} gives no item to split(s) {empty} ({dict(counts)} of "
                         f"{sum(counts.values())} items); it needs more items")
    record.write_text(json.dumps({"data": data, "fractions": list(fractions), "counts": dict(counts),
                                  "skipped": dict(skips)}, indent=2))
    return files
