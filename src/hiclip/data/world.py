"""The embedded world: seeded image-caption pairs with gold trees, masks and relations.

A scene holds 1-3 objects on a black background, each with a shape, a colour, a size
and a centre ``(cx, cy)`` given as fractions of the image (x to the right, y
downwards). Objects in one scene have distinct colour-shape combinations; their
bounding circles do not overlap, and every horizontal and vertical centre offset is
either at least ``REL_MIN`` (a clear relation) or at most ``ALIGN_MAX`` (aligned), so
every relation is clearly true or clearly false. Shapes are drawn with PIL polygons
(no anti-aliasing): a mask's pixels have exactly the object's colour.

Splits: 'train', 'val' and 'test' use only colour-shape combinations outside
``HELDOUT_COMBOS`` (one held-out shape per colour and one colour per shape, so every
colour and every shape is seen in training); 'holdout' scenes have at least one
object with a held-out combination. Each split draws from its own seed stream, and
sample ``index`` of a split is generated from ``SeedSequence(seed, (split, index))``
alone: the same arguments give the same sample in any order of access.
Captions and gold trees come from ``hiclip.data.grammar``.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
from PIL import Image, ImageDraw

from hiclip.data.grammar import (  # WorldObject lives there (grammar needs it) and is re-exported here
    ALIGN_MAX, REL_MIN, Spec, WorldObject, describe, iter_specs, negative_captions, realise,
    true_relations)

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond", "cross",
                           "hexagon", "heart")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 30), "green": (40, 190, 40), "blue": (40, 90, 240),
    "yellow": (240, 225, 30), "purple": (150, 50, 210), "orange": (250, 140, 0),
    "white": (245, 245, 245), "gray": (128, 128, 128)}
SIZES = ("small", "large")
HELDOUT_COMBOS: frozenset[tuple[str, str]] = frozenset({
    ("red", "star"), ("green", "circle"), ("blue", "heart"), ("yellow", "square"),
    ("purple", "cross"), ("orange", "triangle"), ("white", "hexagon"), ("gray", "diamond")})
SPLITS = ("train", "val", "test", "holdout")
RADIUS = {"small": 0.09, "large": 0.15}  # bounding-circle radius, fraction of the image
BACKGROUND = (0, 0, 0)
_GAP = 0.02  # least free space between two bounding circles
_ALL_COMBOS = [(c, s) for c in COLOURS for s in SHAPES]
_SEEN_COMBOS = [combo for combo in _ALL_COMBOS if combo not in HELDOUT_COMBOS]
_STREAM_SCENE, _STREAM_VARIANTS, _STREAM_TASKS = 0, 1, 2


def _regular(n: int, radii: Sequence[float], start: float = -np.pi / 2) -> np.ndarray:
    angles = start + np.arange(n) * 2 * np.pi / n
    r = np.resize(np.asarray(radii, float), n)
    return np.stack([r * np.cos(angles), r * np.sin(angles)], 1)


def _heart() -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    pts = np.stack([16 * np.sin(t) ** 3,
                    -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))], 1)
    pts -= (pts.max(0) + pts.min(0)) / 2
    return pts / np.hypot(*pts.T).max()


_W = 0.32  # half-width of a cross's arms
_POLYGONS: dict[str, np.ndarray] = {  # unit shapes (V, 2) inside the unit circle
    "square": _regular(4, [1.0], np.pi / 4),
    "triangle": _regular(3, [1.0]),
    "star": _regular(10, [1.0, 0.45]),
    "diamond": np.array([[0, -1], [0.62, 0], [0, 1], [-0.62, 0]], float),
    "cross": np.array([[-_W, -1], [_W, -1], [_W, -_W], [1, -_W], [1, _W], [_W, _W], [_W, 1],
                       [-_W, 1], [-_W, _W], [-1, _W], [-1, -_W], [-_W, -_W]]) / np.hypot(1, _W),
    "hexagon": _regular(6, [1.0], 0.0),
    "heart": _heart(),
}


@dataclass
class Sample:
    """A scene with its caption and ground truth.

    image: RGB (H, W); masks: (K, H, W) bool, one per object in ``objects`` order;
    relations: every ``(i, relation, j)`` that holds; tree: the caption's gold PTB tree;
    spec: the caption's semantic form (``hiclip.data.grammar``), used by hard_negatives.
    """
    image: Image.Image
    caption: str
    tree: str
    masks: np.ndarray
    objects: list[WorldObject]
    relations: list[tuple[int, str, int]]
    index: int
    split: str
    spec: Spec = ()


def _rng(seed: int, split: str, stream: int, index: int) -> np.random.Generator:
    key = (SPLITS.index(split), stream, index)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _place(rng: np.random.Generator, radii: np.ndarray, batch: int = 64) -> np.ndarray:
    """Centres (K, 2) for bounding circles of ``radii`` (K,), by batched rejection sampling."""
    k = len(radii)
    i, j = np.triu_indices(k, 1)
    for _ in range(1000):
        cand = radii[:, None] + rng.random((batch, k, 2)) * (1 - 2 * radii[:, None])  # (T, K, 2)
        offset = np.abs(cand[:, i] - cand[:, j])  # (T, P, 2)
        apart = (np.hypot(offset[..., 0], offset[..., 1]) >= radii[i] + radii[j] + _GAP).all(1)
        clear = ((offset >= REL_MIN) | (offset <= ALIGN_MAX)).all((1, 2))
        hits = np.flatnonzero(apart & clear)
        if hits.size:
            return cand[hits[0]]
    raise RuntimeError(f"could not place objects with radii {radii}")


def _make_objects(rng: np.random.Generator, combos: Sequence[tuple[str, str]],
                  sizes: Sequence[str]) -> list[WorldObject]:
    centres = _place(rng, np.array([RADIUS[s] for s in sizes]))
    return [WorldObject(shape, colour, size, float(x), float(y))
            for (colour, shape), size, (x, y) in zip(combos, sizes, centres)]


def render(objects: Sequence[WorldObject], image_size: int) -> tuple[Image.Image, np.ndarray]:
    """The RGB image (S, S) of a scene and its object masks (K, S, S) bool."""
    label = Image.new("P", (image_size, image_size), 0)  # pixel value: object index + 1
    draw = ImageDraw.Draw(label)
    for k, obj in enumerate(objects):
        # pixel i spans [i, i + 1) and PIL rounds coordinates down, so each vertex
        # lands on the pixel whose centre i + 0.5 is nearest to it; PIL also fills the
        # boundary pixels, half a pixel outside the shape: shrink by half a pixel
        x, y = obj.cx * image_size, obj.cy * image_size
        r = RADIUS[obj.size] * image_size - 0.5
        if obj.shape == "circle":
            draw.ellipse((x - r, y - r, x + r, y + r), fill=k + 1)
        else:
            draw.polygon((_POLYGONS[obj.shape] * r + (x, y)).ravel().tolist(), fill=k + 1)
    palette = [BACKGROUND] + [COLOURS[o.colour] for o in objects]
    label.putpalette([v for rgb in palette for v in rgb])
    ids = np.asarray(label)
    masks = ids[None] == np.arange(1, len(objects) + 1, dtype=np.uint8)[:, None, None]
    return label.convert("RGB"), masks


def _pick_one(rng: np.random.Generator):
    return lambda options: [options[rng.integers(len(options))]]


class ShapesWorld:
    """A deterministic dataset of ``Sample`` s (see the module docstring)."""

    def __init__(self, split: str = "train", size: int | None = None, image_size: int = 64,
                 seed: int = 0, min_objects: int = 1, max_objects: int = 3):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if not 1 <= min_objects <= max_objects <= 3:
            raise ValueError("need 1 <= min_objects <= max_objects <= 3, "
                             f"got {min_objects}, {max_objects}")
        if image_size < 16:
            raise ValueError(f"image_size must be at least 16 pixels, got {image_size}")
        size = (10_000 if split == "train" else 1_000) if size is None else size
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        self.split, self.size, self.image_size, self.seed = split, size, image_size, seed
        self.min_objects, self.max_objects = min_objects, max_objects

    def __len__(self) -> int:
        return self.size

    def _check(self, index: int) -> int:
        index = operator.index(index)
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for a world of {self.size} samples")
        return index

    def _scene(self, index: int) -> tuple[list[WorldObject], Spec]:
        rng = _rng(self.seed, self.split, _STREAM_SCENE, index)
        k = int(rng.integers(self.min_objects, self.max_objects + 1))
        if self.split == "holdout":
            held = sorted(HELDOUT_COMBOS)[rng.integers(len(HELDOUT_COMBOS))]
            others = [c for c in _ALL_COMBOS if c != held]
            combos = [held] + [others[n] for n in rng.choice(len(others), k - 1, replace=False)]
            combos = [combos[n] for n in rng.permutation(k)]
        else:
            combos = [_SEEN_COMBOS[n] for n in rng.choice(len(_SEEN_COMBOS), k, replace=False)]
        objects = _make_objects(rng, combos, [SIZES[n] for n in rng.integers(2, size=k)])
        return objects, next(iter_specs(objects, _pick_one(rng)))

    def __getitem__(self, index: int) -> Sample:
        index = self._check(index)
        objects, spec = self._scene(index)
        caption, tree = realise(spec, [describe(o) for o in objects])
        image, masks = render(objects, self.image_size)
        return Sample(image, caption, tree, masks, objects, true_relations(objects), index,
                      self.split, spec)

    def __iter__(self) -> Iterator[Sample]:
        return (self[i] for i in range(self.size))

    def caption_variants(self, index: int, n: int | None = 5) -> list[str]:
        """Up to ``n`` distinct true captions of scene ``index`` (all when ``n`` is None).

        The first is the sample's caption; the others are in a seeded random order.
        Single-object scenes have 5 captions, multi-object scenes at least 8.
        """
        objects, spec = self._scene(self._check(index))
        descs = [describe(o) for o in objects]
        specs = list(iter_specs(objects, list))
        captions = {realise(spec, descs)[0]: None}  # an ordered set
        for n_spec in _rng(self.seed, self.split, _STREAM_VARIANTS, index).permutation(len(specs)):
            if n is not None and len(captions) >= n:
                break
            captions[realise(specs[n_spec], descs)[0]] = None
        return list(captions)


def hard_negatives(sample: Sample) -> dict[str, list[str]]:
    """False captions close to ``sample.caption``: "attribute_swap", "relation_swap",
    "attribute_replace" (see ``hiclip.data.grammar.negative_captions``)."""
    if not sample.spec:
        raise ValueError("hard_negatives needs a Sample made by ShapesWorld (its spec is empty)")
    return negative_captions(sample.spec, sample.objects, (SIZES, tuple(COLOURS), SHAPES))


TASKS = ("shape", "colour", "size", "count", "holdout")
_PREFIXES = ("", "there is ", "a picture of ")
_TEMPLATES: dict[str, list[str]] = {  # prompts phrased like the training captions
    "shape": [f"{p}a {s} {c} {{}}" for p in _PREFIXES for s in SIZES for c in COLOURS],
    "colour": [f"{p}a {s} {{}} {h}" for p in _PREFIXES for s in SIZES for h in SHAPES],
    "size": [f"a {{}} {c} {h}" for c in COLOURS for h in SHAPES],
    "count": ["{} shapes", "a picture of {} shapes", "an image with {} shapes",
              "there are {} shapes"],
    "holdout": [f"{p}a {s} {{}}" for p in _PREFIXES for s in SIZES],
}


def _task_scene(task: str, label: int, combos: list[tuple[str, str]],
                rng: np.random.Generator) -> tuple[list[tuple[str, str]], list[str]]:
    """(colour, shape) combos and sizes of one scene of a task whose class is ``label``."""
    if task == "count":
        chosen = [combos[n] for n in rng.choice(len(combos), label + 1, replace=False)]
        return chosen, [SIZES[n] for n in rng.integers(2, size=label + 1)]
    if task == "holdout":
        options = [_ALL_COMBOS[label]]
    elif task == "shape":
        options = [c for c in combos if c[1] == SHAPES[label]]
    elif task == "colour":
        options = [c for c in combos if c[0] == list(COLOURS)[label]]
    else:
        options = combos
    size = SIZES[label] if task == "size" else SIZES[rng.integers(2)]
    return [options[rng.integers(len(options))]], [size]


def classification_task(task: str, n: int, image_size: int = 64, seed: int = 0, split: str = "test",
                        ) -> tuple[list[Image.Image], list[int], list[str], list[str]]:
    """A zero-shot classification set: (images, labels, classnames, templates).

    Tasks: "shape", "colour", "size" (single-object scenes), "count" (1-3 objects,
    classnames "one", "two", "three"), "holdout" (single objects whose colour-shape
    combination is held out, classified among all colour-shape phrases such as "red
    star", so that neither colour nor shape alone names the class). Sample i has class
    ``i % len(classnames)``, except in "holdout", where it shows held-out combination
    ``i % len(HELDOUT_COMBOS)``. Except in "holdout", objects use the combinations of
    ``split`` (the held-out ones for split 'holdout', the others otherwise). Templates
    contain "{}"; they average over the attributes the task does not ask about
    ("a small red {}"), except for "count", which the captions never state.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if n < 0 or image_size < 16:
        raise ValueError(f"need n >= 0 and image_size >= 16, got n={n}, image_size={image_size}")
    classnames = {"shape": list(SHAPES), "colour": list(COLOURS), "size": list(SIZES),
                  "count": ["one", "two", "three"],
                  "holdout": [f"{c} {s}" for c, s in _ALL_COMBOS]}[task]
    heldout = [_ALL_COMBOS.index(c) for c in sorted(HELDOUT_COMBOS)]
    combos = sorted(HELDOUT_COMBOS) if split == "holdout" else _SEEN_COMBOS
    images, labels = [], []
    for i in range(n):
        rng = _rng(seed, split, _STREAM_TASKS + TASKS.index(task), i)
        label = heldout[i % len(heldout)] if task == "holdout" else i % len(classnames)
        chosen, sizes = _task_scene(task, label, combos, rng)
        images.append(render(_make_objects(rng, chosen, sizes), image_size)[0])
        labels.append(label)
    return images, labels, classnames, list(_TEMPLATES[task])
