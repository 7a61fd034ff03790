"""Shared parts of the world vision-language tasks: descriptions, references, scene search.

A *description* is a dict of some of an object's attributes (``size``, ``colour``,
``shape``); an object matches it when every given attribute is equal. A *reference*
("the red object") is a description that exactly one object of the scene matches.
Example ``i`` of a split is made from ``SeedSequence(seed, (task, split, i))`` alone: its
parameters (question type, wanted answer, label...) are drawn first, then scenes
``i * SCENE_TRIES + k`` (k = 0, 1, ...) of the world's split are tried until one admits
such an example, so the examples' scenes never overlap and any example can be made on
its own, in any order.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Callable, Sequence, TypeVar

import numpy as np

from ..data.world import COLOURS, HELDOUT_COMBOS, SHAPES, SIZES, SPLITS, ShapesWorld, WorldObject

ATTRS = ("size", "colour", "shape")
VALUES: dict[str, tuple[str, ...]] = {"size": SIZES, "colour": tuple(COLOURS), "shape": SHAPES}
SCENE_TRIES = 64
_NO_SIZE = 2 ** 40  # scenes are indexed up to here (ShapesWorld needs a size)

Desc = dict  # attribute -> value
T = TypeVar("T")


@dataclass(frozen=True)
class WorldExample:
    """One example: the scene (``ShapesWorld`` index of the split), text, answer, type.

    about: the colour-shape combinations the text refers to or asks about.
    """
    text: str
    answer: str
    qtype: str
    scene: int
    about: tuple[tuple[str, str], ...]


def matches(obj: WorldObject, desc: Desc) -> bool:
    return all(getattr(obj, a) == v for a, v in desc.items())


def describe(obj: WorldObject, attrs: Sequence[str]) -> Desc:
    return {a: getattr(obj, a) for a in attrs}


def phrase(desc: Desc, article: str, plural: bool = False) -> str:
    """``the small red circle``, ``a red object``, ``small crosses`` (no article in the plural)."""
    noun = desc.get("shape", "object")
    if plural:
        noun += "es" if noun.endswith("ss") else "s"
    words = [desc[a] for a in ("size", "colour") if a in desc] + [noun]
    return " ".join(([] if plural else [article]) + words)


def combo(desc: Desc) -> tuple[str, str] | None:
    """The (colour, shape) a description names, if it names both."""
    return (desc["colour"], desc["shape"]) if "colour" in desc and "shape" in desc else None


def is_heldout(desc: Desc) -> bool:
    return combo(desc) in HELDOUT_COMBOS


def subsets(attrs: Sequence[str], empty: bool = False) -> list[tuple[str, ...]]:
    """Every subset of ``attrs`` (non-empty unless ``empty``), smallest first."""
    return [c for n in range(0 if empty else 1, len(attrs) + 1) for c in combinations(attrs, n)]


def references(objects: Sequence[WorldObject], v: int, allowed: Sequence[str]) -> list[Desc]:
    """Descriptions of object ``v`` over some of the ``allowed`` attributes that no other object matches."""
    out = []
    for attrs in subsets(allowed):
        desc = describe(objects[v], attrs)
        if sum(matches(o, desc) for o in objects) == 1:
            out.append(desc)
    return out


def heldout_objects(objects: Sequence[WorldObject]) -> list[int]:
    return [i for i, o in enumerate(objects) if (o.colour, o.shape) in HELDOUT_COMBOS]


def choice(rng: np.random.Generator, options: Sequence[T]) -> T:
    return options[int(rng.integers(len(options)))]


def example_rng(seed: int, task: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(task, SPLITS.index(split), index)))


def scene_world(split: str, image_size: int, seed: int) -> ShapesWorld:
    """The world split whose scenes the task's examples use (scene j is ``world[j]``)."""
    return ShapesWorld(split, size=_NO_SIZE, image_size=image_size, seed=seed)


def search(world: ShapesWorld, index: int, rng: np.random.Generator,
           build: Callable[[list[WorldObject], np.random.Generator], WorldExample | None],
           what: str) -> WorldExample:
    """The example ``build`` makes on the first of scenes ``index * SCENE_TRIES + k`` that admits one."""
    for k in range(SCENE_TRIES):
        scene = index * SCENE_TRIES + k
        example = build(world[scene].objects, rng)
        if example is not None:
            return WorldExample(example.text, example.answer, example.qtype, scene, example.about)
    raise RuntimeError(f"no scene among {SCENE_TRIES} admits {what} (example {index} of split {world.split})")
