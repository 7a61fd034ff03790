"""Zero-shot classification (after CLIP_benchmark's ``zeroshot_classification``).

Metrics: ``acc1`` / ``acc5`` are the fraction of images whose true class is among the
k highest-scoring classes (k capped at the number of classes, so ``acc5`` with 3
classes is top-3); ``mean_per_class_recall`` is the recall of each class present in the
targets, averaged over those classes (sklearn's balanced accuracy); ``skipped`` counts
unreadable images left out.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from sklearn.metrics import balanced_accuracy_score
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..protocols import ImageTextModel
from .features import count_skipped, encode_texts, extract_image_features

Template = str | Callable[[str], str]


def fill_template(template: Template, classname: str) -> str:
    """Prompt for one class: a callable, or a string with ``{c}`` or ``{}`` placeholders."""
    if callable(template):
        return template(classname)
    return template.replace("{c}", classname).replace("{}", classname)


def build_zero_shot_classifier(model: ImageTextModel, tokenizer: Callable, classnames: Sequence[str],
                               templates: Sequence[Template], num_classes_per_batch: int | None = 10,
                               device: str | torch.device = "cpu", use_tqdm: bool = False,
                               amp: bool = False) -> torch.Tensor:
    """Class weights (E, C), as open_clip's ``build_zero_shot_classifier``: for each class the
    mean of its L2-normalised prompt embeddings (one prompt per template), re-normalised."""
    if not classnames or not templates:
        raise ValueError(f"expected at least one class name and one template, got "
                         f"{len(classnames)} class names and {len(templates)} templates")
    step = num_classes_per_batch or len(classnames)
    chunks = [classnames[i:i + step] for i in range(0, len(classnames), step)]
    weights = []
    for chunk in tqdm(chunks, desc="class prompts", disable=not use_tqdm):
        prompts = [fill_template(t, c) for c in chunk for t in templates]
        emb = encode_texts(model, tokenizer, prompts, device, amp)
        weights.append(F.normalize(emb.view(len(chunk), len(templates), -1).mean(dim=1), dim=-1))
    return torch.cat(weights).T


def classification_metrics(logits: torch.Tensor, targets: torch.Tensor,
                           topk: Sequence[int] = (1, 5)) -> dict[str, float]:
    """logits (N, C), targets (N,) -> ``acc{k}`` for k in topk (k capped at C) and
    ``mean_per_class_recall``."""
    if logits.ndim != 2 or targets.shape != logits.shape[:1]:
        raise ValueError(f"expected logits (N, C) and targets (N,), got {tuple(logits.shape)} "
                         f"and {tuple(targets.shape)}")
    ranked = logits.topk(min(max(topk), logits.shape[1]), dim=1).indices
    hits = ranked == targets[:, None]
    metrics = {f"acc{k}": hits[:, :k].any(dim=1).double().mean().item() for k in topk}
    metrics["mean_per_class_recall"] = float(balanced_accuracy_score(targets, ranked[:, 0]))
    return metrics


def evaluate(model: ImageTextModel, dataloader: DataLoader, tokenizer: Callable, classnames: Sequence[str],
             templates: Sequence[Template], device: str | torch.device, amp: bool = False,
             topk: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Zero-shot classification of a loader of (images (B, 3, H, W), labels (B,)): the
    class scores are cosine similarities between image features and the class weights of
    :func:`build_zero_shot_classifier`; metrics as in this module's docstring."""
    classifier = build_zero_shot_classifier(model, tokenizer, classnames, templates,
                                            device=device, amp=amp)
    features, targets = extract_image_features(model, dataloader, device, amp)
    metrics = classification_metrics(features @ classifier, targets, topk)
    metrics["skipped"] = count_skipped(dataloader, len(targets))
    return metrics
