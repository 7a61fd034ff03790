"""Samples/s of the training data pipeline: decode (or render) + augment + tokenize.

For each source (the embedded world, WebDataset shards, CSV + image files) and each
number of DataLoader workers, one epoch of ``hiclip.data.loader.make_loader`` with the
model's train transform and tokenizer is timed, worker start-up included (a Loader is
built per epoch in training too). The shards and the CSV are written from the embedded
world into a temporary directory first.

    PYTHONPATH=src python benchmarks/bench_data.py --model HiCLIP-Tiny --workers 0 1 2
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from hiclip import create_model_and_transforms, get_tokenizer
from hiclip.data.export import write_csv, write_webdataset
from hiclip.data.loader import DataSpec, make_loader
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
    return parser.parse_args()


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
    _, transform, _ = create_model_and_transforms(args.model)
    tokenizer = get_tokenizer(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        specs = write_sources(Path(tmp), args.samples, args.image_size, args.image_format, args.shards)
        print(f"{args.model}, {args.image_size} px, batch {args.batch_size}, {args.samples} samples per epoch")
        print(f"{'source':<8}{'workers':>8}{'samples':>9}{'samples/s':>11}")
        for kind in args.kinds:
            for workers in args.workers:
                rate, count = samples_per_second(specs[kind], transform, tokenizer, args.batch_size, workers)
                print(f"{kind:<8}{workers:>8}{count:>9}{rate:>11.0f}")


if __name__ == "__main__":
    main()
