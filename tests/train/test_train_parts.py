"""Loss, schedule, parameter groups, the optimizer step and validation metrics, each against
an independent computation."""
from __future__ import annotations

import math

import pytest
import torch
from open_clip_train.scheduler import cosine_lr

import train_fakes as fakes
from hiclip import create_model
from hiclip.train import contrastive_loss, lr_at
from hiclip.train.distributed import DistInfo
from hiclip.train.evaluate import recall_at_1
from hiclip.train.optim import param_groups
from hiclip.train.step import MAX_LOGIT_SCALE, StepOptions, accumulate_gradients, apply_gradients, autocast_factory


def test_contrastive_loss_matches_explicit_loops():
    torch.manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(5, 4), dim=1)
    txt = torch.nn.functional.normalize(torch.randn(5, 4), dim=1)
    scale = 3.0
    total = 0.0
    for i in range(5):
        row = [scale * sum(img[i, d].item() * txt[j, d].item() for d in range(4)) for j in range(5)]
        col = [scale * sum(txt[i, d].item() * img[j, d].item() for d in range(4)) for j in range(5)]
        total += (math.log(sum(math.exp(v) for v in row)) - row[i]) + (math.log(sum(math.exp(v) for v in col)) - col[i])
    assert contrastive_loss(img, txt, torch.tensor(scale)).item() == pytest.approx(total / 10, rel=1e-5)
    with pytest.raises(ValueError, match="one shape"):
        contrastive_loss(img, txt[:4], torch.tensor(scale))


def test_lr_at_matches_open_clip_cosine_schedule():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    reference = cosine_lr(opt, 0.1, 10, 50)
    for step in range(50):
        assert lr_at(step, 0.1, 10, 50) == pytest.approx(reference(step), abs=1e-12)
    assert lr_at(0, 0.1, 10, 50) == pytest.approx(0.01)
    assert lr_at(30, 0.1, 10, 50) == pytest.approx(0.05)  # half-way through the cosine
    assert lr_at(50, 0.1, 10, 50) == pytest.approx(0.0, abs=1e-12)
    assert lr_at(5, 0.1, 0, 5) == pytest.approx(0.0, abs=1e-12)  # past the end stays at 0
    with pytest.raises(ValueError, match="step must be"):
        lr_at(-1, 0.1, 10, 50)


def test_param_groups_exclude_norms_biases_scale_and_embeddings(tmp_path):
    model = create_model(fakes.write_config(tmp_path))
    decayed, kept = param_groups(model, 0.2)
    names = {id(p): n for n, p in model.named_parameters()}
    expect_kept = {n for n, p in model.named_parameters()
                   if n.endswith("bias") or ".ln_" in n or n.startswith("ln_") or "embedding" in n
                   or n in ("logit_scale", "visual.class_embedding")}
    assert {names[id(p)] for p in kept["params"]} == expect_kept
    assert {names[id(p)] for p in decayed["params"]} == set(names.values()) - expect_kept
    assert "visual.conv1.weight" not in expect_kept and "text_projection" not in expect_kept
    assert decayed["weight_decay"] == 0.2 and kept["weight_decay"] == 0.0


def _model_and_batch(tmp_path, size=6, dtype=torch.float32):
    torch.manual_seed(0)
    images, tokens = fakes.global_batch(0, 0, 0, size)
    return create_model(fakes.write_config(tmp_path)).to(dtype), (images.to(dtype), tokens)


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def test_accumulated_micro_batches_give_full_batch_gradient(tmp_path):
    # float64: an exactness test must not depend on float32 summation order
    model, (images, tokens) = _model_and_batch(tmp_path, dtype=torch.float64)
    opts = StepOptions(DistInfo())
    full = accumulate_gradients(model, [(images, tokens)], opts)
    expected = _grads(model)
    model.zero_grad()
    micro = accumulate_gradients(model, [(images[:2], tokens[:2]), (images[2:], tokens[2:])], opts)
    assert micro.item() == pytest.approx(full.item(), abs=1e-12)
    for name, g in _grads(model).items():
        torch.testing.assert_close(g, expected[name], atol=1e-10, rtol=1e-9, msg=name)


def test_grad_checkpointing_gives_same_gradient(tmp_path):
    model, batch = _model_and_batch(tmp_path, dtype=torch.float64)
    accumulate_gradients(model, [batch], StepOptions(DistInfo()))
    expected = _grads(model)
    model.zero_grad()
    model.visual.transformer.grad_checkpointing = model.transformer.grad_checkpointing = True
    accumulate_gradients(model, [batch], StepOptions(DistInfo()))
    for name, g in _grads(model).items():
        torch.testing.assert_close(g, expected[name], atol=1e-10, rtol=1e-9, msg=name)


def test_apply_gradients_clips_and_clamps_logit_scale(tmp_path):
    model, batch = _model_and_batch(tmp_path)
    with torch.no_grad():
        model.logit_scale.fill_(4.0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opts = StepOptions(DistInfo(), grad_clip=0.5)
    accumulate_gradients(model, [batch], opts)
    expected_norm = math.sqrt(sum(float((p.grad ** 2).sum()) for p in model.parameters()))
    norm = apply_gradients(model, torch.optim.SGD(model.parameters(), lr=1.0), opts)
    assert norm == pytest.approx(expected_norm, rel=1e-5) and norm > 0.5
    step = math.sqrt(sum(float(((p.detach() - before[n]) ** 2).sum()) for n, p in model.named_parameters()
                         if n != "logit_scale"))
    scale_step = before["logit_scale"] - model.logit_scale.detach()
    assert math.sqrt(step ** 2 + float(scale_step) ** 2) == pytest.approx(0.5, rel=1e-4)
    with torch.no_grad():
        model.logit_scale.fill_(9.0)
    accumulate_gradients(model, [batch], opts)
    apply_gradients(model, torch.optim.SGD(model.parameters(), lr=0.0), opts)
    assert model.logit_scale.item() == pytest.approx(MAX_LOGIT_SCALE)
    assert all(p.grad is None for p in model.parameters())


def test_bf16_autocast_on_cpu_close_to_fp32_and_amp_needs_cuda(tmp_path):
    model, batch = _model_and_batch(tmp_path)
    fp32 = accumulate_gradients(model, [batch], StepOptions(DistInfo()))
    bf16 = accumulate_gradients(model, [batch], StepOptions(DistInfo(), autocast_factory("bf16", torch.device("cpu"))))
    assert bf16.item() == pytest.approx(fp32.item(), abs=0.05)
    with pytest.raises(ValueError, match="needs a CUDA device"):
        autocast_factory("amp", torch.device("cpu"))


def test_recall_at_1_matches_loop():
    torch.manual_seed(1)
    img, txt = torch.randn(7, 3), torch.randn(7, 3)
    sims = [[float(img[i] @ txt[j]) for j in range(7)] for i in range(7)]
    i2t = sum(max(range(7), key=lambda j: sims[i][j]) == i for i in range(7)) / 7
    t2i = sum(max(range(7), key=lambda j: sims[j][i]) == i for i in range(7)) / 7
    assert recall_at_1(img, txt) == pytest.approx((i2t, t2i))
    assert recall_at_1(torch.ones(3, 2), torch.ones(3, 2)) == (0.0, 0.0)  # ties count against the model
