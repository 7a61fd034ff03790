"""Two augmented image views per sample, for DeCLIP's multi-view and SimSiam supervision.

``two_view_transform(size, world=...)``: PIL image -> (2, 3, S, S), CLIP-normalised.

- Real data (``world=False``): DeCLIP's MoCo-v2 recipe, each view drawn independently:
  random resized crop (scale 0.2-1), colour jitter (0.4, 0.4, 0.4, 0.1) with p 0.8,
  greyscale with p 0.2, Gaussian blur (sigma 0.1-2) with p 0.5, horizontal flip.
- The embedded world (``world=True``): views that keep its caption true. Captions name
  colours (so no colour jitter or greyscale), left / right (so no flips), sizes (so zoom
  stays within 0.85-1.15: a small object never grows to a large one's size, REL_MIN /
  ALIGN_MAX stay apart) and every object (so the crop window always holds every non-
  background pixel). A view is a square window of side S / zoom that contains the scene's
  content box, at a uniformly drawn position, resized to S; outside the image is black,
  the world's background.

Randomness comes from torch's CPU generator, which the loaders seed per sample.
"""
from __future__ import annotations

import numpy as np
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from PIL import Image
from torchvision import transforms as T

WORLD_ZOOM = (0.85, 1.15)


class TwoViews:
    """``view(image)`` twice, stacked: PIL image -> (2, 3, S, S)."""

    def __init__(self, view):
        self.view = view

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return torch.stack([self.view(image), self.view(image)])

    def __repr__(self) -> str:
        return f"TwoViews({self.view!r})"


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * torch.rand(()).item()


class ContentPreservingCrop:
    """A square window containing every non-background pixel, zoomed by ``zoom``, resized to
    ``size`` (see the module docstring). PIL -> PIL."""

    def __init__(self, size: int, zoom: tuple[float, float] = WORLD_ZOOM, background: int = 0):
        self.size, self.zoom, self.background = size, zoom, background

    def content_box(self, image: Image.Image) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of the pixels that differ from the background; the
        whole image when there are none."""
        content = (np.asarray(image) != self.background).any(-1)
        rows, cols = np.flatnonzero(content.any(1)), np.flatnonzero(content.any(0))
        if not len(rows):
            return 0, 0, image.width, image.height
        return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1

    def __call__(self, image: Image.Image) -> Image.Image:
        left, top, right, bottom = self.content_box(image)
        side = max(round(max(image.width, image.height) / _uniform(*self.zoom)), right - left, bottom - top)
        x = round(_uniform(right - side, left))
        y = round(_uniform(bottom - side, top))
        window = image.crop((x, y, x + side, y + side))  # PIL fills outside the image with black
        return window.resize((self.size, self.size), Image.NEAREST)  # keeps the exact colours

    def __repr__(self) -> str:
        return f"ContentPreservingCrop(size={self.size}, zoom={self.zoom})"


def _rgb(image: Image.Image) -> Image.Image:
    return image.convert("RGB")


def _finish() -> list:
    return [T.ToTensor(), T.Normalize(OPENAI_DATASET_MEAN, OPENAI_DATASET_STD)]


def world_view(size: int) -> T.Compose:
    return T.Compose([T.Lambda(_rgb), ContentPreservingCrop(size), *_finish()])


def mocov2_view(size: int) -> T.Compose:
    blur = int(0.1 * size) // 2 * 2 + 1  # odd kernel, ~10% of the image as in MoCo v2
    return T.Compose([
        T.Lambda(_rgb),
        T.RandomResizedCrop(size, scale=(0.2, 1.0), interpolation=T.InterpolationMode.BICUBIC),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        T.RandomGrayscale(p=0.2),
        T.RandomApply([T.GaussianBlur(blur, sigma=(0.1, 2.0))], p=0.5),
        T.RandomHorizontalFlip(),
        *_finish()])


def two_view_transform(size: int, world: bool) -> TwoViews:
    """The DeCLIP training transform: world-safe views for the embedded world, else MoCo v2."""
    return TwoViews(world_view(size) if world else mocov2_view(size))
