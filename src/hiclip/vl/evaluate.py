"""Evaluation of a fine-tuned model on a task split: accuracy overall and per question type.

``accuracy`` is the mean of ``task.score(i, predicted answer)`` over the examples: exact
match for the world tasks and SNLI-VE, the official VQA accuracy for VQA v2. The
predicted answer is the class with the highest logit. ``accuracy_<type>`` is the same
mean over the examples of one type (``task.qtype``); a type "a/b" also counts towards
``accuracy_a``. ``loss`` is the training objective's mean over the examples.
"""
from __future__ import annotations

import contextlib
import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..eval.results import make_record, write_result
from .tasks import VLTask


def task_loss(logits: torch.Tensor, targets: torch.Tensor, objective: str) -> torch.Tensor:
    """"ce": cross-entropy over classes (targets (B,)); "bce": binary cross-entropy with soft
    targets (B, C), summed over classes and averaged over the batch (the VQA convention)."""
    if objective == "ce":
        return F.cross_entropy(logits, targets)
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / logits.shape[0]


def scores_by_metric(scores: list, qtypes: list[str]) -> dict[str, list]:
    """The per-example values (scores, or example ids) behind each metric: ``accuracy`` (all) and
    ``accuracy_<type>`` (module docstring), in example order."""
    by_type: dict[str, list] = defaultdict(list)
    for s, q in zip(scores, qtypes):
        by_type[q].append(s)
        if "/" in q:
            by_type[q.split("/")[0]].append(s)
    return {"accuracy": list(scores), **{f"accuracy_{q}": v for q, v in sorted(by_type.items())}}


def summarise(scores: list[float], qtypes: list[str]) -> dict[str, float]:
    """``accuracy`` and ``accuracy_<type>`` (module docstring) of per-example scores."""
    if not scores:
        raise ValueError("no example was evaluated (every image unreadable, or an empty split)")
    return {k: sum(v) / len(v) for k, v in scores_by_metric(scores, qtypes).items()}


@torch.no_grad()
def evaluate(model: nn.Module, task: VLTask, batches: Iterable, device: torch.device,
             autocast: Callable[[], ContextManager] = contextlib.nullcontext) -> tuple[dict[str, float], list[dict]]:
    """-> (metrics, predictions) over ``batches`` of ``task`` (``hiclip.vl.data.make_loader``).

    metrics: ``accuracy``, ``accuracy_<type>``, ``loss``, ``samples``; predictions: one dict
    per example (``id``, ``text``, ``type``, ``prediction``, ``gold``, ``score``). The model
    is left in its previous mode.
    """
    was_training = model.training
    model.eval()
    scores, qtypes, preds, loss_sum = [], [], [], 0.0
    try:
        for images, tokens, targets, indices in batches:
            with autocast():
                logits = model(images.to(device), tokens.to(device)).float()
            loss_sum += task_loss(logits, targets.to(device), task.objective).item() * len(indices)
            for i, c in zip(indices.tolist(), logits.argmax(-1).tolist()):
                answer = task.answers[c]
                scores.append(task.score(i, answer))
                qtypes.append(task.qtype(i))
                preds.append({"id": task.example_id(i), "text": task.text(i), "type": qtypes[-1],
                              "prediction": answer, "gold": task.gold(i), "score": scores[-1]})
    finally:
        model.train(was_training)
    metrics = summarise(scores, qtypes)
    metrics.update(loss=loss_sum / len(scores), samples=float(len(scores)))
    return metrics, preds


def write_results(metrics: dict[str, float], predictions: list[dict] | None, out_dir: str | Path, task: VLTask,
                  model: str, checkpoint: str | None) -> Path:
    """The CLIP_benchmark-style JSON (``dataset`` = "<task>/<split>", ``task`` = "vqa" or
    "visual_entailment") in ``out_dir``, and ``<same name>.predictions.jsonl`` beside it when
    ``predictions`` is given. Returns the JSON's path."""
    name = task.name.split(":")[0]
    path = write_result(make_record(f"{name}/{task.split}", model, checkpoint, task.kind, metrics), out_dir)
    if predictions is not None:
        with path.with_suffix(".predictions.jsonl").open("w", encoding="utf-8") as f:
            f.writelines(json.dumps(p) + "\n" for p in predictions)
    return path


def format_metrics(metrics: dict[str, Any]) -> str:
    return "  ".join(f"{k.removeprefix('accuracy_') if k != 'accuracy' else k} {v:.3f}"
                     for k, v in metrics.items() if k.startswith("accuracy"))
