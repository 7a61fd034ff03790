"""Writers of a ``ShapesWorld`` to disk: WebDataset shards and an open_clip-style CSV."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict
from pathlib import Path

import webdataset as wds
from PIL import Image

from hiclip.data.csvdata import CAPTION_KEY, IMAGE_KEY
from hiclip.data.world import Sample, ShapesWorld

_FORMATS = {"png": "PNG", "jpg": "JPEG"}


def _check_format(image_format: str) -> str:
    if image_format not in _FORMATS:
        raise ValueError(f"image_format must be one of {tuple(_FORMATS)}, got {image_format!r}")
    return image_format


def _encode(image: Image.Image, image_format: str) -> bytes:
    buf = io.BytesIO()
    extra = {"quality": 95} if image_format == "jpg" else {}
    image.save(buf, format=_FORMATS[image_format], **extra)
    return buf.getvalue()


def sample_metadata(sample: Sample) -> dict:
    """JSON-ready ground truth of a sample: objects, relations, tree, index, split."""
    return {"objects": [asdict(o) for o in sample.objects],
            "relations": [list(r) for r in sample.relations],
            "tree": sample.tree, "index": sample.index, "split": sample.split}


def write_webdataset(world: ShapesWorld, out_dir: str | Path, samples_per_shard: int = 1000,
                     image_format: str = "png") -> list[Path]:
    """Write ``world`` as shards ``out_dir/world-000000.tar``, ``world-000001.tar``, ...

    Each sample has key ``"%08d" % index`` and members "<image_format>" (encoded
    image), "txt" (caption) and "json" (``sample_metadata``). Returns the shard paths.
    """
    _check_format(image_format)
    if samples_per_shard < 1:
        raise ValueError(f"samples_per_shard must be >= 1, got {samples_per_shard}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shards = []
    for shard, start in enumerate(range(0, len(world), samples_per_shard)):
        path = out / f"world-{shard:06d}.tar"
        with wds.TarWriter(str(path), mtime=0.0) as sink:
            for index in range(start, min(start + samples_per_shard, len(world))):
                sample = world[index]
                sink.write({"__key__": f"{index:08d}",
                            image_format: _encode(sample.image, image_format),
                            "txt": sample.caption, "json": sample_metadata(sample)})
        shards.append(path)
    return shards


def write_csv(world: ShapesWorld, out_dir: str | Path, image_format: str = "png",
              sep: str = ",") -> Path:
    """Write images ``out_dir/images/<index>.<image_format>`` and ``out_dir/captions.csv``.

    Columns: "filepath" (absolute path, so that open_clip's CsvDataset, which opens
    the paths as given, works from any directory), "title" (caption), "tree".
    Returns the CSV path.
    """
    _check_format(image_format)
    out = Path(out_dir).resolve()
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    path = out / "captions.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f, delimiter=sep)
        writer.writerow([IMAGE_KEY, CAPTION_KEY, "tree"])
        for sample in world:
            image_path = images / f"{sample.index}.{image_format}"
            image_path.write_bytes(_encode(sample.image, image_format))
            writer.writerow([str(image_path), sample.caption, sample.tree])
    return path
