"""CSV / TSV image-caption tables, as open_clip's users have them.

One row per sample: an image-path column and a caption column (names configurable).
Relative image paths are taken relative to the directory of the CSV file. Text is read
as UTF-8 with ``errors="surrogateescape"``, so that a row whose caption holds invalid
bytes is skipped (counted as "caption not UTF-8") instead of failing the whole file.
"""

from __future__ import annotations

import csv
import functools
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from PIL import Image

from hiclip.data.images import ImagePolicy, load_image
from hiclip.data.skips import Skip, check_caption

# open_clip's default column names (its --csv-img-key / --csv-caption-key)
IMAGE_KEY = "filepath"
CAPTION_KEY = "title"


@dataclass(frozen=True)
class CsvTable:
    """Rows of one or more CSV files: ``paths[i]`` (resolved image path), ``captions[i]``; images are
    decoded under ``policy``."""
    paths: list[str]
    captions: list[str]
    policy: ImagePolicy = field(default_factory=ImagePolicy)

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> tuple[Image.Image, str]:
        """(RGB image, stripped caption) of row ``index``; raises Skip for a bad row."""
        caption = check_caption(self.captions[index])
        return load_image(self.paths[index], self.policy), caption


def default_sep(path: str | Path) -> str:
    """"\\t" for a .tsv file, "," otherwise."""
    return "\t" if Path(path).suffix.lower() == ".tsv" else ","


def _read_one(path: Path, img_key: str, caption_key: str, sep: str | None, image_root: str | None,
              paths: list[str], captions: list[str]) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"CSV file not found: {path}")
    base = image_root or str(path.resolve().parent)
    with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as f:
        reader = csv.reader(f, delimiter=sep or default_sep(path))
        header = next(reader, None)
        if header is None:
            raise ValueError(f"CSV file {path} is empty (expected a header row)")
        missing = [k for k in (img_key, caption_key) if k not in header]
        if missing:
            raise ValueError(f"CSV file {path} has no column {missing}; its columns are {header} "
                             f"(set csv_img_key / csv_caption_key, or csv_sep)")
        i, c = header.index(img_key), header.index(caption_key)
        for row in reader:
            if not row:
                continue
            image = row[i] if i < len(row) else ""
            paths.append(os.path.join(base, image) if image else "")
            captions.append(row[c] if c < len(row) else "")


@functools.lru_cache(maxsize=4)
def _read_cached(files: tuple[str, ...], stamps: tuple[int, ...], img_key: str,
                 caption_key: str, sep: str | None, image_root: str | None) -> CsvTable:
    paths: list[str] = []
    captions: list[str] = []
    for file in files:
        _read_one(Path(file), img_key, caption_key, sep, image_root, paths, captions)
    return CsvTable(paths, captions)


def read_csv(files: Sequence[str | Path], img_key: str = IMAGE_KEY, caption_key: str = CAPTION_KEY,
             sep: str | None = None, image_root: str | Path | None = None) -> CsvTable:
    """Concatenate the rows of ``files`` (cached while the files are unchanged).

    ``sep`` None: "," for .csv and "\\t" for .tsv. Relative image paths are taken relative
    to ``image_root`` (default: the folder of each CSV file). Raises FileNotFoundError for a missing
    file and ValueError for an empty file or one without the named columns (the message
    lists the columns it has). Row problems (empty caption, missing image) are not
    checked here; ``CsvTable.load`` raises Skip for them.
    """
    if not files:
        raise ValueError("read_csv needs at least one CSV file, got none")
    names = tuple(str(f) for f in files)
    stamps = tuple(os.stat(f).st_mtime_ns if os.path.isfile(f) else -1 for f in names)
    root = None if image_root is None else str(Path(image_root).resolve())
    return _read_cached(names, stamps, img_key, caption_key, sep, root)


def check_has_sample(table: CsvTable) -> None:
    """Raise ValueError unless some row is usable (loads rows until the first good one)."""
    skips: Counter = Counter()
    for index in range(len(table)):
        try:
            table.load(index)
            return
        except Skip as s:
            skips[s.reason] += 1
    raise ValueError(f"no valid sample in {len(table)} CSV row(s) (skipped: {dict(skips) or 'no rows at all'})")
