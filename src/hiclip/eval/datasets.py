"""Evaluation datasets: image folders, caption CSVs, Karpathy JSONs, the embedded world.

Every dataset here yields tuples whose first element is an image tensor (3, H, W):
classification ``(image, label)``, retrieval ``(image, captions: list[str])``,
compositional ``(image, caption, negatives: dict[kind, list[str]])``.
Image files are decoded by :func:`hiclip.data.images.load_image` under an ``ImagePolicy``
(pixel limit, decoding at the needed size, EXIF, transparency on white); captions are
checked by :func:`hiclip.data.skips.check_caption` (empty, blank and non-UTF-8 captions are
dropped and counted in ``caption_skips``, as in training). Wrap a dataset in
:class:`SkipBadImages` and batch it with :func:`collate_skip_none` so that unusable items
(bad image file, no usable caption) are dropped; evaluators count them as
``len(dataset) - kept``.
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torch.utils.data._utils.collate import default_collate
from torchvision.datasets import ImageFolder

from hiclip.data import csvdata
from hiclip.data.images import ImagePolicy, load_image, to_rgb
from hiclip.data.skips import EMPTY_CAPTION, Skip, check_caption
from hiclip.data.world import ShapesWorld, classification_task, hard_negatives

Transform = Callable[[Image.Image], torch.Tensor]
DEFAULT_TEMPLATES = ["a photo of a {c}."]


def read_lines(path: str | Path, what: str) -> list[str]:
    """Non-blank, stripped lines of a UTF-8 text file; ValueError naming the file if unreadable."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{what} file {path} is not valid UTF-8 text ({err})") from err
    except OSError as err:
        raise ValueError(f"cannot read {what} file {path}: {err}") from err
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{what} file {path} is empty; expected one entry per line")
    return lines


def read_templates(path: str | Path) -> list[str]:
    """Prompt templates, one per line, each with a ``{c}`` or ``{}`` placeholder."""
    templates = read_lines(path, "templates")
    for i, template in enumerate(templates):
        if "{c}" not in template and "{}" not in template:
            raise ValueError(f"templates file {path}, line {i + 1}: expected a '{{c}}' or '{{}}' "
                             f"placeholder for the class name, got {template!r}")
    return templates


