"""Where the demo's time goes (issue 23): cProfile of one trained run's `evaluate` stage (zero-shot,
retrieval, compositional on the world, the demo's sizes) and its `induce` stage (read-outs chosen on
validation, scored on test), the top functions by cumulative time and the share of each stage that a
few named parts take; `--stage step`: torch.profiler's operator table of training steps (the demo's
batch of 64 world pairs, hiclip.train's own step) of each `--compare` model, CPU time per step.

    python benchmarks/profile_stages.py --model HiCLIP-Tiny --checkpoint demo_out/runs/HiCLIP-Tiny-s0/checkpoints/latest.pt
    python benchmarks/profile_stages.py --model CFG.json --checkpoint CKPT --stage induce --top 30
    python benchmarks/profile_stages.py --stage step --compare HiCLIP-Tiny CLIP-Tiny

Profiling slows Python-heavy code more than torch kernels: read the shares, not the seconds.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import tempfile
import time

import torch

from hiclip import factory
from hiclip.demo.config import DemoConfig
from hiclip.demo.pipeline import EVAL_TASKS
from hiclip.eval.run import evaluate_model
from hiclip.induce.run import induce_eval

PARTS = {  # label: function names (file:function suffixes) whose cumulative time is reported
    "text encoder": ("model.py:encode_text",), "image encoder": ("model.py:encode_image",),
    "compositional scoring": ("compositional.py:score_trials",),
    "read-out search (trees)": ("select.py:choose_readout",),
    "grouping search (ARI)": ("select.py:choose_grouping",),
    "tree building": ("trees.py:build_tree",), "ARI": ("scores.py:adjusted_rand",),
}


def run_stage(stage: str, net, transform, tokenizer, demo: DemoConfig) -> None:
    if stage == "evaluate":
        evaluate_model(net, transform, tokenizer, model_name="profile", pretrained=None, tasks=EVAL_TASKS,
                       datasets=("world",), output_dir=tempfile.mkdtemp(), verbose=False, batch_size=128,
                       device="cpu", world_size=demo.eval_samples, seed=0,
                       world_image_size=net.cfg.vision_cfg.image_size)
    else:
        induce_eval(net, transform, tokenizer, n=demo.induce_samples, seed=0, progress=False, tune_split="val")


def part_times(stats: pstats.Stats) -> dict[str, float]:
    """Cumulative seconds of each PARTS entry (the outermost call of each function)."""
    out = {}
    for label, names in PARTS.items():
        total = 0.0
        for (file, _, func), (_, _, _, cum, _) in stats.stats.items():  # type: ignore[attr-defined]
            if any(f"{file.rsplit('/', 1)[-1]}:{func}" == n for n in names):
                total += cum
        if total:
            out[label] = total
    return out


def profile_steps(models: list[str], steps: int, top: int) -> None:
    """CPU time per training step and the top operators of each model (same batches, same step)."""
    from torch.profiler import ProfilerActivity, profile

    from bench_train import world_batches
    from hiclip import create_model_and_transforms
    from hiclip.train.distributed import DistInfo
    from hiclip.train.optim import make_optimizer
    from hiclip.train.step import StepOptions, accumulate_gradients, apply_gradients

    per_step = {}
    for name in models:
        batches = world_batches(name, factory.load_config(name).vision_cfg.image_size, 64, steps + 1)
        torch.manual_seed(0)
        model, _, _ = create_model_and_transforms(name)
        optimizer, opts = make_optimizer(model, 5e-4, (0.9, 0.98), 1e-6, 0.2), StepOptions(DistInfo())
        for i, batch in enumerate(batches):
            if i == 1:
                prof = profile(activities=[ProfilerActivity.CPU])
                prof.__enter__()
            accumulate_gradients(model, [batch], opts)
            apply_gradients(model, optimizer, opts)
        prof.__exit__(None, None, None)
        events = prof.key_averages()
        per_step[name] = sum(e.self_cpu_time_total for e in events) / 1e6 / steps
        print(f"\n## {name}: {per_step[name]:.2f} s of CPU per step\n\n```")
        print(events.table(sort_by="self_cpu_time_total", row_limit=top, max_name_column_width=40))
        print("```")
    first = models[0]
    for name in models[1:]:
        print(f"{first} / {name}: {per_step[first] / per_step[name]:.2f}x CPU time per step")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="HiCLIP-Tiny", help="model name or JSON config of the checkpoint")
    ap.add_argument("--checkpoint", help="a trained run's checkpoint (evaluate, induce)")
    ap.add_argument("--stage", choices=("evaluate", "induce", "both", "step"), default="both")
    ap.add_argument("--compare", nargs="+", default=["HiCLIP-Tiny", "CLIP-Tiny"], help="models of --stage step")
    ap.add_argument("--steps", type=int, default=3, help="profiled training steps per model (--stage step)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--top", type=int, default=15, help="functions listed per stage")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.stage == "step":
        return profile_steps(args.compare, args.steps, args.top)
    if args.checkpoint is None:
        ap.error("--checkpoint is needed for the evaluate and induce stages")
    net, transform, tokenizer = factory.load_for_inference(args.model, args.checkpoint, "cpu")
    demo = DemoConfig()
    for stage in (("evaluate", "induce") if args.stage == "both" else (args.stage,)):
        profile = cProfile.Profile()
        start = time.perf_counter()
        profile.enable()
        run_stage(stage, net, transform, tokenizer, demo)
        profile.disable()
        wall = time.perf_counter() - start
        stats = pstats.Stats(profile)
        print(f"\n## {stage}: {wall:.1f} s under the profiler ({args.threads} thread(s))\n")
        print("| part | s | share |\n|---|---:|---:|")
        for label, sec in part_times(stats).items():
            print(f"| {label} | {sec:.1f} | {sec / wall:.0%} |")
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats("cumulative").print_stats(args.top)
        print("\n```\n" + "\n".join(line[:160] for line in text.getvalue().splitlines()[4:]) + "\n```")


if __name__ == "__main__":
    main()
