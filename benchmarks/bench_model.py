"""Model benchmark, side by side on this machine (issues 2 and 14).

1. ``models``: training step (forward + backward + AdamW) of each model spec, each run in its
   own child process, rounds interleaved (the order alternates, so pairs see the same machine
   state), medians over rounds. Peak memory on CPU: ``VmHWM`` of the child's
   ``/proc/self/status`` (its own peak RSS; ``ru_maxrss`` of a child survives ``exec`` and can
   report the parent's peak); on CUDA: ``torch.cuda.max_memory_allocated``.
   A spec is ``open_clip:NAME`` or ``hiclip:NAME[,kernel=K][,renormalize=true]``.
2. ``priors``: chain_prior / grid_prior at N = 49, 196, 784 against the O(N^3) triangular-matrix form.
3. ``block``: one ViT-B/16 block, forward + backward: plain, and hierarchy-aware with each kernel and form.

    python benchmarks/bench_model.py --part models --threads 1 --rounds 5     # CPU, batch 8, fp32
    python benchmarks/bench_model.py --part models --device cuda --precision bf16 --batch 256 --rounds 1
    python benchmarks/bench_model.py --part priors
    python benchmarks/bench_model.py --part block --threads 1
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import time

import torch

MODELS = ["open_clip:ViT-B-16", "hiclip:HiCLIP-ViT-B-16"]


def _status_mib(field: str) -> float:
    """``VmHWM`` / ``VmRSS`` of this process from /proc/self/status, MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _build(spec: str) -> torch.nn.Module:
    lib, rest = spec.split(":", 1)
    name, *options = rest.split(",")
    if lib == "open_clip":
        import open_clip
        return open_clip.create_model(name)
    import hiclip
    from hiclip.config import load_config
    cfg = load_config(name)
    for option in options:
        key, value = option.split("=")
        for tower in (cfg.vision_cfg, cfg.text_cfg):
            setattr(tower.hierarchy, key, value.lower() == "true" if key == "renormalize" else value)
    return hiclip.create_model(name, config=cfg)


def _median_time(fn, repeats: int, sync=lambda: None) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_one(spec: str, batch: int, steps: int, device: str, precision: str, warmup: int) -> dict:
    """Train-step time and peak memory of one model, in this (child) process."""
    torch.manual_seed(0)
    dev = torch.device(device)
    import_rss = _status_mib("VmRSS")
    model = _build(spec).to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    images = torch.randn(batch, 3, 224, 224, device=dev)
    tokens = torch.randint(1, 49000, (batch, 77))
    tokens[:, 0], tokens[:, 20] = 49406, 49407
    tokens[:, 21:] = 0
    tokens, labels = tokens.to(dev), torch.arange(batch, device=dev)
    autocast = (lambda: torch.autocast(dev.type, dtype=torch.bfloat16)) if precision == "bf16" else contextlib.nullcontext
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def step():
        with autocast():
            img = model.encode_image(images, normalize=True)
            txt = model.encode_text(tokens, normalize=True)
            logits = model.logit_scale.exp() * img.float() @ txt.float().T
            loss = (torch.nn.functional.cross_entropy(logits, labels)
                    + torch.nn.functional.cross_entropy(logits.T, labels)) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):  # allocates optimizer state; compiles kernels on CUDA
        step()
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    train_s = _median_time(step, steps, sync)
    if dev.type == "cuda":
        peak, growth = torch.cuda.max_memory_allocated(dev) / 2 ** 20, float("nan")
    else:
        peak = _status_mib("VmHWM")
        growth = peak - import_rss
    flex = sys.modules.get("hiclip.kernels_flex")  # imported only when a CUDA layer asked for flex
    return {"model": spec, "train_step_s": train_s, "pairs_per_s": batch / train_s, "peak_mib": peak,
            "growth_mib": growth, "flex_fallback": getattr(flex, "_failed", None)}


