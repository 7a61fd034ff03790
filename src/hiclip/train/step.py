"""One optimizer step: forward/backward over micro-batches with a feature cache, precision
handling, gradient clipping and the ``logit_scale`` clamp."""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, ContextManager

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .declip import DeCLIPLoss
from .distributed import DistInfo
from .loss import constituent_loss, contrastive_loss

MAX_LOGIT_SCALE = math.log(100.0)

Batch = tuple[torch.Tensor, torch.Tensor]  # images (b, 3, S, S), tokens (b, ctx)


def autocast_factory(precision: str, device: torch.device) -> Callable[[], ContextManager]:
    """fp32: no autocast; bf16: bfloat16 autocast (CPU or CUDA); amp: float16 autocast (CUDA only)."""
    if precision == "fp32":
        return contextlib.nullcontext
    if precision == "bf16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "amp":
        if device.type != "cuda":
            raise ValueError(f"precision 'amp' (float16 + GradScaler) needs a CUDA device, got {device}; "
                             "use --precision bf16 or fp32 on CPU")
        return lambda: torch.autocast("cuda", dtype=torch.float16)
    raise ValueError(f"precision must be fp32, bf16 or amp, got {precision!r}")


def make_scaler(precision: str) -> torch.amp.GradScaler | None:
    """A GradScaler for ``amp`` (float16), else None."""
    return torch.amp.GradScaler("cuda") if precision == "amp" else None


def unwrap(model: nn.Module) -> nn.Module:
    """The HiCLIP model inside DDP and / or an objective module."""
    model = model.module if isinstance(model, DistributedDataParallel) else model
    return model.model if isinstance(model, DeCLIPLoss) else model


@dataclass
class StepOptions:
    """How gradients are made: distributed layout, loss variant, precision, clipping."""

    info: DistInfo
    autocast: Callable[[], ContextManager] = contextlib.nullcontext
    scaler: torch.amp.GradScaler | None = None
    local_loss: bool = False
    gather_with_grad: bool = False
    grad_clip: float | None = None


def _to(batch: Batch, device: torch.device) -> Batch:
    images, tokens = batch
    return images.to(device, non_blocking=True), tokens.to(device, non_blocking=True)


def accumulate_gradients(model: nn.Module, batches: list[Batch], opts: StepOptions) -> torch.Tensor:
    """Backward the contrastive loss of the batch made of all ``batches``; returns the loss ().

    With several micro-batches (open_clip's feature cache), features of every
    micro-batch are first computed without gradients; then each micro-batch is run
    again with gradients and its features replace its cached ones in the loss, so the
    summed gradient equals the gradient of the loss over the whole accumulated batch.
    ``logit_scale`` keeps its gradient in the last pass only (not once per pass).
    Gradients are synchronised across ranks only in that last pass.
    """
    if not batches:
        raise ValueError("expected at least one micro-batch, got none")
    batches = [_to(b, opts.info.device) for b in batches]
    cached: list[dict[str, torch.Tensor]] = []
    if len(batches) > 1:
        with torch.no_grad(), opts.autocast():
            cached = [model(*b) for b in batches]
    for j, batch in enumerate(batches):
        last = j == len(batches) - 1
        sync = contextlib.nullcontext() if last or not isinstance(model, DistributedDataParallel) else model.no_sync()
        with sync:
            with opts.autocast():
                out = model(*batch)
            parts = cached[:j] + [out] + cached[j + 1:]
            scale = out["logit_scale"] if last else out["logit_scale"].detach()
            loss = contrastive_loss(torch.cat([p["image_features"] for p in parts]),
                                    torch.cat([p["text_features"] for p in parts]), scale, opts.info,
                                    local_loss=opts.local_loss, gather_with_grad=opts.gather_with_grad)
            if "span_features" in out:  # the constituent loss: one micro-batch, this rank's images
                if len(batches) > 1:
                    raise ValueError("constituent_loss is not supported with --accum-freq > 1")
                loss = loss + unwrap(model).cfg.constituent_loss * constituent_loss(out, scale)
            (opts.scaler.scale(loss) if opts.scaler else loss).backward()
    return loss.detach()


def declip_gradients(model: nn.Module, batches: list[Batch], opts: StepOptions, epoch: int = 0
                     ) -> dict[str, torch.Tensor]:
    """Backward the DeCLIP objective (``model``: a ``DeCLIPLoss``, maybe in DDP) on one micro-batch
    -> its detached terms ``{"loss", *declip.TERMS}``; its text queue is filled for ``epoch``."""
    if len(batches) != 1:
        raise ValueError(f"the DeCLIP objective takes one micro-batch per step, got {len(batches)} "
                         "(--accum-freq is not supported with it)")
    images, tokens = _to(batches[0], opts.info.device)
    with opts.autocast():
        terms = model(images, tokens, epoch)
    (opts.scaler.scale(terms["loss"]) if opts.scaler else terms["loss"]).backward()
    return {k: v.detach() for k, v in terms.items()}


def clip_gradients(model: nn.Module, batches: list[Batch], opts: StepOptions, epoch: int = 0
                   ) -> dict[str, torch.Tensor]:
    """Backward the CLIP objective (:func:`accumulate_gradients`) -> ``{"loss"}``."""
    return {"loss": accumulate_gradients(model, batches, opts)}


def apply_gradients(model: nn.Module, optimizer: torch.optim.Optimizer, opts: StepOptions) -> float:
    """Clip, step, zero the gradients and clamp the model's ``logit_scale`` (if it has one) to [0, ln 100].

    Returns the gradient norm before clipping. With a non-finite norm and no
    GradScaler (which skips such steps itself) the parameters are left unchanged.
    """
    params = [p for p in model.parameters() if p.grad is not None]
    if opts.scaler is not None:
        opts.scaler.unscale_(optimizer)
    norm = float(torch.nn.utils.clip_grad_norm_(params, opts.grad_clip or float("inf")))
    if opts.scaler is not None:
        opts.scaler.step(optimizer)
        opts.scaler.update()
    elif math.isfinite(norm):
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    scale = getattr(unwrap(model), "logit_scale", None)  # a fine-tuned task model has none of its own
    if scale is not None:
        with torch.no_grad():
            scale.clamp_(0, MAX_LOGIT_SCALE)
    return norm
