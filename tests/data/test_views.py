"""DeCLIP's data views: caption-preserving world views, MoCo-v2 views, EDA and MLM masking."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import hiclip
from hiclip.data.augment import ContentPreservingCrop, two_view_transform
from hiclip.data.skips import seeded_transform
from hiclip.data.text_views import (EDA, IGNORE, MASKED, SYNONYMS, TARGETS, WORLD_EDA_OPS, TextViews, eda,
                                    mask_row)
from hiclip.data.world import COLOURS, RADIUS, ShapesWorld
from hiclip.data.grammar import relation_holds

SIZE = 64


def _centroid(image, rgb) -> np.ndarray | None:
    ys, xs = np.nonzero((np.asarray(image) == rgb).all(-1))
    return None if len(xs) == 0 else np.array([xs.mean(), ys.mean(), len(xs)])


def test_world_views_keep_every_object_colour_relation_and_size_class():
    world, crop = ShapesWorld("train", 40, SIZE), ContentPreservingCrop(SIZE)
    for sample in world:
        for k in range(3):
            view = seeded_transform(lambda im: crop(im), sample.image, 0, k, sample.index)
            found = [_centroid(view, COLOURS[o.colour]) for o in sample.objects]
            assert all(c is not None and c[2] > 4 for c in found), sample.caption  # no object cut away
            colours = [o.colour for o in sample.objects]
            single = [i for i, c in enumerate(colours) if colours.count(c) == 1]  # told apart by colour
            for i in single:
                for j in single:
                    for rel, axis in (("left of", 0), ("above", 1)):
                        if i != j and relation_holds(sample.objects[i], sample.objects[j], rel):
                            assert found[j][axis] > found[i][axis], (sample.caption, rel)  # still true
                zoom_area = found[i][2] / sample.masks[i].sum()  # a small object never grows to a large one
                assert 0.85 ** 2 * 0.8 < zoom_area < 1.15 ** 2 * 1.25
    assert RADIUS["small"] * 1.15 < RADIUS["large"] * 0.85


def test_two_view_transforms_shapes_and_views_differ():
    image = ShapesWorld("train", 1, SIZE)[0].image
    for world in (True, False):
        views = seeded_transform(two_view_transform(SIZE, world=world), image, 0, 0, 0)
        assert views.shape == (2, 3, SIZE, SIZE) and not torch.equal(views[0], views[1])
        again = seeded_transform(two_view_transform(SIZE, world=world), image, 0, 0, 0)
        assert torch.equal(views, again)  # seeded per sample by the loaders


def test_eda_operations():
    rng = np.random.default_rng(0)
    words = "a small red circle above a large blue square".split()
    seen = set()
    for _ in range(300):
        out = eda(words, rng, WORLD_EDA_OPS)
        assert 1 <= len(out) <= len(words)
        if len(out) == len(words):  # a synonym replacement (or nothing): one word at most changes
            changed = [(w, o) for w, o in zip(words, out) if w != o]
            assert len(changed) <= 1 and all(o in SYNONYMS[w] for w, o in changed)
            seen.update(changed)
        else:  # a deletion keeps the order of the words it keeps
            it = iter(words)
            assert all(w in it for w in out)
    assert {("small", "little"), ("large", "big"), ("above", "over")} <= seen
    swapped = [eda(words, np.random.default_rng(s), ("swap",)) for s in range(20)]
    assert all(sorted(s) == sorted(words) for s in swapped) and any(s != words for s in swapped)
    assert eda(["circle"], rng, ("delete",)) == ["circle"]


def test_mlm_masking_rates_and_specials_never_masked():
    rng = np.random.default_rng(0)
    row = torch.zeros(77, dtype=torch.long)
    row[0], row[1:61], row[61] = 49406, torch.arange(1000, 1060), 49407  # 60 content tokens, then padding
    chosen = mask_kind = random_kind = kept = 0
    for _ in range(1000):
        masked, targets = mask_row(row, rng, 0.15, mask_id=49406, random_below=49406)
        picked = targets != IGNORE
        assert not picked[0] and not picked[61:].any()  # start, end and padding never chosen
        assert torch.equal(masked[~picked], row[~picked]) and torch.equal(targets[picked], row[picked])
        chosen += int(picked.sum())
        mask_kind += int((masked[picked] == 49406).sum())
        same = masked[picked] == row[picked]
        kept += int(same.sum())
        random_kind += int((~same & (masked[picked] != 49406)).sum())
        assert int(masked.max()) == 49407 and int(masked.argmax()) == 61  # end-of-text still the largest id
    assert chosen / 60000 == pytest.approx(0.15, abs=0.01)
    assert mask_kind / chosen == pytest.approx(0.8, abs=0.02)
    assert random_kind / chosen == pytest.approx(0.1, abs=0.015)
    assert kept / chosen == pytest.approx(0.1, abs=0.015)  # (a random token equal to the original counts here)


def test_text_views_rows_and_determinism():
    tokenizer = hiclip.get_tokenizer("HiCLIP-Tiny")
    captions = ["a small red circle above a large blue square", "an image of a green star", "a gray cross"] * 2
    views = TextViews(tokenizer, seed=0, epoch=0, ops=WORLD_EDA_OPS, wordnet=False)(captions)
    assert views.shape == (6, 3, 32) and views.dtype == torch.long
    plain = tokenizer(captions)
    picked = views[:, TARGETS] != IGNORE
    assert torch.equal(views[:, TARGETS][picked], plain[picked])
    assert torch.equal(views[:, MASKED][~picked], plain[~picked])
    assert torch.equal(views[:3], views[3:])  # a caption's views depend on (seed, epoch, caption) only
    assert torch.equal(TextViews(tokenizer, 0, 0, ops=WORLD_EDA_OPS, wordnet=False)(captions[::-1]), views.flip(0))
    other = [TextViews(tokenizer, 0, e, ops=WORLD_EDA_OPS, wordnet=False)(captions[:3]) for e in range(1, 6)]
    assert any(not torch.equal(o, views[:3]) for o in other)  # another epoch, other views
    decoded = [tokenizer.decode(t[t > 0][1:-1].tolist()).strip() for t in views[:3, EDA]]
    assert all(len(d.split()) >= 1 for d in decoded)
