"""``hiclip finetune`` and ``hiclip finetune-eval``: VQA / visual entailment on the towers' token states."""
from __future__ import annotations

import argparse

from ..cli_options import config_from_args
from ..vl import FinetuneConfig, evaluate_checkpoint, finetune
from ..vl.evaluate import format_metrics
from .options import FinetuneEvalOptions


def run(args: argparse.Namespace) -> int:
    s = finetune(config_from_args(args, FinetuneConfig))
    print(f"fine-tuning {s['stopped']}: step {s['steps']}/{s['total_steps']}, {s['time_s']:.1f} s, "
          f"{s['samples_per_s']:.1f} samples/s, final train loss {s['final_loss']:.4f}")
    print("skipped examples: " + (", ".join(f"{r}: {n}" for r, n in sorted(s["skipped"].items())) or "none"))
    if s["final_val"]:
        print(f"val ({int(s['final_val']['samples'])} examples): {format_metrics(s['final_val'])}")
        print(f"results: {s['final_val']['results']}")
    print(f"checkpoint: {s['checkpoint']}")
    return 0


def evaluate(args: argparse.Namespace) -> int:
    o = config_from_args(args, FinetuneEvalOptions)
    m = evaluate_checkpoint(o.checkpoint, o.split, o.task, o.samples, o.batch_size, o.workers, o.device,
                            o.output_dir, o.predictions)
    print(f"{o.split} ({int(m['samples'])} examples): {format_metrics(m)}\nresults: {m['results']}")
    return 0
