import re
from collections import Counter

import numpy as np
import pytest
from nltk import Tree
from scipy import ndimage

from hiclip.data.world import (
    COLOURS, HELDOUT_COMBOS, RADIUS, SHAPES, SIZES, ShapesWorld, classification_task,
    hard_negatives)

REL = {"to the left of": "left of", "to the right of": "right of", "above": "above",
       "below": "below"}
_NP = r"(?:a|the) (\w+ \w+ \w+)"
_RELS = "|".join(REL)
# the four phrasings of a 2-object caption, written out independently of the grammar
_PATTERNS = [
    (re.compile(rf"^(?:there is )?{_NP} (?:is )?({_RELS}) {_NP}$"), (0, 1, 2)),
    (re.compile(rf"^({_RELS}) {_NP} there is {_NP}$"), (2, 0, 1)),
]


def _holds_by_hand(a, b, rel):
    dx, dy = b.cx - a.cx, b.cy - a.cy
    return {"left of": dx >= 0.2, "right of": -dx >= 0.2,
            "above": dy >= 0.2, "below": -dy >= 0.2}[rel]


def _two_object_truth(caption, objects):
    """Truth of a 2-object caption, parsed with regular expressions."""
    for pattern, (i_subj, i_rel, i_obj) in _PATTERNS:
        m = pattern.match(caption)
        if m:
            g = m.groups()
            subj, rel, obj = g[i_subj], REL[g[i_rel]], g[i_obj]
            by_desc = {f"{o.size} {o.colour} {o.shape}": o for o in objects}
            if subj not in by_desc or obj not in by_desc or subj == obj:
                return False
            return _holds_by_hand(by_desc[subj], by_desc[obj], rel)
    raise AssertionError(f"unparsed caption {caption!r}")


def _same(s, t):
    return (s.caption == t.caption and s.tree == t.tree and s.objects == t.objects
            and s.relations == t.relations
            and np.array_equal(np.asarray(s.image), np.asarray(t.image))
            and np.array_equal(s.masks, t.masks))


def test_deterministic_in_any_order():
    world = ShapesWorld("train", size=12, seed=3)
    forward = [world[i] for i in range(12)]
    backward = [ShapesWorld("train", size=12, seed=3)[i] for i in reversed(range(12))][::-1]
    assert all(_same(s, t) for s, t in zip(forward, backward))
    assert all(_same(s, t) for s, t in zip(forward, world))
    other_seed = ShapesWorld("train", size=12, seed=4)
    test_split = ShapesWorld("test", size=12, seed=3)
    assert [s.caption for s in other_seed] != [s.caption for s in forward]
    assert [s.caption for s in test_split] != [s.caption for s in forward]


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_heldout_combos_absent(split):
    combos = [(o.colour, o.shape) for s in ShapesWorld(split, size=300) for o in s.objects]
    assert not set(combos) & HELDOUT_COMBOS
    assert len(set(combos)) == len(COLOURS) * len(SHAPES) - len(HELDOUT_COMBOS)


def test_holdout_split_has_heldout_combo():
    samples = list(ShapesWorld("holdout", size=200))
    assert all(any((o.colour, o.shape) in HELDOUT_COMBOS for o in s.objects) for s in samples)
    assert {(o.colour, o.shape) for s in samples for o in s.objects} >= HELDOUT_COMBOS


def test_masks_match_image():
    size = 128
    for s in ShapesWorld("val", size=60, image_size=size):
        pixels = np.asarray(s.image)
        assert s.masks.shape == (len(s.objects), size, size) and s.masks.dtype == bool
        assert s.masks.sum(0).max() <= 1  # disjoint
        assert (pixels[~s.masks.any(0)] == 0).all()  # background elsewhere
        for mask, obj in zip(s.masks, s.objects):
            assert (pixels[mask] == COLOURS[obj.colour]).all()
            r = RADIUS[obj.size] * size
            expected = {"circle": np.pi * r ** 2, "square": 2 * r ** 2}.get(obj.shape)
            if expected is not None:  # hand-computed areas and centres
                assert abs(mask.sum() - expected) < 0.12 * expected
                ys, xs = np.nonzero(mask)
                assert abs(xs.mean() + 0.5 - obj.cx * size) < 0.6
                assert abs(ys.mean() + 0.5 - obj.cy * size) < 0.6


def test_caption_describes_every_object_and_tree_matches():
    for s in ShapesWorld("train", size=150, seed=1):
        assert s.caption == s.caption.lower() and re.fullmatch(r"[a-z]+( [a-z]+)*", s.caption)
        tree = Tree.fromstring(s.tree)
        assert tree.leaves() == s.caption.split()
        preterminals = list(tree.subtrees(lambda t: t.height() == 2))
        assert all(isinstance(t[0], str) and len(t) == 1 for t in preterminals)
        assert len(preterminals) == len(s.caption.split())
        nps = [" ".join(t.leaves()) for t in tree.subtrees(lambda t: t.label() == "NP")]
        for o in s.objects:
            desc = f"{o.size} {o.colour} {o.shape}"
            assert len(re.findall(rf"(?:^| )a {desc}(?: |$)", s.caption)) == 1
            assert f"a {desc}" in nps  # every object's noun phrase is a constituent


