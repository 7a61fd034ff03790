"""The base class of vision–language task splits and the table of task names: their kind and
their splits. The world tasks (:mod:`hiclip.vl.tasks`) and the readers of real datasets
(:mod:`hiclip.vl.vqa2`, :mod:`hiclip.vl.snli_ve`) subclass :class:`VLTask`;
:func:`hiclip.vl.tasks.load_task` builds one from a spec.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from PIL import Image

from ..data.images import load_image

WORLD_TASKS = ("world-vqa", "world-ve")
KINDS = {"world-vqa": "vqa", "world-ve": "visual_entailment", "vqa2": "vqa", "snli-ve": "visual_entailment"}
TASK_HELP = ("world-vqa | world-ve (the embedded world; splits train/val/test/holdout), "
             "vqa2:ROOT (VQA v2 JSONs + COCO images; train/val), snli-ve:ROOT (SNLI-VE jsonl + Flickr30k; "
             "train/val/test)")


class VLTask:
    """One split of a task (its interface: :mod:`hiclip.vl.tasks`); subclasses fill in the examples."""

    name: str = ""
    split: str = ""
    answers: list[str] = []
    objective: str = "ce"

    @property
    def kind(self) -> str:
        """"vqa" or "visual_entailment"."""
        return KINDS[self.name.split(":")[0]]

    def __len__(self) -> int:
        raise NotImplementedError

    def text(self, i: int) -> str:
        raise NotImplementedError

    def qtype(self, i: int) -> str:
        raise NotImplementedError

    def image(self, i: int) -> Image.Image:
        """The RGB image of example ``i`` (the one place VL tasks read image files)."""
        return load_image(str(self.image_path(i)))

    def image_path(self, i: int) -> Path:
        raise NotImplementedError

    def gold(self, i: int) -> Any:
        """The reference answer(s) of example ``i``, as written in prediction files."""
        raise NotImplementedError

    def example_id(self, i: int) -> Any:
        return i

    def target(self, i: int) -> int | dict[int, float]:
        return self._index[self.gold(i)]

    def score(self, i: int, answer: str) -> float:
        return float(answer == self.gold(i))

    @functools.cached_property
    def _index(self) -> dict[str, int]:
        return {a: n for n, a in enumerate(self.answers)}


def task_splits(spec: str) -> tuple[str, ...]:
    """The splits a task has (VQA v2's test answers are not public)."""
    head = spec.split(":", 1)[0]
    if head in WORLD_TASKS:
        return ("train", "val", "test", "holdout")
    return ("train", "val") if head == "vqa2" else ("train", "val", "test")
