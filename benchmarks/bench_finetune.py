"""Cost of a fine-tuning step vs a HiCLIP-Tiny pretraining step (issue 11), side by side.

Three steps, each forward + backward + AdamW on in-memory batches of 64 (fp32):

- pretrain: ``hiclip.train``'s contrastive step on embedded-world image-caption pairs;
- finetune: ``hiclip.vl``'s step on world-vqa with the fusion head, encoders trained;
- frozen:   the same with ``--freeze-encoders`` (towers under no_grad, head only).

They run interleaved (one step of each per round, after warm-up), so a busy, shared machine
slows all three alike; medians over the rounds. Targets: finetune <= 1.5x pretrain,
frozen <= 0.8x pretrain.

    python benchmarks/bench_finetune.py                      # 2 threads, batch 64, 12 rounds
    python benchmarks/bench_finetune.py --head mlp --rounds 20
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from hiclip import create_model_and_transforms, get_tokenizer
from hiclip.data.loader import DataSpec, make_loader as make_pair_loader
from hiclip.train.distributed import DistInfo
from hiclip.train.optim import make_optimizer
from hiclip.train.step import StepOptions, accumulate_gradients, apply_gradients
from hiclip.vl import FinetuneConfig, HeadCfg, VLModel, load_task
from hiclip.vl.data import make_loader
from hiclip.vl.finetune import param_groups, train_step

MODEL = "HiCLIP-Tiny"


def pretrain_stepper(batches: list):
    torch.manual_seed(0)
    model, _, _ = create_model_and_transforms(MODEL)
    optimizer = make_optimizer(model, 5e-4, (0.9, 0.98), 1e-6, 0.2)
    opts = StepOptions(DistInfo())

    def step(i: int) -> None:
        accumulate_gradients(model, [batches[i % len(batches)]], opts)
        apply_gradients(model, optimizer, opts)
    return step


def finetune_stepper(batches: list, head: str, frozen: bool, num_classes: int):
    torch.manual_seed(0)
    encoder, _, _ = create_model_and_transforms(MODEL)
    model = VLModel(encoder, HeadCfg(head, num_classes), freeze_encoders=frozen)
    cfg = FinetuneConfig(task="world-vqa", output_dir="unused", head=head, freeze_encoders=frozen)
    optimizer = make_optimizer(model, cfg.lr, (cfg.beta1, cfg.beta2), cfg.eps, cfg.weight_decay,
                               groups=param_groups(model, cfg))

    def step(i: int) -> None:
        train_step(model, optimizer, batches[i % len(batches)], "ce", torch.device("cpu"))
    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-size", type=int, default=64, help="(default: %(default)s)")
    p.add_argument("--rounds", type=int, default=12, help="timed rounds, one step of each kind per round "
                                                          "(default: %(default)s)")
    p.add_argument("--warmup", type=int, default=2, help="untimed rounds first (default: %(default)s)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default: %(default)s)")
    p.add_argument("--head", default="fusion", choices=["fusion", "mlp"], help="(default: %(default)s)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    _, _, transform = create_model_and_transforms(MODEL)
    tokenizer, n = get_tokenizer(MODEL), 4
    spec = DataSpec.parse("world", image_size=64, world_size_samples=args.batch_size * n)
    pairs = list(make_pair_loader(spec, transform, tokenizer, args.batch_size, workers=0))
    task = load_task("world-vqa", "train", 64, args.batch_size * n)
    questions = list(make_loader(task, transform, tokenizer, args.batch_size))
    steppers = {"pretrain": pretrain_stepper(pairs),
                "finetune": finetune_stepper(questions, args.head, False, len(task.answers)),
                "frozen": finetune_stepper(questions, args.head, True, len(task.answers))}
    times: dict[str, list[float]] = {k: [] for k in steppers}
    for r in range(args.warmup + args.rounds):
        for name, step in steppers.items():
            start = time.perf_counter()
            step(r)
            if r >= args.warmup:
                times[name].append(time.perf_counter() - start)
    base = statistics.median(times["pretrain"])
    print(f"{MODEL}, batch {args.batch_size}, fp32, {args.threads} thread(s), head {args.head}, "
          f"{args.rounds} interleaved rounds (medians)")
    print(f"{'step':10s} {'s/step':>8s} {'vs pretrain':>12s} {'target':>8s}")
    for name, target in (("pretrain", None), ("finetune", 1.5), ("frozen", 0.8)):
        t = statistics.median(times[name])
        verdict = "" if target is None else f"<= {target}x " + ("met" if t / base <= target else "MISSED")
        print(f"{name:10s} {t:8.3f} {t / base:11.2f}x  {verdict}")


if __name__ == "__main__":
    main()
