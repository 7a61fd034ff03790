"""Compositional (attribute / relation binding) tests with hard-negative captions.

For each image and each kind of hard negative ("attribute_swap", "relation_swap",
"attribute_replace", ...) with at least one negative, one trial: it is correct when the
image's cosine similarity to its true caption is strictly higher than to every negative
of that kind. Metrics: ``acc`` (all trials) and ``acc_<kind>``; ``chance`` and
``chance_<kind>``, the mean over trials of 1 / (1 + #negatives), the accuracy of random
scores; ``n_trials`` and ``n_trials_<kind>``; ``skipped`` unreadable images.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.utils.data import DataLoader

from ..protocols import ImageTextModel
from .features import count_skipped, encode_images, encode_texts, iter_batches

Trial = tuple[str, float, Sequence[float]]


def compositional_metrics(trials: Sequence[Trial]) -> dict[str, float]:
    """Trials (kind, true-caption score, negative scores) -> metrics (module docstring)."""
    if not trials:
        raise ValueError("expected at least one trial (an image with a hard negative), got none")
    by_kind: dict[str, list[tuple[bool, float]]] = {}
    for kind, true_score, neg_scores in trials:
        if len(neg_scores) == 0:
            raise ValueError(f"trial of kind {kind!r} has no negatives")
        outcome = (true_score > max(neg_scores), 1.0 / (1 + len(neg_scores)))
        by_kind.setdefault(kind, []).append(outcome)
    metrics = _summary([o for outcomes in by_kind.values() for o in outcomes], "")
    for kind, outcomes in sorted(by_kind.items()):
        metrics.update(_summary(outcomes, f"_{kind}"))
    return metrics


def _summary(outcomes: list[tuple[bool, float]], suffix: str) -> dict[str, float]:
    """(correct, chance) per trial -> accuracy, chance level and trial count."""
    return {f"acc{suffix}": sum(ok for ok, _ in outcomes) / len(outcomes),
            f"chance{suffix}": sum(p for _, p in outcomes) / len(outcomes),
            f"n_trials{suffix}": len(outcomes)}


def score_trials(image_emb: torch.Tensor, captions: Sequence[str],
                 negatives: Sequence[dict[str, list[str]]], model: ImageTextModel, tokenizer: Callable,
                 device: str | torch.device, amp: bool = False) -> list[Trial]:
    """Image features (B, E) with their captions and negatives -> one trial per image and
    non-empty kind."""
    texts = list(captions) + [t for negs in negatives for kind in sorted(negs) for t in negs[kind]]
    distinct = list(dict.fromkeys(texts))  # a caption shared by several trials is encoded once
    where = {t: i for i, t in enumerate(distinct)}
    text_emb = encode_texts(model, tokenizer, distinct, device, amp)[[where[t] for t in texts]]
    trials: list[Trial] = []
    pos = len(captions)
    for b, negs in enumerate(negatives):
        true_score = float(text_emb[b] @ image_emb[b])
        for kind in sorted(negs):
            n = len(negs[kind])
            if n:
                trials.append((kind, true_score, (text_emb[pos:pos + n] @ image_emb[b]).tolist()))
            pos += n
    return trials


def evaluate(model: ImageTextModel, dataloader: DataLoader, tokenizer: Callable, device: str | torch.device,
             amp: bool = False) -> dict[str, float]:
    """Compositional metrics of a loader of (images (B, 3, H, W), captions: B str,
    negatives: B dicts kind -> list[str])."""
    trials: list[Trial] = []
    kept = 0
    for images, captions, negatives in iter_batches(dataloader, "compositional"):
        image_emb = encode_images(model, images, device, amp)
        trials += score_trials(image_emb, captions, negatives, model, tokenizer, device, amp)
        kept += len(captions)
    metrics = compositional_metrics(trials)
    metrics["skipped"] = count_skipped(dataloader, kept)
    return metrics
