"""Cost of the DeCLIP objective: one HiDeCLIP-Tiny step vs one HiCLIP-Tiny step (issue 10).

Both models train on the same embedded-world samples (decoded once and held in memory:
the data pipeline is not measured), each in its own format: the CLIP model one view
per pair, the DeCLIP model two image views and two text views (masked, EDA). A step is
hiclip.train's own: forward, loss, backward, AdamW, logit_scale clamp. Steps of the two
models are interleaved (A B B A A B ...), so a busy machine slows both alike; the
table reports medians over all timed steps and the median of the per-round ratios, of
wall time and of this process's CPU time (all threads; steadier on a shared machine).

    python benchmarks/bench_declip.py                        # batch 64, fp32, 2 threads
    python benchmarks/bench_declip.py --pairs HiCLIP-Tiny:HiDeCLIP-Tiny CLIP-Tiny:DeCLIP-Tiny --rounds 20
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from hiclip import create_model_and_transforms, get_tokenizer
from hiclip.data.augment import two_view_transform
from hiclip.data.loader import DataSpec, make_loader
from hiclip.data.text_views import WORLD_EDA_OPS, TextViews
from hiclip.train.declip import DeCLIPLoss
from hiclip.train.distributed import DistInfo
from hiclip.train.optim import make_optimizer
from hiclip.train.step import StepOptions, apply_gradients, backward_step


class Trainer:
    """A model, its optimizer and its batches; ``step(i)`` times one optimizer step on batch i."""

    def __init__(self, name: str, batch_size: int, count: int):
        torch.manual_seed(0)
        model, transform, _ = create_model_and_transforms(name)
        tokenizer = get_tokenizer(name)
        self.module = model
        if model.cfg.objective == "declip":
            self.module = DeCLIPLoss(model)
            transform = two_view_transform(model.cfg.vision_cfg.image_size, world=True)
            tokenizer = TextViews(tokenizer, 0, 0, ops=WORLD_EDA_OPS, wordnet=False)
        spec = DataSpec.parse("world", image_size=model.cfg.vision_cfg.image_size,
                              world_size_samples=batch_size * count)
        self.batches = list(make_loader(spec, transform, tokenizer, batch_size, workers=0))
        self.model, self.name = model, name
        self.optimizer = make_optimizer(model, 5e-4, (0.9, 0.98), 1e-6, 0.2)
        self.opts = StepOptions(DistInfo())

    def step(self, i: int) -> tuple[float, float]:
        """(wall seconds, CPU seconds) of one step."""
        wall, cpu = time.perf_counter(), time.process_time()
        backward_step(self.module, [self.batches[i % len(self.batches)]], self.opts)
        apply_gradients(self.model, self.optimizer, self.opts)
        return time.perf_counter() - wall, time.process_time() - cpu


def compare(base: Trainer, other: Trainer, rounds: int, warmup: int) -> dict[str, dict[str, float]]:
    """-> {"wall": ..., "cpu": ...}, each {base, other: median s/step; ratio: median per-round ratio, lo, hi}."""
    for i in range(warmup):
        base.step(i), other.step(i)
    times: dict[str, list[tuple[float, float]]] = {"base": [], "other": []}
    for r in range(rounds):
        order = [("base", base), ("other", other)][:: 1 if r % 2 == 0 else -1]
        for key, trainer in order:
            times[key].append(trainer.step(warmup + r))
    out = {}
    for k, clock in enumerate(("wall", "cpu")):
        a, b = [t[k] for t in times["base"]], [t[k] for t in times["other"]]
        ratios = [y / x for x, y in zip(a, b)]
        out[clock] = {"base": statistics.median(a), "other": statistics.median(b),
                      "ratio": statistics.median(ratios), "lo": min(ratios), "hi": max(ratios)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", nargs="+", default=["HiCLIP-Tiny:HiDeCLIP-Tiny"],
                   help="BASE:DECLIP model pairs (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=64, help="pairs per step (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=10, help="timed steps per model (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per model first (default: %(default)s)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default: %(default)s)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"batch {args.batch_size}, fp32, {args.threads} thread(s), {args.rounds} interleaved rounds")
    print(f"{'base':14s} {'DeCLIP model':16s} {'clock':5s} {'base s/step':>11s} {'DeCLIP s/step':>13s} "
          f"{'ratio (median)':>15s} {'range':>12s}")
    for pair in args.pairs:
        a, b = pair.split(":")
        count = args.warmup + args.rounds
        result = compare(Trainer(a, args.batch_size, count), Trainer(b, args.batch_size, count),
                         args.rounds, args.warmup)
        for clock, r in result.items():
            print(f"{a:14s} {b:16s} {clock:5s} {r['base']:11.3f} {r['other']:13.3f} {r['ratio']:14.2f}x "
                  f"{r['lo']:5.2f}-{r['hi']:.2f}x")


if __name__ == "__main__":
    main()
