"""Vision-language tasks as map-style splits, and ``load_task`` from a task spec.

The base class :class:`VLTask` and the table of task names (kinds, splits) live in
:mod:`hiclip.vl.task_base`, which the readers (:mod:`vqa2`, :mod:`snli_ve`) and this module
build on. Every split (``VLTask``) answers, for example ``i``: ``text(i)`` (question or hypothesis),
``qtype(i)`` (its type, for per-type accuracy), ``image(i)`` (RGB PIL image; raises
``hiclip.data.skips.Skip`` when unreadable), ``target(i)`` (the training target) and
``score(i, answer)`` (the accuracy of a predicted answer string). ``answers`` is the
list of classes; ``objective`` is "ce" (one class: ``target(i)`` is its index) or "bce"
(soft scores: ``target(i)`` is ``{class index: score}``).

Task specs: ``world-vqa``, ``world-ve`` (splits train / val / test / holdout),
``vqa2:ROOT`` (train / val), ``snli-ve:ROOT`` (train / val / test).
"""
from __future__ import annotations

from typing import Sequence

from PIL import Image

from .snli_ve import SnliVeTask
from .task_base import KINDS, TASK_HELP, WORLD_TASKS, VLTask, task_splits
from .vqa2 import VQA2Task
from .world_base import WorldExample, scene_world
from .world_ve import LABELS, make_hypothesis
from .world_vqa import ANSWERS, make_question


class WorldTask(VLTask):
    """``world-vqa`` / ``world-ve`` (``hiclip.vl.world_vqa`` / ``world_ve``): ``size`` examples of a split.

    Scenes are rendered at ``image_size`` pixels (the model's input size); ``seed`` seeds
    the examples (the scenes are the world's, ``ShapesWorld(seed=0)``).
    """

    def __init__(self, name: str, split: str, size: int, image_size: int, seed: int = 0):
        if name not in WORLD_TASKS:
            raise ValueError(f"world task must be one of {WORLD_TASKS}, got {name!r}")
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        self.name, self.split, self.size, self.seed = name, split, size, seed
        self.world = scene_world(split, image_size, 0)
        self.answers = list(ANSWERS if name == "world-vqa" else LABELS)
        self._make = make_question if name == "world-vqa" else make_hypothesis
        self._examples: dict[int, WorldExample] = {}

    def __len__(self) -> int:
        return self.size

    def example(self, i: int) -> WorldExample:
        if not 0 <= i < self.size:
            raise IndexError(f"example {i} out of range for {self.size} examples")
        if i not in self._examples:
            self._examples[i] = self._make(self.world, i, self.seed)
        return self._examples[i]

    def text(self, i: int) -> str:
        return self.example(i).text

    def qtype(self, i: int) -> str:
        return self.example(i).qtype

    def gold(self, i: int) -> str:
        return self.example(i).answer

    def image(self, i: int) -> Image.Image:
        return self.world[self.example(i).scene].image


def load_task(spec: str, split: str, image_size: int, world_samples: int | None = None, seed: int = 0,
              answers: Sequence[str] | None = None) -> VLTask:
    """The ``split`` of task ``spec`` (module docstring).

    ``world_samples``: examples of a world split (default 20000 for train, 1000 otherwise);
    ``answers``: the class list of a fine-tuned model (VQA v2: its answer vocabulary),
    which must match the task's where the task fixes one.
    """
    head, sep, root = spec.partition(":")
    if head not in KINDS or (head in WORLD_TASKS) == bool(sep):
        raise ValueError(f"unknown task {spec!r}; expected {TASK_HELP}")
    if split not in task_splits(spec):
        raise ValueError(f"task {head} has splits {task_splits(spec)}, got {split!r}")
    if head in WORLD_TASKS:
        size = world_samples if world_samples is not None else (20_000 if split == "train" else 1_000)
        task: VLTask = WorldTask(head, split, size, image_size, seed)
    elif head == "vqa2":
        task = VQA2Task(root, split, answers)
    else:
        task = SnliVeTask(root, split)
    if answers is not None and list(answers) != list(task.answers):
        raise ValueError(f"the model's {len(answers)} classes differ from task {spec!r}'s {len(task.answers)}")
    return task
