"""On a CUDA GPU: the fused flex kernel against the per-head loops and the materialised model,
its memory, and training on the GPU (1-GPU NCCL under torchrun, amp, bf16, exact resume).

Every test here is marked ``cuda`` and skipped without a GPU (tests/conftest.py);
``benchmarks/gpu_check.sh`` runs them. GPU arithmetic is float32 with TF32 off, compared with
float64 CPU references at float32 tolerances scaled by each tensor's size.
"""
import copy
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import hiclip
from hiclip import kernels_flex
from hiclip.attention import GridStructure, ResidualBlock
from hiclip.config import load_config
from hiclip.kernels import Prior
from hiclip.train import TrainConfig, train
from hiclip.checkpoint import Checkpoint
from hiclip.train.metrics import read_csv

sys.path.insert(0, str(Path(__file__).parent))
from test_attention import CASES, make, run  # noqa: E402

pytestmark = pytest.mark.cuda
HERE = Path(__file__).parent
TINY = {"embed_dim": 16,
        "vision_cfg": {"image_size": 16, "patch_size": 4, "width": 32, "layers": 2, "heads": 2,
                       "pool": "avg", "hierarchy": {"enabled": True}},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2,
                     "hierarchy": {"enabled": True}}}


@pytest.fixture(autouse=True)
def ieee_float32():
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def assert_close32(got: torch.Tensor, ref: torch.Tensor, name: str = "", rtol: float = 1e-4) -> None:
    """float32 result vs float64 reference: error norm within ``rtol`` of the reference's norm."""
    err, size = (got.detach().double().cpu() - ref.detach().double().cpu()).norm().item(), ref.norm().item()
    assert err <= rtol * size + 1e-6, f"{name}: |got - ref| = {err:.3g}, |ref| = {size:.3g}"


@pytest.mark.parametrize("renormalize", [False, True])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("kernel", ["flex", "lean"])
def test_cuda_kernels_match_loops(kernel, case, renormalize):
    ref_attn = make(renormalize)
    ref_out, ref_grads = run(ref_attn, case, reference=True)
    attn = copy.deepcopy(ref_attn).float().cuda()
    attn.kernel = kernel
    out, grads = run(attn, case, reference=False, device="cuda", dtype=torch.float32)
    assert kernels_flex._failed is None, kernels_flex._failed
    assert_close32(out, ref_out, "out")
    for name, g in grads.items():
        assert_close32(g, ref_grads[name], name)


def model_outputs(device: str, dtype: torch.dtype, kernel: str):
    cfg = load_config("HiCLIP-Tiny")
    cfg.vision_cfg.hierarchy.kernel = cfg.text_cfg.hierarchy.kernel = kernel
    torch.manual_seed(0)
    model = hiclip.create_model("HiCLIP-Tiny", config=cfg).to(device, dtype)
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1)).to(device, dtype)
    tokens = hiclip.get_tokenizer("HiCLIP-Tiny")(["a red circle left of a blue square", "a star", "two"]).to(device)
    out = model(images, tokens)
    logits = out["logit_scale"] * out["image_features"] @ out["text_features"].T
    torch.nn.functional.cross_entropy(logits, torch.arange(3, device=device)).backward()
    with torch.no_grad():
        _, img = model.encode_image(images, return_hierarchy=True)
        _, txt = model.encode_text(tokens, return_hierarchy=True)
    grads = {n: p.grad for n, p in model.named_parameters()}
    return {**{k: out[k] for k in ("image_features", "text_features")}, "h": img.h, "links": txt.links}, grads


def test_cuda_model_flex_matches_materialized_cpu():
    ref, ref_grads = model_outputs("cpu", torch.float64, "materialized")
    got, grads = model_outputs("cuda", torch.float32, "auto")
    assert kernels_flex._failed is None, kernels_flex._failed
    for key in ref:
        assert_close32(got[key], ref[key], key)
    for name in ref_grads:
        assert_close32(grads[name], ref_grads[name], name, rtol=1e-3)