def _load_rgb(image: str | Path | Image.Image | np.ndarray, policy: ImagePolicy = ImagePolicy()) -> Image.Image:
    """An image file (decoded under ``policy``), a PIL image or a uint8 array (H, W[, 3]) as RGB."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    return to_rgb(image) if isinstance(image, Image.Image) else load_image(str(image), policy)


class SkipBadImages(Dataset):
    """Wraps a dataset (or its items ``indices``) so that an item that raises
    :class:`~hiclip.data.skips.Skip` becomes None."""

    def __init__(self, base: Dataset, indices: Sequence[int] | None = None) -> None:
        self.base, self.indices = base, indices
        self.classes = getattr(base, "classes", None)

    def __len__(self) -> int:
        return len(self.base) if self.indices is None else len(self.indices)

    def __getitem__(self, i: int) -> Any:
        try:
            return self.base[i if self.indices is None else self.indices[i]]
        except Skip:
            return None


def collate_skip_none(batch: list[Any]) -> tuple | None:
    """Drop None items; stack images (B, 3, H, W); integer labels become a LongTensor (B,),
    any other field stays a list. A batch with no readable item gives None."""
    kept = [item for item in batch if item is not None]
    if not kept:
        return None
    fields = list(zip(*kept))
    out: list[Any] = [torch.stack(fields[0])]
    for field in fields[1:]:
        out.append(default_collate(list(field)) if isinstance(field[0], int) else list(field))
    return tuple(out)


class ListClassification(Dataset):
    """Classification set: images (PIL images, uint8 arrays or image files) with integer labels."""

    def __init__(self, images: Sequence[Any], labels: Sequence[int], classes: list[str],
                 transform: Transform, policy: ImagePolicy = ImagePolicy()) -> None:
        if len(images) != len(labels):
            raise ValueError(f"expected as many labels as images, got {len(labels)} and {len(images)}")
        self.images, self.labels, self.classes, self.transform = images, list(labels), classes, transform
        self.policy = policy

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(_load_rgb(self.images[i], self.policy)), int(self.labels[i])


class CaptionDataset(Dataset):
    """Retrieval set: each item is an image (path or PIL) with its usable captions.

    Captions failing ``check_caption`` are dropped here and counted by reason in
    ``caption_skips``; an image left with no caption is a skipped item.
    """

    def __init__(self, images: Sequence[str | Path | Image.Image], captions: Sequence[Sequence[Any]],
                 transform: Transform, policy: ImagePolicy = ImagePolicy()) -> None:
        if len(images) != len(captions):
            raise ValueError(f"expected one caption list per image, got {len(captions)} for {len(images)}")
        self.images, self.transform, self.policy = images, transform, policy
        self.caption_skips: Counter = Counter()
        self.captions = [self._usable(group) for group in captions]

    def _usable(self, group: Sequence[Any]) -> list[str]:
        kept = []
        for raw in group:
            try:
                kept.append(check_caption(raw))
            except Skip as s:
                self.caption_skips[s.reason] += 1
        return kept

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, list[str]]:
        if not self.captions[i]:
            raise Skip(EMPTY_CAPTION)
        return self.transform(_load_rgb(self.images[i], self.policy)), list(self.captions[i])


class CompositionalDataset(Dataset):
    """Each item: image, its true caption and hard negatives per kind."""

    def __init__(self, images: Sequence[Image.Image], captions: Sequence[str],
                 negatives: Sequence[dict[str, list[str]]], transform: Transform) -> None:
        self.images, self.captions, self.negatives, self.transform = images, captions, negatives, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str, dict[str, list[str]]]:
        return self.transform(_load_rgb(self.images[i])), self.captions[i], self.negatives[i]


def image_folder(root: str | Path, transform: Transform, classnames_file: str | Path | None = None,
                 policy: ImagePolicy = ImagePolicy()) -> ImageFolder:
    """``root/<class>/*.jpg|png|...`` via torchvision; ``.classes`` are the folder names, or
    the lines of ``classnames_file`` (one per line, in sorted-folder order)."""
    if not Path(root).is_dir():
        raise ValueError(f"image folder {root} does not exist or is not a directory")
    try:
        dataset = ImageFolder(str(root), transform=transform, loader=partial(load_image, policy=policy))
    except FileNotFoundError as err:
        raise ValueError(f"image folder {root}: expected root/<class>/<images>, {err}") from err
    if len(dataset.classes) < 2:
        raise ValueError(f"image folder {root}: expected at least 2 class folders, "
                         f"found {len(dataset.classes)} ({dataset.classes})")
    if classnames_file is not None:
        names = read_lines(classnames_file, "class names")
        if len(names) != len(dataset.classes):
            raise ValueError(f"class names file {classnames_file} has {len(names)} names, "
                             f"image folder {root} has {len(dataset.classes)} classes")
        dataset.classes = names
    return dataset


def csv_captions(path: str | Path, transform: Transform, image_key: str = csvdata.IMAGE_KEY,
                 caption_key: str = csvdata.CAPTION_KEY, sep: str | None = None, image_root: str | Path | None = None,
                 policy: ImagePolicy = ImagePolicy()) -> CaptionDataset:
    """CSV / TSV with a header, read by training's reader (:func:`hiclip.data.csvdata.read_csv`);
    rows sharing an image path are grouped (first-seen order). Relative paths are resolved
    against ``image_root`` (default: the CSV's folder)."""
    table = csvdata.read_csv([path], image_key, caption_key, sep, image_root)
    groups: dict[str, list[str]] = {}
    for image, caption in zip(table.paths, table.captions):
        groups.setdefault(image, []).append(caption)
    if not groups:
        raise ValueError(f"CSV {path} has no rows")
    return CaptionDataset([Path(p) for p in groups], list(groups.values()), transform, policy)


def karpathy_json(path: str | Path, transform: Transform, image_root: str | Path | None = None,
                  split: str = "test", policy: ImagePolicy = ImagePolicy()) -> CaptionDataset:
    """COCO / Flickr30k Karpathy split: ``{"images": [{"filename", "filepath"?, "split",
    "sentences": [{"raw"}]}]}``; images at ``image_root/[filepath/]filename``."""
    root = Path(image_root) if image_root is not None else Path(path).parent
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"annotation file {path} is not valid UTF-8 JSON ({err})") from err
    if not isinstance(data, dict) or "images" not in data:
        raise ValueError(f"annotation file {path}: expected a top-level object with an 'images' list")
    images, captions = [], []
    for i, entry in enumerate(data["images"]):
        for field in ("filename", "split", "sentences"):
            if field not in entry:
                raise ValueError(f"annotation file {path}: images[{i}] lacks field '{field}'")
        if entry["split"] != split:
            continue
        for j, sentence in enumerate(entry["sentences"]):
            if "raw" not in sentence:
                raise ValueError(f"annotation file {path}: images[{i}].sentences[{j}] lacks field 'raw'")
        images.append(root / entry.get("filepath", "") / entry["filename"])
        captions.append([s["raw"] for s in entry["sentences"]])
    if not images:
        raise ValueError(f"annotation file {path} has no images in split {split!r}")
    return CaptionDataset(images, captions, transform, policy)


def world_classification(task: str, n: int, transform: Transform, split: str = "test",
                         seed: int = 0, image_size: int = 64) -> tuple[ListClassification, list[str]]:
    """A built-in world task ("shape", "colour", "size", "count", "holdout"): (dataset, templates)."""
    images, labels, classnames, templates = classification_task(
        task, n, image_size=image_size, seed=seed, split=split)
    return ListClassification(images, labels, list(classnames), transform), list(templates)


def world_retrieval(n: int, transform: Transform, split: str = "test", seed: int = 0,
                    image_size: int = 64) -> CaptionDataset:
    """World scenes with all their true caption variants."""
    world = ShapesWorld(split=split, size=n, image_size=image_size, seed=seed)
    return CaptionDataset([world[i].image for i in range(n)],
                          [world.caption_variants(i) for i in range(n)], transform)


def world_compositional(n: int, transform: Transform, split: str = "test", seed: int = 0,
                        image_size: int = 64) -> CompositionalDataset:
    """World scenes with their caption and ``hard_negatives`` per kind."""
    world = ShapesWorld(split=split, size=n, image_size=image_size, seed=seed)
    samples = [world[i] for i in range(n)]
    return CompositionalDataset([s.image for s in samples], [s.caption for s in samples],
                                [hard_negatives(s) for s in samples], transform)