def test_relations_consistent_with_centres():
    for s in ShapesWorld("train", size=150, seed=2, min_objects=2):
        expected = {(i, r, j) for i, a in enumerate(s.objects) for j, b in enumerate(s.objects)
                    if i != j for r in ("left of", "right of", "above", "below")
                    if _holds_by_hand(a, b, r)}
        assert set(s.relations) == expected
        for i, a in enumerate(s.objects):
            for b in s.objects[i + 1:]:
                offsets = np.abs([a.cx - b.cx, a.cy - b.cy])
                assert ((offsets >= 0.2) | (offsets <= 0.06)).all()  # never ambiguous
                assert (offsets >= 0.2).any()  # some relation is stated truthfully
        if len(s.objects) == 2:
            assert _two_object_truth(s.caption, s.objects)


def test_caption_variants():
    world = ShapesWorld("test", size=30, seed=5, min_objects=1, max_objects=2)
    for i in range(30):
        s, variants = world[i], world.caption_variants(i)
        assert variants[0] == s.caption and len(variants) == 5 == len(set(variants))
        every = world.caption_variants(i, None)
        assert every[:5] == variants
        if len(s.objects) == 1:
            assert len(every) == 5
        else:
            assert all(_two_object_truth(c, s.objects) for c in every)


def _attribute_words(caption):
    vocab = set(SIZES) | set(COLOURS) | set(SHAPES)
    return sorted(w for w in caption.split() if w in vocab)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_hard_negatives(k):
    world = ShapesWorld("train", size=25, seed=7, min_objects=k, max_objects=k)
    counts = Counter()
    for i in range(25):
        s = world[i]
        negatives = hard_negatives(s)
        assert set(negatives) == {"attribute_swap", "relation_swap", "attribute_replace"}
        true = set(world.caption_variants(i, None))
        for kind, captions in negatives.items():
            counts[kind] += len(captions)
            assert not set(captions) & true
            for c in captions:
                if k == 2:
                    assert not _two_object_truth(c, s.objects)
                if kind == "attribute_replace":  # one word replaced (in each mention)
                    changed = {(x, y) for x, y in zip(c.split(), s.caption.split()) if x != y}
                    assert len(changed) == 1
                else:
                    assert len(c.split()) == len(s.caption.split())
                if kind == "relation_swap":
                    assert _attribute_words(c) == _attribute_words(s.caption)
                if kind == "attribute_swap":
                    once = " the " not in re.sub(r"to the (left|right)", "", s.caption)
                    if once:  # every object mentioned once: a permutation of words
                        assert Counter(c.split()) == Counter(s.caption.split())
                    assert set(_attribute_words(c)) == set(_attribute_words(s.caption))
    if k == 1:
        assert counts["attribute_swap"] == counts["relation_swap"] == 0
    else:
        assert counts["attribute_swap"] > 0 and counts["relation_swap"] > 0
    assert counts["attribute_replace"] > 0


@pytest.mark.parametrize("task", ["shape", "colour", "size", "count", "holdout"])
def test_classification_task(task):
    images, labels, classnames, templates = classification_task(task, 24, image_size=128, seed=1)
    if task == "holdout":  # held-out combinations among all 64 colour-shape classes
        assert len(classnames) == len(COLOURS) * len(SHAPES)
        assert [tuple(classnames[x].split()) for x in labels] == [sorted(HELDOUT_COMBOS)[i % 8] for i in range(24)]
    else:
        assert labels == [i % len(classnames) for i in range(24)]
    assert len(images) == len(labels) == 24
    assert all("{}" in t for t in templates)
    for image, label in zip(images, labels):
        pixels = np.asarray(image)
        fg = pixels.any(-1)
        colours = {tuple(p) for p in pixels[fg]}
        count = ndimage.label(fg)[1]
        name = classnames[label]
        if task == "count":
            assert count == ["one", "two", "three"].index(name) + 1
            continue
        assert count == 1 and len(colours) == 1
        (rgb,) = colours
        colour = next(c for c, v in COLOURS.items() if v == rgb)
        if task == "colour":
            assert colour == name
        if task == "holdout":
            assert name.split()[0] == colour and tuple(name.split()) in HELDOUT_COMBOS
        if task == "size":
            ys, xs = np.nonzero(fg)
            extent = max(np.ptp(xs), np.ptp(ys)) + 1
            assert (extent > 27) == (name == "large")
        if task == "shape":
            assert (colour, name) not in HELDOUT_COMBOS


def test_bad_input():
    with pytest.raises(ValueError, match="split"):
        ShapesWorld("training")
    with pytest.raises(ValueError, match="min_objects"):
        ShapesWorld(min_objects=2, max_objects=4)
    with pytest.raises(ValueError, match="image_size"):
        ShapesWorld(image_size=8)
    with pytest.raises(IndexError):
        ShapesWorld(size=3)[3]
    with pytest.raises(ValueError, match="task"):
        classification_task("texture", 3)
    assert [s.index for s in ShapesWorld(size=3)] == [0, 1, 2]