def saved_bytes_of_one_block(kernel: str | None, batch: int = 32) -> int:
    """GPU memory held for backward by one ViT-B/16 block, bf16 (B, 197, 768)."""
    torch.manual_seed(0)
    block = ResidualBlock(768, 12, link_dim=None if kernel is None else 64, kernel=kernel or "auto")
    block = block.cuda().to(torch.bfloat16)
    x = torch.randn(batch, 197, 768, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    grid = None if kernel is None else GridStructure((14, 14), offset=1)
    block(x, None, grid, None)[0].sum().backward()  # compile / warm up
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    y = block(x, None, grid, None)[0]
    held = torch.cuda.memory_allocated() - before
    y.sum().backward()
    return held


def test_cuda_flex_keeps_no_per_head_square_for_backward():
    """Beyond plain attention, flex keeps the links, O(N) tables and (multiplicative form) the second
    call's output and LSE, (B, heads, N, d) < (B, heads, N, N): less than one per-head square, where
    the materialised kernel keeps at least two (softmax and weights)."""
    square = 32 * 12 * 197 * 197 * 2  # one (B, heads, N, N) bf16 tensor
    plain, flex, materialized = (saved_bytes_of_one_block(k) for k in (None, "flex", "materialized"))
    assert flex - plain < 0.75 * square, (plain, flex, square)
    assert materialized - flex > square, (flex, materialized, square)


@pytest.fixture(scope="module")
def tiny_json(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("cfg") / "tiny.json"
    path.write_text(json.dumps(TINY))
    return str(path)


def config(out: Path, model: str, **changes) -> TrainConfig:
    base = dict(output_dir=str(out), model=model, data="world", world_samples=64, val_data="none", batch_size=8,
                steps=3, warmup_steps=1, save_every=0, val_every=0, workers=0, tensorboard=False, progress=False,
                device="cuda")
    return TrainConfig(**{**base, **changes})


@pytest.mark.parametrize("precision", ["amp", "bf16"])
def test_cuda_training_steps_in_low_precision(tiny_json, tmp_path, precision):
    summary = train(config(tmp_path, tiny_json, precision=precision, steps=2))
    assert summary["steps"] == 2
    rows = read_csv(tmp_path / "metrics.csv")
    assert len(rows) == 2 and all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)


def test_cuda_training_resumes_exactly(tiny_json, tmp_path):
    straight = train(config(tmp_path / "a", tiny_json))
    first = train(config(tmp_path / "b", tiny_json, max_minutes=0.0))
    assert straight["steps"] == 3 and first["stopped"] == "time budget" and first["steps"] == 1
    second = train(config(tmp_path / "b", tiny_json, resume="latest"))
    assert second["start_step"] == 1 and second["steps"] == 3
    a = [r["loss"] for r in read_csv(tmp_path / "a" / "metrics.csv")]
    b = [r["loss"] for r in read_csv(tmp_path / "b" / "metrics.csv")]
    assert len(a) == 3 and b == pytest.approx(a, abs=1e-4)
    sa = Checkpoint.load(tmp_path / "a" / "checkpoints" / "latest.pt").state_dict
    sb = Checkpoint.load(tmp_path / "b" / "checkpoints" / "latest.pt").state_dict
    for name in sa:  # GPU reductions (flex's captured-buffer gradients use atomics): not bitwise
        err, size = (sb[name].double() - sa[name].double()).norm().item(), sa[name].double().norm().item()
        assert err <= 1e-4 * size + 1e-6, f"{name}: |resumed - straight| = {err:.3g}, |straight| = {size:.3g}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cuda_torchrun_nccl_step_matches_one_process(tiny_json, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "--master_port", str(free_port()),
           str(HERE / "cuda_nccl_worker.py"), tiny_json, str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = torch.load(tmp_path / "result.pt", weights_only=False)
    assert result["backend"] == "nccl"
    assert result["ddp_loss"] == pytest.approx(result["loss"], abs=1e-5)
    for name, g in result["grads"].items():
        assert_close32(result["ddp_grads"][name], g, name)
    assert result["params_changed"]
