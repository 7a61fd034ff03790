"""Model benchmark, side by side on this machine (issue 2).

1. Training step (forward + backward + AdamW, fp32) and encode throughput of
   HiCLIP-ViT-B-16, open_clip ViT-B-16 and our CLIP-ViT-B-16, with peak memory.
   Each model runs in its own subprocess so that peak RSS is its own.
2. chain_prior / grid_prior at N = 49, 196, 784 against the O(N^3) triangular-matrix form.
3. One transformer block at ViT-B/16 size with and without hierarchy-aware attention.

    python benchmarks/bench_model.py                  # everything (several minutes on 2 cores)
    python benchmarks/bench_model.py --part priors    # only the prior timings
    python benchmarks/bench_model.py --part block     # one plain vs one hierarchy-aware ViT-B/16 block
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

MODELS = ["open_clip:ViT-B-16", "hiclip:CLIP-ViT-B-16", "hiclip:HiCLIP-ViT-B-16"]


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _build(spec: str) -> torch.nn.Module:
    lib, name = spec.split(":")
    if lib == "open_clip":
        import open_clip
        return open_clip.create_model(name)
    import hiclip
    return hiclip.create_model(name)


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def run_one(spec: str, batch: int, steps: int) -> dict:
    """Train-step time, encode throughput and peak RSS of one model (in this process)."""
    torch.manual_seed(0)
    base = _rss_mib()
    model = _build(spec).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    images = torch.randn(batch, 3, 224, 224)
    tokens = torch.randint(1, 49000, (batch, 77))
    tokens[:, 0], tokens[:, 20] = 49406, 49407
    tokens[:, 21:] = 0
    labels = torch.arange(batch)

    def step():
        img = model.encode_image(images, normalize=True)
        txt = model.encode_text(tokens, normalize=True)
        logits = model.logit_scale.exp() * img @ txt.T
        loss = (torch.nn.functional.cross_entropy(logits, labels)
                + torch.nn.functional.cross_entropy(logits.T, labels)) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up (allocates optimizer state)
    train_s = _median_time(step, steps)
    train_peak = _rss_mib() - base
    model.eval()
    with torch.no_grad():
        model.encode_image(images)
        img_s = _median_time(lambda: model.encode_image(images), steps)
        txt_s = _median_time(lambda: model.encode_text(tokens), steps)
    return {"model": spec, "train_step_s": train_s, "image_per_s": batch / img_s,
            "text_per_s": batch / txt_s, "peak_mib": train_peak}


def bench_models(batch: int, steps: int, rounds: int) -> list[dict]:
    """Each round runs every model once, in a rotated order; per model the median over rounds."""
    runs: dict[str, list[dict]] = {spec: [] for spec in MODELS}
    for r in range(rounds):
        for spec in MODELS[r % len(MODELS):] + MODELS[:r % len(MODELS)]:
            out = subprocess.run([sys.executable, __file__, "--one", spec, "--batch", str(batch),
                                  "--steps", str(steps)], check=True, capture_output=True, text=True)
            runs[spec].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"  round {r + 1}: measured {spec}", file=sys.stderr)
    rows = [{key: (statistics.median(x[key] for x in runs[spec]) if key != "model" else spec)
             for key in runs[spec][0]} for spec in MODELS]
    ref = rows[0]
    print(f"\nTraining step (fwd + bwd + AdamW), batch {batch}, fp32, median of {steps} steps, then median "
          f"over {rounds} rounds (each model in its own process, order rotated); peak = max RSS growth of the "
          "process after import\n")
    print("| model | train step (s) | vs open_clip | peak memory (MiB) | vs open_clip "
          "| encode_image (img/s) | encode_text (txt/s) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['train_step_s']:.3f} | {r['train_step_s'] / ref['train_step_s']:.3f}x "
              f"| {r['peak_mib']:.0f} | {r['peak_mib'] / ref['peak_mib']:.3f}x "
              f"| {r['image_per_s']:.1f} | {r['text_per_s']:.1f} |")
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


def bench_block(batch: int) -> None:
    """One residual block at ViT-B/16 size (N = 197, width 768, 12 heads): plain vs hierarchy-aware."""
    from hiclip.attention import GridStructure, ResidualBlock
    torch.manual_seed(0)
    x = torch.randn(batch, 197, 768, requires_grad=True)
    plain, hier = ResidualBlock(768, 12), ResidualBlock(768, 12, link_dim=64)
    grid = GridStructure((14, 14), offset=1)

    def step(block, structure):
        return lambda: block(x, None, structure, None)[0].sum().backward()
    runs = [step(plain, None), step(hier, grid)]
    times: list[list[float]] = [[], []]
    for _ in range(11):  # interleaved, so drifts of the machine hit both alike
        for i, fn in enumerate(runs):
            times[i].append(_median_time(fn, 1))
    t_plain, t_hier = (1e3 * statistics.median(t) for t in times)
    print(f"\nOne ViT-B/16 block, batch {batch}, forward + backward, interleaved, median of 11: plain {t_plain:.0f} ms, "
          f"hierarchy-aware {t_hier:.0f} ms ({t_hier / t_plain:.3f}x)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=["all", "models", "priors", "block"], default="all")
    p.add_argument("--batch", type=int, default=8, help="training batch (default: %(default)s)")
    p.add_argument("--steps", type=int, default=5, help="timed repeats per measurement (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=3, help="rounds over the three models (default: %(default)s)")
    p.add_argument("--prior-batch", type=int, default=8, help="batch for the prior timings (default: %(default)s)")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    if args.one:
        print(json.dumps(run_one(args.one, args.batch, args.steps)))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if args.part in ("all", "priors"):
        bench_priors(args.prior_batch)
    if args.part in ("all", "block"):
        bench_block(args.batch)
    if args.part in ("all", "models"):
        bench_models(args.batch, args.steps, args.rounds)


if __name__ == "__main__":
    main()
