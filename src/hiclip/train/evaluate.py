"""Periodic validation: contrastive loss and image->text / text->image R@1."""
from __future__ import annotations

import contextlib
from typing import Callable, ContextManager, Iterable

import torch
from torch import nn

from ..eval.retrieval import recall_at_k
from .loss import contrastive_loss


def recall_at_1(image_features: torch.Tensor, text_features: torch.Tensor) -> tuple[float, float]:
    """(image->text, text->image) R@1 of paired features (N, E): pair i is the only positive of i.

    :func:`hiclip.eval.retrieval.recall_at_k` with one caption per image, so ties count
    against the model (a collapsed model scores 0).
    """
    m = recall_at_k(text_features.float().cpu(), image_features.float().cpu(),
                    torch.arange(image_features.shape[0]), (1,))
    return m["text_retrieval_recall@1"], m["image_retrieval_recall@1"]


@torch.no_grad()
def validate(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], device: torch.device,
             max_samples: int, autocast: Callable[[], ContextManager] = contextlib.nullcontext
             ) -> dict[str, float]:
    """Encode up to ``max_samples`` pairs of ``batches`` (images (b, 3, S, S), tokens (b, ctx)).

    Returns ``val_loss`` (the contrastive loss over all N pairs at once, (N, N) logits),
    ``i2t_r1``, ``t2i_r1`` and ``samples`` (N). The model is left in its previous mode.
    """
    was_training = model.training
    model.eval()
    images, texts, scale = [], [], None
    try:
        seen = 0
        for batch_images, batch_tokens in batches:
            take = min(len(batch_images), max_samples - seen)
            with autocast():
                out = model(batch_images[:take].to(device), batch_tokens[:take].to(device))
            images.append(out["image_features"].float())
            texts.append(out["text_features"].float())
            scale, seen = out["logit_scale"].float(), seen + take
            if seen >= max_samples:
                break
    finally:
        model.train(was_training)
    if not images:
        raise ValueError("the validation data yielded no batch; check --val-data (or pass --val-data none)")
    image_features, text_features = torch.cat(images), torch.cat(texts)
    i2t, t2i = recall_at_1(image_features, text_features)
    loss = contrastive_loss(image_features, text_features, scale).item()
    return {"val_loss": loss, "i2t_r1": i2t, "t2i_r1": t2i, "samples": float(len(image_features))}
