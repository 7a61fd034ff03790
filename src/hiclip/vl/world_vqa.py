"""``world-vqa``: questions about the embedded world's scenes, with exact answers.

Question types (example ``i`` has type ``QTYPES[i % 7]``):

- colour / shape / size: "what colour is the small circle?" -- the object is named by a
  reference (a description only it matches) over the other attributes.
- count: "how many red objects are there?" -- answers 0-3 equally often (held-out split:
  0-1, as it counts one held-out colour-shape combination).
- exist: "is there a small red circle?" -- yes / no equally often, over the same
  attribute sets; half of the "no" descriptions bind attributes that the scene shows on
  different objects when it has such ("a red square" beside a red circle and a blue square).
- relation: "is the red circle to the left of the square?" -- yes / no equally often.
- query: "what is above the blue square?" -- asked only where exactly one object
  stands in that relation; the answer is its shape.

Splits use the world's splits (scenes never shared). On 'train', 'val' and 'test' no
text names a held-out colour-shape combination; on 'holdout' every question refers to
or asks about an object of a held-out combination (exist / count: a held-out combination
is the description). Answers are single words from ``ANSWERS``.
"""
from __future__ import annotations

from functools import lru_cache
from itertools import permutations, product
from typing import Sequence

from ..data.grammar import RELATIONS, relation_holds
from ..data.world import HELDOUT_COMBOS, WorldObject
from .world_base import (ATTRS, VALUES, WorldExample, choice, combo, describe, example_rng, heldout_objects,
                         is_heldout, matches, phrase, references, search, subsets)

QTYPES = ("colour", "shape", "size", "count", "exist", "relation", "query")
ANSWERS: tuple[str, ...] = (*VALUES["colour"], *VALUES["shape"], *VALUES["size"], "0", "1", "2", "3", "yes", "no")
REL_PHRASES = {"left of": "to the left of", "right of": "to the right of", "above": "above", "below": "below"}
TASK_ID = 11


def _about(objects: Sequence[WorldObject], idx: Sequence[int]) -> tuple[tuple[str, str], ...]:
    return tuple((objects[i].colour, objects[i].shape) for i in idx)


def _candidates(objects: Sequence[WorldObject], holdout: bool) -> list[int]:
    return heldout_objects(objects) if holdout else list(range(len(objects)))


def _attribute(objects, rng, qtype: str, holdout: bool) -> WorldExample | None:
    """colour / shape / size of an object named by the other attributes."""
    allowed = [a for a in ATTRS if a != qtype]
    for v in rng.permutation(_candidates(objects, holdout)):
        refs = references(objects, int(v), allowed)
        if refs:
            text = f"what {qtype} is {phrase(choice(rng, refs), 'the')}?"
            return WorldExample(text, getattr(objects[v], qtype), qtype, -1, _about(objects, [v]))
    return None


@lru_cache(maxsize=2)
def _filters(holdout: bool) -> list[list[dict]]:
    """Count / existence descriptions grouped by attribute set (held-out split: held-out combinations)."""
    if holdout:
        return [[{"colour": c, "shape": s} for c, s in sorted(HELDOUT_COMBOS)]]
    groups = []
    for attrs in subsets(ATTRS, empty=True):
        descs = [dict(zip(attrs, vals)) for vals in product(*(VALUES[a] for a in attrs))]
        groups.append([d for d in descs if not is_heldout(d)])
    return groups


def _count(objects, rng, want: int, holdout: bool) -> WorldExample | None:
    groups = _filters(holdout)
    for group in (groups[int(g)] for g in rng.permutation(len(groups))):
        hits = [d for d in group if sum(matches(o, d) for o in objects) == want]
        if hits:
            desc = choice(rng, hits)
            about = [c for c in [combo(desc)] if c] or _about(objects, [i for i, o in enumerate(objects)
                                                                      if matches(o, desc)])
            return WorldExample(f"how many {phrase(desc, '', plural=True)} are there?", str(want), "count", -1,
                                tuple(about))
    return None


def _exist(objects, rng, yes: bool, attrs: tuple[str, ...], holdout: bool) -> WorldExample | None:
    if yes:
        v = _candidates(objects, holdout)
        if not v:
            return None
        desc = describe(objects[choice(rng, v)], attrs)
    else:
        pool = _filters(holdout)[0] if holdout else next(g for g in _filters(False) if set(g[0]) == set(attrs))
        absent = [d for d in pool if not any(matches(o, d) for o in objects)]
        bound = [d for d in absent if all(any(getattr(o, a) == d[a] for o in objects) for a in d)]
        options = bound if bound and len(attrs) > 1 and rng.random() < 0.5 else absent
        if not options:
            return None
        desc = choice(rng, options)
    about = (combo(desc),) if combo(desc) else ()
    return WorldExample(f"is there {phrase(desc, 'a')}?", "yes" if yes else "no", "exist", -1, about)


def _relation(objects, rng, yes: bool, rel: str, holdout: bool) -> WorldExample | None:
    focus = set(_candidates(objects, holdout))
    pairs = [(a, b) for a, b in permutations(range(len(objects)), 2)
             if relation_holds(objects[a], objects[b], rel) == yes and {a, b} & focus]
    if not pairs:
        return None
    a, b = choice(rng, pairs)
    ref_a = phrase(choice(rng, references(objects, a, ATTRS)), "the")
    ref_b = phrase(choice(rng, references(objects, b, ATTRS)), "the")
    return WorldExample(f"is {ref_a} {REL_PHRASES[rel]} {ref_b}?", "yes" if yes else "no", "relation", -1,
                        _about(objects, [a, b]))


def _query(objects, rng, rel: str, holdout: bool) -> WorldExample | None:
    focus = set(_candidates(objects, holdout))
    for b in rng.permutation(len(objects)):
        b = int(b)
        hits = [a for a in range(len(objects)) if a != b and relation_holds(objects[a], objects[b], rel)]
        if len(hits) == 1 and {hits[0], b} & focus:
            ref_b = phrase(choice(rng, references(objects, b, ATTRS)), "the")
            return WorldExample(f"what is {REL_PHRASES[rel]} {ref_b}?", objects[hits[0]].shape, "query", -1,
                                _about(objects, [hits[0], b]))
    return None


def make_question(world, index: int, seed: int) -> WorldExample:
    """Question ``index`` of ``world``'s split (``world``: ``world_base.scene_world``)."""
    holdout = world.split == "holdout"
    rng = example_rng(seed, TASK_ID, world.split, index)
    qtype = QTYPES[index % len(QTYPES)]
    if qtype in ("colour", "shape", "size"):
        def build(objs, r):
            return _attribute(objs, r, qtype, holdout)
    elif qtype == "count":
        want = int(rng.integers(2 if holdout else 4))

        def build(objs, r):
            return _count(objs, r, want, holdout)
    elif qtype == "exist":
        yes = bool(rng.random() < 0.5)
        attrs = ("colour", "shape") if holdout else choice(rng, subsets(ATTRS))

        def build(objs, r):
            return _exist(objs, r, yes, attrs, holdout)
    else:
        yes, rel = bool(rng.random() < 0.5), choice(rng, RELATIONS)

        def build(objs, r):
            return _relation(objs, r, yes, rel, holdout) if qtype == "relation" else _query(objs, r, rel, holdout)
    return search(world, index, rng, build, f"a {qtype} question")
