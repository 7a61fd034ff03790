"""Samples/s of the training data pipeline: decode (or render) + augment + tokenize.

For each source (the embedded world, WebDataset shards, CSV + image files) and each
number of DataLoader workers, one epoch of ``hiclip.data.loader.make_loader`` with the
model's train transform and tokenizer is timed, worker start-up included (a Loader is
built per epoch in training too). The shards and the CSV are written from the embedded
world into a temporary directory first.

    PYTHONPATH=src python benchmarks/bench_data.py --model HiCLIP-Tiny --workers 0 1 2

``--big``: real-world-sized images instead. It draws ``--big-images`` PNGs of
``--big-size`` pixels (a smooth gradient, filled shapes and per-pixel noise, so they
compress like photographs, about 20 MB each), lists them in a CSV of ``--big-rows`` rows
(cycling through them) and times the raw CSV; then runs ``hiclip prepare`` on the distinct
images (timed) and times the prepared shards. The prepared shard is copied to give
``--big-samples`` samples, which is exactly what preparing a CSV that repeats the images
would write (``prepare`` is deterministic per row) without decoding the same files again.

    PYTHONPATH=src python benchmarks/bench_data.py --big --workers 0 1 2
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from hiclip import create_model_and_transforms, get_tokenizer
from hiclip.data.export import write_csv, write_webdataset
from hiclip.data.loader import DataSpec, make_loader
from hiclip.data.prepare import prepare
from hiclip.data.world import ShapesWorld


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="HiCLIP-Tiny", help="model whose transforms and tokenizer are used")
    parser.add_argument("--samples", type=int, default=2048, help="samples per source (one epoch)")
    parser.add_argument("--batch-size", type=int, default=128, help="batch size")
    parser.add_argument("--image-size", type=int, default=64, help="rendered / stored image size in pixels")
    parser.add_argument("--image-format", choices=("png", "jpg"), default="jpg",
                        help="encoding of the images in the shards and image files")
    parser.add_argument("--shards", type=int, default=8, help="number of WebDataset shards")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="DataLoader worker counts")
    parser.add_argument("--kinds", nargs="+", choices=("world", "wds", "csv"), default=["world", "wds", "csv"],
                        help="sources to measure")
    parser.add_argument("--big", action="store_true", help="large real-world-sized PNGs: raw CSV vs prepared shards")
    parser.add_argument("--big-images", type=int, default=20, help="distinct large PNGs")
    parser.add_argument("--big-size", type=int, nargs=2, default=[4000, 3000], help="their width and height")
    parser.add_argument("--big-rows", type=int, default=100, help="rows of the raw CSV (cycling through the images)")
    parser.add_argument("--big-samples", type=int, default=2000, help="samples of the prepared shards")
    parser.add_argument("--prepare-size", type=int, default=256, help="hiclip prepare --size")
    parser.add_argument("--prepare-workers", type=int, default=2, help="hiclip prepare --workers")
    return parser.parse_args()


def draw_big_png(path: Path, width: int, height: int, seed: int) -> None:
    """A photograph-like PNG: gradient, 30 filled shapes, noise of +-12 grey levels."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width, y / height, (x + y) / (width + height)], -1) * rng.uniform(80, 200, 3)
    image = Image.fromarray(base.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(30):
        x0, y0 = rng.integers(0, width), rng.integers(0, height)
        box = (x0, y0, x0 + rng.integers(50, width // 3), y0 + rng.integers(50, height // 3))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    pixels = np.asarray(image, dtype=np.int16) + rng.integers(-12, 13, (height, width, 3), dtype=np.int16)
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, compress_level=6)


def big_sources(root: Path, args: argparse.Namespace, image_size: int) -> dict[str, DataSpec]:
    """DataSpecs of the raw CSV of large PNGs and of their prepared shards (module docstring)."""
    width, height = args.big_size
    paths = [root / "png" / f"{i}.png" for i in range(args.big_images)]
    paths[0].parent.mkdir(parents=True)
    started = time.perf_counter()
    for i, path in enumerate(paths):
        draw_big_png(path, width, height, seed=i)
    mb = sum(p.stat().st_size for p in paths) / 2 ** 20
    print(f"drew {len(paths)} PNGs of {width}x{height} ({mb:.0f} MB) in {time.perf_counter() - started:.0f} s")
    rows = [f"{paths[i % len(paths)]},picture number {i % len(paths)}" for i in range(args.big_rows)]
    (root / "raw.csv").write_text("filepath,title\n" + "\n".join(rows) + "\n")
    (root / "distinct.csv").write_text("filepath,title\n" + "\n".join(rows[:len(paths)]) + "\n")
    started = time.perf_counter()
    summary = prepare([root / "distinct.csv"], root / "once", size=args.prepare_size,
                      samples_per_shard=len(paths), workers=args.prepare_workers, progress=False)
    seconds = time.perf_counter() - started
    print(f"hiclip prepare --size {args.prepare_size} --workers {args.prepare_workers}: {len(paths)} images in "
          f"{seconds:.1f} s ({len(paths) / seconds:.1f} images/s)")
    copies = -(-args.big_samples // len(paths))
    (root / "shards").mkdir()
    for c in range(copies):
        shutil.copyfile(summary["shards"][0], root / "shards" / f"shard-{c:06d}.tar")
    (root / "shards" / "sizes.json").write_text(json.dumps({f"shard-{c:06d}.tar": len(paths) for c in range(copies)}))
    return {"raw csv": DataSpec("csv", [str(root / "raw.csv")], image_size=image_size),
            "prepared": DataSpec("wds", [str(root / "shards" / f"shard-{{000000..{copies - 1:06d}}}.tar")],
                                 image_size=image_size)}


def write_sources(root: Path, n: int, image_size: int, image_format: str, shards: int) -> dict[str, DataSpec]:
    """DataSpecs of the world and of its copies as shards and as a CSV under ``root``."""
    world = ShapesWorld("train", size=n, image_size=image_size)
    paths = write_webdataset(world, root / "wds", samples_per_shard=-(-n // shards), image_format=image_format)
    table = write_csv(world, root / "csv", image_format=image_format)
    return {"world": DataSpec("world", world_size_samples=n, image_size=image_size),
            "wds": DataSpec("wds", [str(p) for p in paths]),
            "csv": DataSpec("csv", [str(table)])}


def samples_per_second(spec: DataSpec, transform, tokenizer, batch_size: int, workers: int) -> tuple[float, int]:
    """(samples/s, samples) of one epoch."""
    start = time.perf_counter()
    loader = make_loader(spec, transform, tokenizer, batch_size, workers=workers)
    count = sum(len(images) for images, _ in loader)
    return count / (time.perf_counter() - start), count


def main() -> None:
    args = parse_args()
    model, transform, _ = create_model_and_transforms(args.model)
    tokenizer = get_tokenizer(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        if args.big:
            specs = big_sources(Path(tmp), args, model.cfg.vision_cfg.image_size)
        else:
            specs = write_sources(Path(tmp), args.samples, args.image_size, args.image_format, args.shards)
            specs = {k: specs[k] for k in args.kinds}
        print(f"{args.model}, batch {args.batch_size}")
        print(f"{'source':<10}{'workers':>8}{'samples':>9}{'samples/s':>11}")
        for kind, spec in specs.items():
            for workers in args.workers:
                rate, count = samples_per_second(spec, transform, tokenizer, args.batch_size, workers)
                print(f"{kind:<10}{workers:>8}{count:>9}{rate:>11.1f}", flush=True)


if __name__ == "__main__":
    main()
