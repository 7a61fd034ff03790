"""Caption grammar of the embedded world: captions, gold trees, truth, hard negatives.

A caption is built from a *spec*, its semantic form: a tuple of one or two
``(clause, frame)`` items. A clause is ``(v,)`` ("object v exists") or
``(a, relation, b)``; ``v``, ``a``, ``b`` index the scene's objects, and every object
of the scene is mentioned. A frame is the phrasing of the clause. An object's first
mention is "a <size> <colour> <shape>", a later one "the <size> <colour> <shape>".
Words are lowercase, separated by single spaces, without punctuation.

Gold trees follow Penn Treebank conventions (labels and preterminals):

- noun phrase, flat as in PTB: ``(NP (DT a) (JJ small) (JJ red) (NN circle))``
- "above X" / "below X": ``(PP (IN above) X)``
- "to the left of X": ``(PP (TO to) (NP (NP (DT the) (NN left)) (PP (IN of) X)))``
  (PTB attaches "of X" inside the NP "the left of X")
- fragment "A to the left of B": ``(NP (NP A) (PP ...))``
- copular "A is above B": ``(S (NP A) (VP (VBZ is) (PP ...)))``
- existential "there is A above B": ``(S (NP (EX there)) (VP (VBZ is) (NP (NP A) (PP ...))))``
- fronted "above B there is A": ``(S (PP ...) (NP (EX there)) (VP (VBZ is) (NP A)))``
- "a picture of A" / "an image of A" / "an image with A":
  ``(NP (NP (DT a) (NN picture)) (PP (IN of) A))``
- coordination, flat: ``(S S1 (CC and) S2)`` or ``(NP NP1 (CC and) NP2)``

Relations (image coordinates, y grows downwards): "a left of b" holds when
``b.cx - a.cx >= REL_MIN``, "a above b" when ``b.cy - a.cy >= REL_MIN``; "right of"
and "below" are their converses. The world places objects so that no offset falls
between ``ALIGN_MAX`` and ``REL_MIN``: a relation is either clearly true or clearly
false.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations, permutations
from typing import Callable, Iterator, Sequence

RELATIONS = ("left of", "right of", "above", "below")
OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
REL_MIN = 0.2
ALIGN_MAX = 0.06

OBJ_FRAMES = ("np", "there", "picture", "image_of", "image_with")
REL_FRAMES = ("np", "is", "there", "front")
_S_REL_FRAMES = ("is", "there", "front")
_PAIR_FRAMES = tuple((f, g) for f in _S_REL_FRAMES for g in _S_REL_FRAMES) + (("np", "np"),)
_S_FRAMES = {"there", "is", "front"}
_WRAPPERS = {"picture": ("a", "picture", "of"), "image_of": ("an", "image", "of"),
             "image_with": ("an", "image", "with")}

Clause = tuple  # (v,) or (a, relation, b)
Spec = tuple  # ((clause, frame), ...)
Desc = tuple[str, str, str]  # (size, colour, shape)
Node = tuple  # (label, word) for a preterminal, (label, [children]) otherwise


@dataclass
class WorldObject:
    """One object; ``cx``, ``cy``: its centre as fractions of the image width/height."""
    shape: str
    colour: str
    size: str
    cx: float
    cy: float


def relation_holds(a: WorldObject, b: WorldObject, relation: str) -> bool:
    """Whether ``a <relation> b`` holds for the centres of ``a`` and ``b``."""
    if relation == "left of":
        return b.cx - a.cx >= REL_MIN
    if relation == "right of":
        return a.cx - b.cx >= REL_MIN
    if relation == "above":
        return b.cy - a.cy >= REL_MIN
    if relation == "below":
        return a.cy - b.cy >= REL_MIN
    raise ValueError(f"relation must be one of {RELATIONS}, got {relation!r}")


def true_relations(objects: Sequence[WorldObject]) -> list[tuple[int, str, int]]:
    """All ``(i, relation, j)``, i != j, that hold between the objects."""
    return [(i, r, j) for i, j in permutations(range(len(objects)), 2)
            for r in RELATIONS if relation_holds(objects[i], objects[j], r)]


def iter_specs(objects: Sequence[WorldObject],
               pick: Callable[[Sequence], Sequence]) -> Iterator[Spec]:
    """Caption specs true of the scene; ``pick`` chooses among the options at each step.

    ``pick = lambda options: options`` yields every spec; a ``pick`` that returns one
    random option yields one random spec.
    """
    k = len(objects)
    rels = {(i, j): [r for r in RELATIONS if relation_holds(objects[i], objects[j], r)]
            for i, j in permutations(range(k), 2)}
    if k == 1:
        for frame in pick(OBJ_FRAMES):
            yield (((0,), frame),)
        return
    for a, b in pick(list(permutations(range(k), 2))):
        for r in pick(rels[a, b]):
            if k == 2:
                for frame in pick(REL_FRAMES):
                    yield (((a, r, b), frame),)
                continue
            c = 3 - a - b
            for kind in pick(("rel+obj", "rel+rel")):
                if kind == "rel+obj":
                    for rel_first in pick((True, False)):
                        for frame in pick(_S_REL_FRAMES):
                            items = (((a, r, b), frame), ((c,), "there"))
                            yield items if rel_first else items[::-1]
                    continue
                for d in pick((a, b)):
                    for s, o in pick(((c, d), (d, c))):
                        for r2 in pick(rels[s, o]):
                            for f1, f2 in pick(_PAIR_FRAMES):
                                yield (((a, r, b), f1), ((s, r2, o), f2))


def _np(desc: Desc, definite: bool) -> Node:
    size, colour, shape = desc
    return ("NP", [("DT", "the" if definite else "a"), ("JJ", size), ("JJ", colour), ("NN", shape)])


def _pp(relation: str, obj: Node) -> Node:
    if relation in ("above", "below"):
        return ("PP", [("IN", relation), obj])
    side = relation.split()[0]
    return ("PP", [("TO", "to"), ("NP", [("NP", [("DT", "the"), ("NN", side)]),
                                          ("PP", [("IN", "of"), obj])])])


_THERE = ("NP", [("EX", "there")])


def _clause_tree(clause: Clause, frame: str, descs: Sequence[Desc], seen: set[int]) -> Node:
    def mention(v: int) -> Node:
        node = _np(descs[v], v in seen)
        seen.add(v)
        return node

    if len(clause) == 1:
        subj = mention(clause[0])
        if frame == "np":
            return subj
        if frame == "there":
            return ("S", [_THERE, ("VP", [("VBZ", "is"), subj])])
        det, noun, prep = _WRAPPERS[frame]
        return ("NP", [("NP", [("DT", det), ("NN", noun)]), ("PP", [("IN", prep), subj])])
    a, r, b = clause
    if frame == "front":  # the object comes first in the word order
        pp = _pp(r, mention(b))
        return ("S", [pp, _THERE, ("VP", [("VBZ", "is"), mention(a)])])
    subj = mention(a)
    pp = _pp(r, mention(b))
    if frame == "np":
        return ("NP", [subj, pp])
    if frame == "is":
        return ("S", [subj, ("VP", [("VBZ", "is"), pp])])
    return ("S", [_THERE, ("VP", [("VBZ", "is"), ("NP", [subj, pp])])])


def _to_str(node: Node) -> str:
    label, body = node
    if isinstance(body, str):
        return f"({label} {body})"
    return f"({label} {' '.join(_to_str(child) for child in body)})"


def _leaves(node: Node, out: list[str]) -> list[str]:
    label, body = node
    if isinstance(body, str):
        out.append(body)
    else:
        for child in body:
            _leaves(child, out)
    return out


def realise(spec: Spec, descs: Sequence[Desc]) -> tuple[str, str]:
    """``(caption, tree)`` of a spec, ``descs[v]`` describing object ``v``."""
    seen: set[int] = set()
    trees = [_clause_tree(clause, frame, descs, seen) for clause, frame in spec]
    if len(trees) == 1:
        root = trees[0]
    else:
        label = "S" if spec[0][1] in _S_FRAMES else "NP"
        root = (label, [trees[0], ("CC", "and"), trees[1]])
    return " ".join(_leaves(root, [])), _to_str(root)


def describe(obj: WorldObject) -> Desc:
    """``(size, colour, shape)`` of an object."""
    return (obj.size, obj.colour, obj.shape)


def spec_holds(spec: Spec, descs: Sequence[Desc], objects: Sequence[WorldObject]) -> bool:
    """Whether the caption (spec with descriptions) is true of the scene.

    True when some one-to-one assignment of described objects to scene objects
    matches every description and makes every stated relation hold.
    """
    if len(descs) != len(objects):
        return False
    actual = [describe(o) for o in objects]
    for p in permutations(range(len(objects))):
        if all(descs[v] == actual[p[v]] for v in range(len(descs))) and all(
                relation_holds(objects[p[c[0]]], objects[p[c[2]]], c[1])
                for c, _ in spec if len(c) == 3):
            return True
    return False


def _swapped_attributes(descs: list[Desc]) -> Iterator[list[Desc]]:
    for i, j in combinations(range(len(descs)), 2):
        for attr in (0, 1):  # size, colour
            if descs[i][attr] != descs[j][attr]:
                new = [list(d) for d in descs]
                new[i][attr], new[j][attr] = descs[j][attr], descs[i][attr]
                yield [tuple(d) for d in new]


def _swapped_relations(spec: Spec) -> Iterator[Spec]:
    for n, (clause, frame) in enumerate(spec):
        if len(clause) == 3:
            a, r, b = clause
            for new in ((b, r, a), (a, OPPOSITE[r], b)):
                yield spec[:n] + ((new, frame),) + spec[n + 1:]


def _replaced_attributes(descs: list[Desc],
                         values: Sequence[Sequence[str]]) -> Iterator[list[Desc]]:
    in_scene = [{d[attr] for d in descs} for attr in range(3)]
    for v, desc in enumerate(descs):
        for attr, options in enumerate(values):
            for value in options:
                # size has two values: the other one, present in the scene or not
                if value != desc[attr] and (attr == 0 or value not in in_scene[attr]):
                    new = list(descs)
                    new[v] = desc[:attr] + (value,) + desc[attr + 1:]
                    yield new


def negative_specs(spec: Spec, objects: Sequence[WorldObject],
                   values: Sequence[Sequence[str]]) -> dict[str, list[tuple[Spec, list[Desc]]]]:
    """The candidates behind ``negative_captions`` as ``(spec, descs)``, by kind, before the
    truth check: each changes the caption's meaning but may still be true of the scene."""
    descs = [describe(o) for o in objects]
    return {
        "attribute_swap": [(spec, d) for d in _swapped_attributes(descs)],
        "relation_swap": [(s, descs) for s in _swapped_relations(spec)],
        "attribute_replace": [(spec, d) for d in _replaced_attributes(descs, values)],
    }


def negative_captions(spec: Spec, objects: Sequence[WorldObject],
                      values: Sequence[Sequence[str]]) -> dict[str, list[str]]:
    """False captions close to the caption of ``spec``, by kind.

    ``values`` = (sizes, colours, shapes) of the world.

    - "attribute_swap": colour, or size, exchanged between two objects.
    - "relation_swap": a relation's two sides exchanged, or its opposite relation.
    - "attribute_replace": one attribute of one object replaced; colours and shapes
      by values no object in the scene has, size by the other size.
    Each negative keeps the caption's phrasing and is false for the scene
    (``spec_holds``); a kind with no possible negative gives an empty list.
    """
    caption = realise(spec, [describe(o) for o in objects])[0]
    out: dict[str, list[str]] = {}
    for kind, pairs in negative_specs(spec, objects, values).items():
        captions = [realise(s, d)[0] for s, d in pairs if not spec_holds(s, d, objects)]
        out[kind] = list(dict.fromkeys(c for c in captions if c != caption))
    return out
