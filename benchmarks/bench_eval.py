"""Evaluation throughput on this CPU (issue 4): images/s of zero-shot feature extraction and of a
whole zero-shot task, for HiCLIP-Tiny and HiCLIP-ViT-B-32 (untrained weights; speed only).

    python benchmarks/bench_eval.py                 # both models
    python benchmarks/bench_eval.py --n 256 --models HiCLIP-Tiny
"""
from __future__ import annotations

import argparse
import time

import torch
from torch.utils.data import DataLoader

import hiclip
from hiclip.eval import zeroshot
from hiclip.eval.datasets import collate_skip_none, world_classification


def measure(name: str, n: int, batch_size: int) -> dict[str, float]:
    model, _, transform = hiclip.create_model_and_transforms(name)
    model.eval()
    tokenizer = hiclip.get_tokenizer(name)
    t0 = time.perf_counter()
    dataset, templates = world_classification("shape", n, transform, split="test", seed=0, image_size=64)
    prepare = time.perf_counter() - t0
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate_skip_none)
    t0 = time.perf_counter()
    with torch.no_grad():
        for images, _ in loader:
            model.encode_image(images)
    encode = time.perf_counter() - t0
    t0 = time.perf_counter()
    metrics = zeroshot.evaluate(model, loader, tokenizer, dataset.classes, templates, "cpu")
    task = time.perf_counter() - t0
    return {"model": name, "images": n, "render_s": prepare, "encode_img_per_s": n / encode,
            "task_s": task, "task_img_per_s": n / task, "acc1": metrics["acc1"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["HiCLIP-Tiny", "HiCLIP-ViT-B-32"])
    p.add_argument("--n", type=int, default=512, help="images per model (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=64, help="(default: %(default)s)")
    args = p.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; zero-shot 'world/shape' task, "
          f"{args.n} images, batch {args.batch_size}\n")
    print("| model | encode_image (img/s) | whole zero-shot task incl. class prompts (img/s) |")
    print("|---|---:|---:|")
    for name in args.models:
        r = measure(name, args.n, args.batch_size)
        print(f"| {r['model']} | {r['encode_img_per_s']:.1f} | {r['task_img_per_s']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
