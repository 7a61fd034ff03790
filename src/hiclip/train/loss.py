"""CLIP's symmetric contrastive (InfoNCE) loss over features gathered from every rank."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .distributed import DistInfo, gather_features


def full(x: torch.Tensor) -> torch.Tensor:
    """x in float32, or float64 if it is (losses never run in half precision)."""
    return x if x.dtype == torch.float64 else x.float()


def contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor,
                     info: DistInfo = DistInfo(), *, local_loss: bool = False,
                     gather_with_grad: bool = False) -> torch.Tensor:
    """Mean of image->text and text->image cross-entropy; pair i is the positive of row i.

    image_features, text_features: (b, E) normalised, this rank's; logit_scale: () exp'd.
    One process: logits (b, b). Several: features of all ranks are gathered (B = world * b);
    logits are (B, B), or with ``local_loss`` this rank's rows only, (b, B), whose labels
    are offset by ``rank * b``. Returns a scalar (float32).
    """
    if image_features.shape != text_features.shape or image_features.dim() != 2:
        raise ValueError(f"expected image and text features of one shape (b, E), got "
                         f"{tuple(image_features.shape)} and {tuple(text_features.shape)}")
    image_features, text_features = full(image_features), full(text_features)
    all_image, all_text = gather_features((image_features, text_features), info,
                                          local_loss=local_loss, gather_with_grad=gather_with_grad)
    return gathered_contrastive_loss(image_features, text_features, all_image, all_text, logit_scale, info,
                                     local_loss=local_loss)


def gathered_contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor, all_image: torch.Tensor,
                              all_text: torch.Tensor, logit_scale: torch.Tensor, info: DistInfo = DistInfo(), *,
                              local_loss: bool = False) -> torch.Tensor:
    """``contrastive_loss`` of this rank's (b, E) features and every rank's (B, E), already gathered."""
    if info.distributed and local_loss:
        logits_image = logit_scale * image_features @ all_text.T
        logits_text = logit_scale * text_features @ all_image.T
        labels = local_labels(image_features.shape[0], info, image_features.device)
    else:
        logits_image = logit_scale * all_image @ all_text.T
        logits_text = logits_image.T
        labels = torch.arange(all_image.shape[0], device=image_features.device)
    return (F.cross_entropy(logits_image, labels) + F.cross_entropy(logits_text, labels)) / 2


def local_labels(n: int, info: DistInfo, device: torch.device) -> torch.Tensor:
    """(n,) positions of this rank's n rows among every rank's, rank-major: ``rank * n + arange(n)``."""
    return torch.arange(n, device=device) + n * info.rank


def image_to_text_loss(image_features: torch.Tensor, all_text: torch.Tensor, logit_scale: torch.Tensor,
                       info: DistInfo = DistInfo()) -> torch.Tensor:
    """Cross-entropy of this rank's images (b, E) over every rank's texts (B, E), rank-major;
    image i's positive is its own row of ``all_text``. One direction only."""
    logits = logit_scale * image_features @ all_text.T
    return F.cross_entropy(logits, local_labels(image_features.shape[0], info, image_features.device))


def span_image_loss(span_features: torch.Tensor, span_weights: torch.Tensor, image_features: torch.Tensor,
                    logit_scale: torch.Tensor) -> torch.Tensor:
    """The span–image constituent loss (docs/design.md §1.8): each caption's spans, weighted by how
    much they are constituents, must pick the caption's image among the batch's.

    span_features: (B, S, E) normalised; span_weights: (B, L, S) per hierarchy layer, averaged over
    layers; image_features: (B, E) normalised (this rank's batch); logit_scale: () exp'd.
    Per caption ``Σ_s w_s CE_s / Σ_s w_s`` (0 for a caption without spans), mean over captions.
    """
    b, s, _ = span_features.shape
    w = full(span_weights).mean(1)  # (B, S)
    logits = logit_scale * full(span_features) @ full(image_features).T  # (B, S, B)
    target = torch.arange(b, device=logits.device).repeat_interleave(s)
    ce = F.cross_entropy(logits.reshape(b * s, b), target, reduction="none").view(b, s)
    return ((w * ce).sum(1) / w.sum(1).clamp_min(1e-6)).mean()


def span_group_loss(span_features: torch.Tensor, span_weights: torch.Tensor, group_features: torch.Tensor,
                    logit_scale: torch.Tensor) -> torch.Tensor:
    """The constituent loss against image groups (docs/design.md §1.8, ``constituent_target =
    "groups"``): a span scores an image by its best-matching group, and each caption's spans,
    weighted by how much they are constituents, must pick the caption's image.

    span_features: (B, S, E) normalised; span_weights: (B, L, S) per hierarchy layer, averaged over
    layers; group_features: (B, N, E) normalised, every patch's group (this rank's batch);
    logit_scale: () exp'd. The logit of span s for image c is ``scale · max_p <f_s, g_{c,p}>``;
    per caption ``Σ_s w_s CE_s / Σ_s w_s`` (0 for a caption without spans), mean over captions.
    With one group per image (every group its pooled feature) this is :func:`span_image_loss`.
    """
    b, s, _ = span_features.shape
    n = group_features.shape[1]
    w = full(span_weights).mean(1)  # (B, S)
    sim = full(span_features).reshape(b * s, -1) @ full(group_features).reshape(b * n, -1).T  # (B*S, B*N)
    logits = logit_scale * sim.view(b * s, b, n).amax(-1)  # (B*S, B)
    target = torch.arange(b, device=logits.device).repeat_interleave(s)
    ce = F.cross_entropy(logits, target, reduction="none").view(b, s)
    return ((w * ce).sum(1) / w.sum(1).clamp_min(1e-6)).mean()


def constituent_loss(out: dict[str, torch.Tensor], logit_scale: torch.Tensor) -> torch.Tensor:
    """The model output's constituent term: against its image groups if it has them, else its images."""
    if "group_features" in out:
        return span_group_loss(out["span_features"], out["span_weights"], out["group_features"], logit_scale)
    return span_image_loss(out["span_features"], out["span_weights"], out["image_features"], logit_scale)

