"""Training throughput (pairs/s) of HiCLIP vs CLIP on this machine (issue 3).

Every model trains on the same batches of the embedded world (decoded once, held in
memory, so the data pipeline is not measured: see bench_data.py) with the same batch
size, steps and precision, through hiclip.train's own step (forward, contrastive loss,
backward, AdamW with its parameter groups, logit_scale clamp).

    python benchmarks/bench_train.py                       # HiCLIP-Tiny vs CLIP-Tiny, batch 64
    python benchmarks/bench_train.py --batch-size 32 --steps 5 --threads 2
    python benchmarks/bench_train.py --models CLIP-Tiny HiCLIP-Tiny HiCLIP-Tiny-Distance --steps 3 --rounds 9
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


class Trainer:
    """One model with its optimizer, stepped by hiclip.train's own step."""

    def __init__(self, model_name: str, precision: str):
        torch.manual_seed(0)
        self.model, _, _ = create_model_and_transforms(model_name)
        self.optimizer = make_optimizer(self.model, 5e-4, (0.9, 0.98), 1e-6, 0.2)
        self.opts = StepOptions(DistInfo(), autocast_factory(precision, torch.device("cpu")))

    def times(self, batches: list) -> list[float]:
        """Seconds of one optimizer step on each batch."""
        out = []
        for batch in batches:
            start = time.perf_counter()
            accumulate_gradients(self.model, [batch], self.opts)
            apply_gradients(self.model, self.optimizer, self.opts)
            out.append(time.perf_counter() - start)
        return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["HiCLIP-Tiny", "CLIP-Tiny"], help="models to compare")
    p.add_argument("--batch-size", type=int, default=64, help="pairs per step (default: %(default)s)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per model and round (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=1, help="interleaved rounds; the ratio is the median of the "
                                                         "per-round ratios (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (default: %(default)s)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="(default: %(default)s)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads (default: %(default)s)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    sizes = {create_model_and_transforms(m)[0].cfg.vision_cfg.image_size for m in args.models}
    if len(sizes) != 1:
        raise SystemExit(f"models must share an image size to train on the same data, got {sorted(sizes)}")
    batches = world_batches(args.models[0], sizes.pop(), args.batch_size, args.warmup + args.steps)
    trainers = {name: Trainer(name, args.precision) for name in args.models}
    for trainer in trainers.values():  # warm-up, untimed
        trainer.times(batches[:args.warmup])
    rounds: dict[str, list[float]] = {name: [] for name in args.models}
    for _ in range(args.rounds):  # the models alternate, round by round: a load change hits both
        for name, trainer in trainers.items():
            rounds[name].append(statistics.median(trainer.times(batches[args.warmup:])))
    first = args.models[0]
    print(f"batch {args.batch_size}, {args.steps} timed steps x {args.rounds} interleaved rounds, {args.precision}, "
          f"{args.threads} thread(s)")
    print(f"{'model':22s} {'s/step (median)':>16s} {'pairs/s':>9s} {'vs ' + first:>18s}")
    for name in args.models:
        t = statistics.median(rounds[name])
        ratio = statistics.median(r / f for r, f in zip(rounds[name], rounds[first]))
        print(f"{name:22s} {t:16.3f} {args.batch_size / t:9.1f} {ratio:17.3f}x")

if __name__ == "__main__":
    main()