def bench_models(args: argparse.Namespace) -> list[dict]:
    """Each round runs every model once, the order alternating between rounds; medians over rounds."""
    models = args.models
    runs: dict[str, list[dict]] = {spec: [] for spec in models}
    for r in range(args.rounds):
        for spec in (models if r % 2 == 0 else models[::-1]):
            cmd = [sys.executable, __file__, "--one", spec, "--batch", str(args.batch), "--steps", str(args.steps),
                   "--device", args.device, "--precision", args.precision, "--warmup", str(args.warmup)]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"{spec} failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
            runs[spec].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"  round {r + 1}: {spec} {runs[spec][-1]['train_step_s']:.3f} s/step, "
                  f"peak {runs[spec][-1]['peak_mib']:.0f} MiB", file=sys.stderr)
    rows = [{key: (statistics.median(x[key] for x in runs[spec]) if key not in ("model", "flex_fallback")
                   else runs[spec][-1][key]) for key in runs[spec][0]} for spec in models]
    first = runs[models[0]]
    for row in rows:  # per-round ratios: each pair ran back to back, so machine drift cancels
        mine = runs[row["model"]]
        row["steps_by_round"] = [x["train_step_s"] for x in mine]
        row["step_ratio"] = statistics.median(x["train_step_s"] / f["train_step_s"] for x, f in zip(mine, first))
        row["peak_ratio"] = statistics.median(x["peak_mib"] / f["peak_mib"] for x, f in zip(mine, first))
    where = "torch.cuda.max_memory_allocated" if args.device.startswith("cuda") else "VmHWM of the child process"
    print(f"\nTraining step (fwd + bwd + AdamW), batch {args.batch}, {args.precision}, {args.device}, "
          f"threads {args.threads or torch.get_num_threads()}; median of {args.steps} steps per run, "
          f"median over {args.rounds} interleaved rounds; peak memory = {where}\n")
    print("(\"vs first\": median over rounds of the ratio to the first model's run in the same round)\n")
    print("| model | train step (s) | vs first | pairs/s | peak memory (MiB) | vs first | growth after import (MiB) "
          "| step per round (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['model']} | {r['train_step_s']:.3f} | {r['step_ratio']:.3f}x | {r['pairs_per_s']:.1f} "
              f"| {r['peak_mib']:.0f} | {r['peak_ratio']:.3f}x | {r['growth_mib']:.0f} "
              f"| {', '.join(f'{t:.2f}' for t in r['steps_by_round'])} |")
    for r in rows:
        if r["flex_fallback"]:
            print(f"\n{r['model']}: flex attention unavailable ({r['flex_fallback']}); it ran the lean kernel")
    return rows


def triangular_chain_prior(links: torch.Tensor) -> torch.Tensor:
    """O(N^3) reference (Tree Transformer): C = exp(U (A U) + transpose), U upper-triangular ones.

    links (B, N-1) -> (B, N, N).
    """
    B, n = links.shape[0], links.shape[1] + 1
    A = torch.zeros(B, n, n, dtype=links.dtype)
    idx = torch.arange(n - 1)
    A[:, idx, idx + 1] = torch.log(links)
    U = torch.ones(n, n, dtype=links.dtype).triu()
    g = U @ (A @ U)  # g[i, j] = sum_{k=i}^{j-1} log a_k for j > i
    g = g.triu(1)
    return torch.exp(g + g.transpose(-1, -2))


