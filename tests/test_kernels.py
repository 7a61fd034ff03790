"""hiclip.kernels: the flex path's arithmetic and the lean kernel's generic branch on CPU (float64,
against the per-head loops of test_attention), fallback, and a whole model lean vs materialised."""
import logging
import sys
from pathlib import Path

import pytest
import torch

import hiclip
from hiclip import kernels, kernels_flex
from hiclip.config import load_config

sys.path.insert(0, str(Path(__file__).parent))
from test_attention import CASES, make, run  # noqa: E402


def dense_attend(q, k, v, score_mod):
    """What flex_attention computes, with ``score_mod`` evaluated over broadcast index grids."""
    B, H, N, d = q.shape
    idx = torch.arange(N)
    s = score_mod((q * d ** -0.5) @ k.transpose(-1, -2), torch.arange(B)[:, None, None, None],
                  torch.arange(H)[None, :, None, None], idx[None, None, :, None], idx[None, None, None, :])
    return torch.softmax(s, -1) @ v, torch.logsumexp(s, -1)


@pytest.fixture
def flex_on_cpu(monkeypatch):
    """Route ``kernel="flex"`` on CPU through kernels_flex with :func:`dense_attend` instead of the
    compiled kernel: everything of the flex path but the fused kernel itself."""
    monkeypatch.setattr(kernels, "resolve", lambda kernel, device: kernel)
    monkeypatch.setattr(kernels_flex, "_failed", None)
    monkeypatch.setattr(kernels_flex, "_compiled", lambda q, k, v, mask, kind, tables, geometry, mult:
                        kernels_flex.attention_with_tables(dense_attend, q, k, v, mask, kind, tables, geometry, mult))


def math_attend(q, k, v, bias):
    return kernels._attend_math(q, k, v, bias)


@pytest.mark.parametrize("renormalize", [False, True])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("variant", ["flex-arithmetic", "lean-generic"])
def test_kernel_variants_match_loops(variant, case, renormalize, request, monkeypatch):
    if variant == "flex-arithmetic":
        request.getfixturevalue("flex_on_cpu")
        kernel = "flex"
    else:  # the lean kernel's non-CPU forward (used on CUDA when flex is unavailable)
        monkeypatch.setattr(kernels, "_attend", math_attend)
        kernel = "lean"
    attn = make(renormalize, kernel=kernel)
    ref_out, ref_grads = run(attn, case, reference=True)
    out, grads = run(attn, case, reference=False)
    torch.testing.assert_close(out, ref_out, atol=1e-12, rtol=1e-10)
    for name, g in grads.items():
        torch.testing.assert_close(g, ref_grads[name], atol=1e-12, rtol=1e-10, msg=lambda m: f"{name}: {m}")


def test_flex_failure_falls_back_to_lean_with_one_log_line(monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("no Triton here\nsecond line")
    monkeypatch.setattr(kernels, "resolve", lambda kernel, device: kernel)
    monkeypatch.setattr(kernels_flex, "_failed", None)
    monkeypatch.setattr(kernels_flex, "_compiled", broken)
    flex, lean = make(kernel="flex"), make(kernel="lean")
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    prior = torch.rand(2, 5, 5, dtype=torch.float64) * 0.9 + 0.1
    with caplog.at_level(logging.WARNING, logger="hiclip.kernels_flex"):
        for _ in range(3):
            torch.testing.assert_close(flex(x, prior=prior), lean(x, prior=prior), atol=0, rtol=0)
    assert [r.getMessage() for r in caplog.records] == [
        "flex attention unavailable (RuntimeError: no Triton here); using the lean attention kernel"]


def test_kernel_config_field_is_checked_and_reaches_every_layer():
    cfg = load_config("HiCLIP-Tiny")
    cfg.text_cfg.hierarchy.kernel = "materialized"
    model = hiclip.create_model("HiCLIP-Tiny", config=cfg)
    assert {b.attn.kernel for b in model.transformer.resblocks} == {"materialized"}
    assert {b.attn.kernel for b in model.visual.transformer.resblocks} == {"auto"}
    with pytest.raises(ValueError, match="hierarchy.kernel must be one of"):
        hiclip.config.HierarchyCfg(kernel="fused")


def model_loss_and_grads(kernel: str, renormalize: bool, causal: bool):
    cfg = load_config("HiCLIP-Tiny")
    for tower in (cfg.vision_cfg, cfg.text_cfg):
        tower.hierarchy.kernel, tower.hierarchy.renormalize = kernel, renormalize
    cfg.text_cfg.causal = causal
    torch.manual_seed(0)
    model = hiclip.create_model("HiCLIP-Tiny", config=cfg).double()  # exactness in float64
    images = torch.randn(3, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    tokens = hiclip.get_tokenizer("HiCLIP-Tiny")(["a red circle left of a blue square", "a star", "two"])
    out = model(images, tokens)
    logits = out["logit_scale"] * out["image_features"] @ out["text_features"].T
    loss = torch.nn.functional.cross_entropy(logits, torch.arange(3))
    loss.backward()
    return out, {n: p.grad for n, p in model.named_parameters()}


@pytest.mark.parametrize("renormalize,causal", [(False, True), (True, True), (False, False)])
def test_whole_model_lean_equals_materialized(renormalize, causal):
    ref_out, ref_grads = model_loss_and_grads("materialized", renormalize, causal)
    out, grads = model_loss_and_grads("lean", renormalize, causal)
    for key in ("image_features", "text_features"):
        torch.testing.assert_close(out[key], ref_out[key], atol=1e-12, rtol=1e-10)
    assert grads.keys() == ref_grads.keys()
    for name, g in grads.items():
        torch.testing.assert_close(g, ref_grads[name], atol=1e-12, rtol=1e-9, msg=lambda m: f"{name}: {m}")
    assert grads["visual.transformer.resblocks.3.attn.link_q.weight"].abs().max() > 0


@pytest.mark.parametrize("case", list(CASES))
def test_prior_tables_give_log_prior_and_prior(case):
    """The O(N) tables evaluated at every index pair = the dense log prior = log of the reference C."""
    structure, _, _, n = CASES[case]()
    attn = make()
    links = structure.links(*attn.neighbour_qk(torch.randn(2, n, 16, dtype=torch.float64)))
    log_c = structure.log_prior(links)
    torch.testing.assert_close(structure.tables(links).log_dense(n), log_c, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(torch.exp(log_c), structure.prior(links), atol=1e-14, rtol=1e-12)
    assert torch.isfinite(log_c).all() and log_c.max() == 0


def test_flex_path_inside_activation_checkpointing(flex_on_cpu):
    """The first-call probe (forward + backward on copies) must not disturb an enclosing checkpoint."""
    kernels_flex._probed.clear()
    attn = make(kernel="flex")
    structure, mask, _, n = CASES["grid-cls"]()
    x = torch.randn(2, n, 16, dtype=torch.float64, requires_grad=True)

    def layer(x):
        return attn(x, mask, kernels.Prior(structure, structure.links(*attn.neighbour_qk(x))))
    g_ckpt, = torch.autograd.grad(torch.utils.checkpoint.checkpoint(layer, x, use_reentrant=False).sum(), x)
    assert kernels_flex._failed is None
    g, = torch.autograd.grad(layer(x).sum(), x)
    torch.testing.assert_close(g_ckpt, g, atol=1e-12, rtol=1e-10)
