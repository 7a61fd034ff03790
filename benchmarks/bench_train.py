"""Training throughput (pairs/s) of HiCLIP vs CLIP on this machine (issue 3).

Every model trains on the same batches of the embedded world (decoded once, held in
memory, so the data pipeline is not measured: see bench_data.py) with the same batch
size, steps and precision, through hiclip.train's own step (forward, contrastive loss,
backward, AdamW with its parameter groups, logit_scale clamp).

    python benchmarks/bench_train.py                       # HiCLIP-Tiny vs CLIP-Tiny, batch 64
    python benchmarks/bench_train.py --batch-size 32 --steps 5 --threads 2
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from hiclip import create_model_and_transforms, get_tokenizer
from hiclip.data.loader import DataSpec, make_loader
from hiclip.train.distributed import DistInfo
from hiclip.train.optim import make_optimizer
from hiclip.train.step import StepOptions, accumulate_gradients, apply_gradients, autocast_factory


def world_batches(model_name: str, image_size: int, batch_size: int, count: int) -> list:
    """``count`` training batches (images (B, 3, S, S), tokens (B, ctx)) of the embedded world."""
    _, transform, _ = create_model_and_transforms(model_name)
    spec = DataSpec.parse("world", image_size=image_size, world_size_samples=batch_size * count)
    loader = make_loader(spec, transform, get_tokenizer(model_name), batch_size, workers=0)
    return list(loader)


def step_times(model_name: str, batches: list, warmup: int, precision: str) -> list[float]:
    """Seconds of each optimizer step after ``warmup`` untimed ones."""
    torch.manual_seed(0)
    model, _, _ = create_model_and_transforms(model_name)
    optimizer = make_optimizer(model, 5e-4, (0.9, 0.98), 1e-6, 0.2)
    opts = StepOptions(DistInfo(), autocast_factory(precision, torch.device("cpu")))
    times = []
    for i, batch in enumerate(batches):
        start = time.perf_counter()
        accumulate_gradients(model, [batch], opts)
        apply_gradients(model, optimizer, opts)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["HiCLIP-Tiny", "CLIP-Tiny"], help="models to compare")
    p.add_argument("--batch-size", type=int, default=64, help="pairs per step (default: %(default)s)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per model (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (default: %(default)s)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="(default: %(default)s)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads (default: %(default)s)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    sizes = {create_model_and_transforms(m)[0].cfg.vision_cfg.image_size for m in args.models}
    if len(sizes) != 1:
        raise SystemExit(f"models must share an image size to train on the same data, got {sorted(sizes)}")
    batches = world_batches(args.models[0], sizes.pop(), args.batch_size, args.warmup + args.steps)
    print(f"batch {args.batch_size}, {args.steps} timed steps, {args.precision}, {args.threads} thread(s)")
    print(f"{'model':16s} {'s/step (median)':>16s} {'pairs/s':>9s} {'speed':>9s}")
    first = None
    for name in args.models:
        t = statistics.median(step_times(name, batches, args.warmup, args.precision))
        first = first or t
        print(f"{name:16s} {t:16.3f} {args.batch_size / t:9.1f} {first / t:9.2f}x")


if __name__ == "__main__":
    main()
