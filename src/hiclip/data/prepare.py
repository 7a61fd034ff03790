"""``hiclip prepare``: a CSV / TSV of local images and captions -> resized WebDataset shards.

Training on large originals is decode-bound (a 12-megapixel PNG takes longer to decode
than a small model's step on it). Each usable row is decoded once by the one image loader
(:mod:`hiclip.data.images`, pixel limit included), resized so that its shorter side is
``size`` (never enlarged; Lanczos), and stored as a JPEG with its caption in shards
``{prefix}-000000.tar``, ... of ``samples_per_shard`` samples (members ``jpg``, ``txt``),
with open_clip's ``sizes.json`` beside them. Rows are kept in CSV order; bad rows are
skipped and counted by reason (the same reasons as training). With ``workers`` > 0 the
decoding runs in that many processes.
"""
from __future__ import annotations

import io
import json
import multiprocessing
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import webdataset as wds
from PIL import Image
from tqdm.auto import tqdm

from hiclip.data import csvdata
from hiclip.data.images import DEFAULT_MAX_PIXELS, ImagePolicy
from hiclip.data.skips import Skip
from hiclip.runlock import folder_lock


@dataclass(frozen=True)
class _Encoder:
    """Row index -> (JPEG bytes, caption) or the skip reason (picklable, for worker processes)."""
    table: csvdata.CsvTable
    size: int
    quality: int

    def __call__(self, index: int) -> tuple[bytes, str] | str:
        try:
            image, caption = self.table.load(index)
        except Skip as s:
            return s.reason
        scale = self.size / min(image.size)
        if scale < 1:
            image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                                 Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=self.quality)
        return buf.getvalue(), caption


def prepare(csv_files: Sequence[str | Path], out_dir: str | Path, *, img_key: str = csvdata.IMAGE_KEY,
            caption_key: str = csvdata.CAPTION_KEY, sep: str | None = None, image_root: str | Path | None = None,
            size: int = 256, max_pixels: int | None = DEFAULT_MAX_PIXELS, samples_per_shard: int = 1000,
            quality: int = 90, workers: int = 0, prefix: str = "shard", progress: bool = True) -> dict[str, Any]:
    """Write the shards (module docstring); returns a summary: ``samples``, ``skipped`` by
    reason, ``shards`` (paths) and ``pattern`` (a brace pattern for ``hiclip train --data``)."""
    if size < 16 or samples_per_shard < 1 or not 1 <= quality <= 100 or workers < 0:
        raise ValueError(f"need size >= 16, samples_per_shard >= 1, 1 <= quality <= 100 and workers >= 0; got "
                         f"{size}, {samples_per_shard}, {quality}, {workers}")
    table = csvdata.read_csv(csv_files, img_key, caption_key, sep, image_root)
    if not len(table):
        raise ValueError(f"no rows in {', '.join(map(str, csv_files))}")
    encode = _Encoder(csvdata.CsvTable(table.paths, table.captions, ImagePolicy(max_pixels, min_side=size)),
                      size, quality)
    with folder_lock(out_dir) as out:  # one writer per output folder
        return _write_shards(encode, len(table), out, samples_per_shard, workers, prefix, progress)


def _write_shards(encode: _Encoder, rows: int, out: Path, samples_per_shard: int, workers: int, prefix: str,
                  progress: bool) -> dict[str, Any]:
    skipped: Counter = Counter()
    sizes: dict[str, int] = {}
    sink, kept = None, 0
    pool = multiprocessing.Pool(workers) if workers else None
    try:
        results = pool.imap(encode, range(rows), chunksize=4) if pool else map(encode, range(rows))
        for result in tqdm(results, total=rows, desc="prepare", unit="img", disable=not progress):
            if isinstance(result, str):
                skipped[result] += 1
                continue
            if kept % samples_per_shard == 0:
                if sink is not None:
                    sink.close()
                name = f"{prefix}-{len(sizes):06d}.tar"
                sink, sizes[name] = wds.TarWriter(str(out / name), mtime=0.0), 0
            sink.write({"__key__": f"{kept:09d}", "jpg": result[0], "txt": result[1]})
            sizes[name] += 1
            kept += 1
    finally:
        if pool:
            pool.terminate()
        if sink:
            sink.close()
    if not kept:
        raise ValueError(f"no usable row in {rows} (skipped: {dict(skipped)})")
    (out / "sizes.json").write_text(json.dumps(sizes, indent=1) + "\n")
    last = len(sizes) - 1
    return {"samples": kept, "skipped": dict(skipped), "shards": [str(out / n) for n in sizes],
            "pattern": str(out / (f"{prefix}-{{000000..{last:06d}}}.tar" if last else f"{prefix}-000000.tar"))}

