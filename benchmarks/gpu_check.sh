#!/usr/bin/env bash
# GPU check (issue 14): on a machine with one CUDA GPU, in at most ~8 minutes, prints a compact summary of
#   1. the CUDA-marked tests (flex kernel vs per-head loops, model, memory, 1-GPU NCCL torchrun step,
#      amp and bf16 training steps, exact resume on GPU);
#   2. training throughput (pairs/s) and peak memory of HiCLIP-ViT-B-16 vs open_clip ViT-B-16,
#      batch 256, bf16 autocast, side by side;
#   3. the wall time of the demo (`make demo`'s command) with --device cuda, within what time is left.
# Uses make test's environment (.venv; created by `make install` when missing). Logs go to
# $GPU_CHECK_OUT (default gpu_check_out/).
#
#     bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
BUDGET=${GPU_CHECK_BUDGET:-470}   # seconds for the whole script
OUT=${GPU_CHECK_OUT:-gpu_check_out}
PY=.venv/bin/python
mkdir -p "$OUT"
left() { echo $((BUDGET - SECONDS)); }

if [ ! -x "$PY" ]; then
    make install >"$OUT/install.txt" 2>&1 || { echo "gpu_check: no .venv and 'make install' failed (see $OUT/install.txt)"; exit 1; }
fi
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: torch sees no CUDA GPU; nothing to check"; exit 1
fi
GPU=$("$PY" -c "import torch; p = torch.cuda.get_device_properties(0); print(f'{p.name}, {p.total_memory / 2**30:.0f} GiB')")
TORCH=$("$PY" -c "import torch; print(torch.__version__, 'CUDA', torch.version.cuda)")

# 1. CUDA tests (the flex kernels compile on first use: most of this stage is compiling)
timeout 240 "$PY" -m pytest -m cuda tests -rfEs -p no:cacheprovider >"$OUT/tests.txt" 2>&1
TESTS_RC=$?
TESTS=$(grep -E "^(=+ )?[0-9]+ (passed|failed|skipped|error)" "$OUT/tests.txt" | tail -1 | tr -d '=')
[ $TESTS_RC -eq 124 ] && TESTS="stopped after 240 s ($TESTS)"

# 2. throughput and peak memory, batch 256, bf16 autocast (warm-up steps include compiling)
timeout $(( $(left) > 200 ? 170 : $(left) / 2 )) "$PY" benchmarks/bench_model.py --part models --device cuda \
    --precision bf16 --batch 256 --steps 10 --warmup 3 --rounds 1 \
    --models open_clip:ViT-B-16 hiclip:HiCLIP-ViT-B-16 >"$OUT/bench.txt" 2>&1
BENCH_RC=$?

# 3. the demo on the GPU, in the time that is left
DEMO_LIMIT=$(( $(left) - 5 ))
DEMO_START=$SECONDS
if [ "$DEMO_LIMIT" -gt 30 ]; then
    rm -rf "$OUT/demo"
    timeout "$DEMO_LIMIT" .venv/bin/hiclip demo --device cuda --out "$OUT/demo" --no-progress >"$OUT/demo.txt" 2>&1
    DEMO_RC=$?
    DEMO_S=$((SECONDS - DEMO_START))
    case $DEMO_RC in
        0) DEMO="finished in ${DEMO_S} s" ;;
        124) DEMO="not finished after ${DEMO_S} s (stopped; rerun continues it: hiclip demo --device cuda --out $OUT/demo)" ;;
        *) DEMO="failed after ${DEMO_S} s (exit $DEMO_RC, see $OUT/demo.txt)" ;;
    esac
else
    DEMO="not run (${DEMO_LIMIT} s left)"
fi

echo "== hiclip gpu_check: $GPU; torch $TORCH; ${SECONDS} s =="
echo "CUDA tests: ${TESTS:-no summary (exit $TESTS_RC, see $OUT/tests.txt)}"
grep -E "^(FAILED|ERROR)" "$OUT/tests.txt" | head -20
grep -q "flex attention unavailable" "$OUT/tests.txt" "$OUT/bench.txt" 2>/dev/null && \
    echo "WARNING: flex attention fell back to the lean kernel: $(grep -h -m1 'flex attention unavailable' "$OUT"/*.txt)"
if [ $BENCH_RC -eq 0 ]; then
    grep -E "^\|" "$OUT/bench.txt"
else
    echo "benchmark: exit $BENCH_RC (124 = out of time); last lines:"; tail -5 "$OUT/bench.txt"
fi
echo "demo --device cuda: $DEMO"