def triangular_grid_prior(h: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """O(N^3) reference: the triangular-matrix form along the row-major and column-major chains.

    h (B, H, W-1), v (B, H-1, W) -> (B, H*W, H*W).
    """
    B, H, W = h.shape[0], h.shape[1], h.shape[2] + 1
    n = H * W
    ones = torch.ones(B, H, 1, dtype=h.dtype)
    row_chain = torch.cat([h, ones], -1).reshape(B, n)[:, :-1]  # across row ends: unused
    col_chain = torch.cat([v, ones.transpose(1, 2)[:, :, :W]], 1).transpose(1, 2).reshape(B, n)[:, :-1]
    G_row = torch.log(triangular_chain_prior(row_chain))  # (B, N, N) over row-major order
    G_col = torch.log(triangular_chain_prior(col_chain))  # over column-major order
    r, c = torch.arange(n) // W, torch.arange(n) % W
    cm = c * H + r  # column-major index of each row-major token
    # path 1: row r_i from c_i to c_j (token k = (r_i, c_j)), then column c_j from r_i to r_j
    k1 = r[:, None] * W + c[None, :]
    p1 = G_row.gather(2, k1.expand(B, n, n)) + G_col[:, cm[k1], cm[None, :].expand(n, n)]
    k2 = r[None, :] * W + c[:, None]  # (r_j, c_i)
    p2 = G_col[:, cm[:, None].expand(n, n), cm[k2]] + G_row[:, k2, torch.arange(n)[None, :].expand(n, n)]
    return torch.exp(torch.maximum(p1, p2))


def bench_priors(batch: int) -> None:
    from hiclip.hierarchy import chain_prior, grid_prior
    print(f"\nConstituent prior, batch {batch}, float32, median of 7 (ms)\n")
    print("| N | chain_prior | O(N^3) chain | speed-up | grid_prior | O(N^3) grid | speed-up |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for side in (7, 14, 28):
        n = side * side
        g = torch.Generator().manual_seed(0)
        links = torch.rand(batch, n - 1, generator=g) * 0.999 + 1e-3
        h = torch.rand(batch, side, side - 1, generator=g) * 0.999 + 1e-3
        v = torch.rand(batch, side - 1, side, generator=g) * 0.999 + 1e-3
        torch.testing.assert_close(triangular_grid_prior(h, v), grid_prior(h, v), rtol=1e-3, atol=1e-6)
        t = [1e3 * _median_time(f, 7) for f in (lambda: chain_prior(links), lambda: triangular_chain_prior(links),
                                               lambda: grid_prior(h, v), lambda: triangular_grid_prior(h, v))]
        print(f"| {n} | {t[0]:.2f} | {t[1]:.2f} | {t[1] / t[0]:.1f}x | {t[2]:.2f} | {t[3]:.2f} | {t[3] / t[2]:.1f}x |")


def bench_block(batch: int, repeats: int) -> None:
    """One residual block at ViT-B/16 size (N = 197, width 768, 12 heads): plain, and
    hierarchy-aware with each kernel and both forms, forward + backward, interleaved."""
    from hiclip.attention import GridStructure, ResidualBlock
    torch.manual_seed(0)
    x = torch.randn(batch, 197, 768, requires_grad=True)
    grid = GridStructure((14, 14), offset=1)
    variants = {"plain": (ResidualBlock(768, 12), None)}
    for kernel in ("materialized", "lean"):
        for renorm in (False, True):
            variants[f"{kernel}, {'renormalised' if renorm else 'multiplicative'}"] = (
                ResidualBlock(768, 12, link_dim=64, renormalize=renorm, kernel=kernel), grid)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):  # interleaved, so drifts of the machine hit all alike
        for name, (block, structure) in variants.items():
            times[name].append(_median_time(lambda: block(x, None, structure, None)[0].sum().backward(), 1))
    plain = statistics.median(times["plain"])
    print(f"\nOne ViT-B/16 block, batch {batch}, forward + backward, interleaved, median of {repeats} (ms)\n")
    print("| block | ms | vs plain |")
    print("|---|---:|---:|")
    for name, t in times.items():
        print(f"| {name} | {1e3 * statistics.median(t):.0f} | {statistics.median(t) / plain:.3f}x |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=["all", "models", "priors", "block"], default="all")
    p.add_argument("--models", nargs="+", default=MODELS, help="model specs; the first is the reference "
                   "(default: %(default)s)")
    p.add_argument("--batch", type=int, default=8, help="training batch (default: %(default)s)")
    p.add_argument("--steps", type=int, default=3, help="timed steps per run (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds over the models (default: %(default)s)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="fp32, or bf16 autocast (default: %(default)s)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    p.add_argument("--prior-batch", type=int, default=8, help="batch for the prior timings (default: %(default)s)")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(run_one(args.one, args.batch, args.steps, args.device, args.precision, args.warmup)))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if args.part in ("all", "priors"):
        bench_priors(args.prior_batch)
    if args.part in ("all", "block"):
        bench_block(args.batch, 11)
    if args.part in ("all", "models"):
        bench_models(args)


if __name__ == "__main__":
    main()
