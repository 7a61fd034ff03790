"""``snli-ve:ROOT``: SNLI-VE (Xie et al. 2019) from its jsonl files and Flickr30k images.

ROOT holds ``snli_ve_train.jsonl``, ``snli_ve_dev.jsonl`` (split 'val') and
``snli_ve_test.jsonl``, one JSON object per line with at least ``Flickr30K_ID`` (the
image's file name without ``.jpg``), ``sentence2`` (the hypothesis) and ``gold_label``
(entailment / neutral / contradiction), and the images in the first of
``ROOT/flickr30k_images``, ``ROOT/Flickr30K/flickr30k_images``, ``ROOT/images`` that
exists. Lines whose gold label is "-" (annotators did not agree) are skipped and counted.
3-way cross-entropy; per-type accuracy by gold label.
"""
from __future__ import annotations

from pathlib import Path

from .readers import field, read_jsonl
from .task_base import VLTask
from .world_ve import LABELS

FILES = {"train": "snli_ve_train.jsonl", "val": "snli_ve_dev.jsonl", "test": "snli_ve_test.jsonl"}
IMAGE_DIRS = ("flickr30k_images", "Flickr30K/flickr30k_images", "images")


def image_dir(root: Path) -> Path:
    for d in IMAGE_DIRS:
        if (root / d).is_dir():
            return root / d
    raise FileNotFoundError(f"no Flickr30k image folder under {root}; expected one of {list(IMAGE_DIRS)}")


def read_split(path: Path) -> tuple[list[dict], int]:
    """Rows ``{"image", "hypothesis", "label", "pair_id"}`` of one jsonl file, and the count of
    lines skipped for having no gold label ("-")."""
    rows, no_label = [], 0
    for n, record in read_jsonl(path, "SNLI-VE"):
        where = f"{path}, line {n}"
        label = field(record, "gold_label", str, where)
        if label == "-":
            no_label += 1
            continue
        if label not in LABELS:
            raise ValueError(f"{where}: field 'gold_label' must be one of {LABELS} or '-', got {label!r}")
        image = str(field(record, "Flickr30K_ID", (str, int), where))
        rows.append({"image": image, "hypothesis": field(record, "sentence2", str, where), "label": label,
                     "pair_id": record.get("pairID", f"{path.name}:{n}")})
    return rows, no_label


class SnliVeTask(VLTask):
    """An SNLI-VE split (module docstring)."""

    def __init__(self, root: str, split: str):
        self.root, self.name, self.split = Path(root), f"snli-ve:{root}", split
        self.rows, self.no_label = read_split(self.root / FILES[split])
        self.images = image_dir(self.root)
        self.answers = list(LABELS)

    def __len__(self) -> int:
        return len(self.rows)

    def text(self, i: int) -> str:
        return self.rows[i]["hypothesis"]

    def qtype(self, i: int) -> str:
        return self.rows[i]["label"]

    def gold(self, i: int) -> str:
        return self.rows[i]["label"]

    def example_id(self, i: int) -> str:
        return self.rows[i]["pair_id"]

    def image_path(self, i: int) -> Path:
        return self.images / f"{self.rows[i]['image']}.jpg"
