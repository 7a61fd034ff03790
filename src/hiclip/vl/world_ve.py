"""``world-ve``: visual entailment on the embedded world (premise: a scene image).

A hypothesis is a caption of the world grammar about some of the scene's objects (a
random subset, phrased by ``grammar.iter_specs``). Example ``i`` is of kind ``i % 4``:

- 0 entailment: the caption of the subset, true of the scene.
- 1 contradiction: one of the world's hard negatives of that caption (attribute swap,
  relation swap, attribute replacement), kept only when it is false of the *whole*
  scene (no one-to-one matching of its objects to the scene's makes it true).
- 2 contradiction with a material: such a negative with a material ("a small red wooden
  circle") added to one object -- still false.
- 3 neutral: the true caption with a material added: the renderer never shows
  materials, so the image neither entails nor contradicts it.

So half of the hypotheses are contradictions, and a material word appears in exactly
half of the hypotheses of each of the other two labels' companions: a reader of the
hypothesis alone can only tell {neutral, contradiction} from {entailment, contradiction},
which caps a hypothesis-only model at 0.5 accuracy (tested). Type names of examples:
"entailment", "neutral", "contradiction/<negative kind>". Held-out colour-shape
combinations: as in ``world_vqa``.
"""
from __future__ import annotations

from itertools import permutations
from typing import Sequence

from ..data.grammar import Spec, describe, iter_specs, negative_specs, realise, relation_holds
from ..data.world import HELDOUT_COMBOS, WorldObject
from .world_base import VALUES, WorldExample, choice, example_rng, heldout_objects, search

LABELS = ("entailment", "contradiction", "neutral")
MATERIALS = ("wooden", "metal", "plastic", "glass", "paper", "stone")
TASK_ID = 12
_KINDS = ("entailment", "contradiction", "contradiction+material", "neutral")
_VALUES = (VALUES["size"], VALUES["colour"], VALUES["shape"])


def holds_in(spec: Spec, descs: Sequence[tuple[str, str, str]], objects: Sequence[WorldObject]) -> bool:
    """Whether the caption (spec, descs) is true of the scene: some one-to-one matching of its
    described objects to scene objects matches every description and every stated relation."""
    actual = [describe(o) for o in objects]
    for p in permutations(range(len(objects)), len(descs)):
        if all(descs[v] == actual[p[v]] for v in range(len(descs))) and all(
                relation_holds(objects[p[c[0]]], objects[p[c[2]]], c[1]) for c, _ in spec if len(c) == 3):
            return True
    return False


def _names_heldout(descs: Sequence[tuple[str, str, str]]) -> bool:
    return any((c, s) in HELDOUT_COMBOS for _, c, s in descs)


def _contradiction(spec, descs, sub, objects, rng, holdout: bool):
    """A hard negative of (spec, descs) false of the whole scene -> (spec, descs, kind) or None."""
    valid = {}
    for kind, pairs in negative_specs(spec, sub, _VALUES).items():
        ok = [(s, d) for s, d in pairs if not holds_in(s, d, objects) and _names_heldout(d) == holdout]
        if ok:
            valid[kind] = ok
    if not valid:
        return None
    kind = choice(rng, sorted(valid))
    s, d = choice(rng, valid[kind])
    return s, list(d), kind


def _hypothesis(objects: list[WorldObject], rng, kind: str, holdout: bool) -> WorldExample | None:
    k = len(objects)
    subset = sorted(int(j) for j in rng.choice(k, int(rng.integers(1, k + 1)), replace=False))
    if holdout and not set(subset) & set(heldout_objects(objects)):
        return None
    sub = [objects[j] for j in subset]
    spec = next(iter_specs(sub, lambda options: [choice(rng, list(options))]))
    descs, qtype = [describe(o) for o in sub], kind
    if kind.startswith("contradiction"):
        found = _contradiction(spec, descs, sub, objects, rng, holdout)
        if found is None:
            return None
        spec, descs, negative = found
        qtype = f"contradiction/{negative}"
    elif _names_heldout(descs) != holdout:
        return None
    about = tuple(sorted({(c, s) for _, c, s in descs}))
    if kind.endswith("material") or kind == "neutral":
        v = int(rng.integers(len(descs)))
        size, colour, shape = descs[v]
        descs[v] = (size, f"{colour} {choice(rng, MATERIALS)}", shape)
    label = "neutral" if kind == "neutral" else kind.split("+")[0]
    return WorldExample(realise(spec, descs)[0], label, qtype, -1, about)


def make_hypothesis(world, index: int, seed: int) -> WorldExample:
    """Hypothesis ``index`` of ``world``'s split (``world``: ``world_base.scene_world``)."""
    holdout = world.split == "holdout"
    rng = example_rng(seed, TASK_ID, world.split, index)
    kind = _KINDS[index % len(_KINDS)]
    return search(world, index, rng, lambda objs, r: _hypothesis(objs, r, kind, holdout), f"a {kind} hypothesis")
