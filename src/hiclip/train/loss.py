"""CLIP's symmetric contrastive (InfoNCE) loss over features gathered from every rank."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .distributed import DistInfo, gather_features


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
    image_features, text_features = image_features.float(), text_features.float()
    all_image, all_text = gather_features(image_features, text_features, info,
                                          local_loss=local_loss, gather_with_grad=gather_with_grad)
    n = image_features.shape[0]
    if info.distributed and local_loss:
        logits_image = logit_scale * image_features @ all_text.T
        logits_text = logit_scale * text_features @ all_image.T
        labels = torch.arange(n, device=image_features.device) + n * info.rank
    else:
        logits_image = logit_scale * all_image @ all_text.T
        logits_text = logits_image.T
        labels = torch.arange(all_image.shape[0], device=image_features.device)
    return (F.cross_entropy(logits_image, labels) + F.cross_entropy(logits_text, labels)) / 2
