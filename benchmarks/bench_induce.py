"""Hierarchy induction cost against the encoder forward pass that produced the links (issue 5):
trees for N captions and region hierarchies for N images of the embedded world.

    python benchmarks/bench_induce.py               # HiCLIP-Tiny, 1000 captions and images
"""
from __future__ import annotations

import argparse
import time

import torch

import hiclip
from hiclip.data.world import ShapesWorld
from hiclip.induce.run import caption_trees, image_groups


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="HiCLIP-Tiny")
    p.add_argument("--n", type=int, default=1000, help="captions and images (default: %(default)s)")
    args = p.parse_args()
    model, _, transform = hiclip.create_model_and_transforms(args.model)
    model.eval()
    tokenizer = hiclip.get_tokenizer(args.model)
    world = ShapesWorld("test", size=args.n, image_size=model.cfg.vision_cfg.image_size)
    samples = [world[i] for i in range(args.n)]
    t0 = time.perf_counter()
    _, text_fwd = caption_trees(model, tokenizer, [s.caption for s in samples])
    text_total = time.perf_counter() - t0
    images = [s.image for s in samples]
    t0 = time.perf_counter()
    _, image_fwd = image_groups(model, transform, images)
    image_total = time.perf_counter() - t0
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.model}, {args.n} each\n")
    print("| what | encoder forward (s) | induction (s) | induction / forward |")
    print("|---|---:|---:|---:|")
    for what, fwd, total in (("caption trees", text_fwd, text_total), ("image groups", image_fwd, image_total)):
        ind = total - fwd  # tokenising / transforming + tree or component building
        print(f"| {what} | {fwd:.2f} | {ind:.2f} | {ind / fwd:.2f} |")


if __name__ == "__main__":
    main()
