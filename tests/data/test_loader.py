"""DataSpec parsing, the map-style epoch layout, determinism, resume, RNG hygiene, errors."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from torchvision import transforms

from hiclip.data.loader import DataSpec, make_loader, rank_batches
from hiclip.data.world import ShapesWorld

PLAIN = transforms.ToTensor()
AUGMENT = transforms.Compose([transforms.RandomResizedCrop(8, scale=(0.3, 1.0)), transforms.ToTensor()])
WORLD = DataSpec("world", world_size_samples=24, image_size=16)


def test_parse_data_strings():
    assert DataSpec.parse("world", world_size_samples=50) == DataSpec("world", [], world_size_samples=50)
    assert DataSpec.parse("wds:/d/a-{0..3}.tar::/e/b.tar").paths == ["/d/a-{0..3}.tar", "/e/b.tar"]
    assert DataSpec.parse("/d/s-{000..009}.tar").kind == "wds"
    assert DataSpec.parse("pipe:cat /d/s-0.tar").kind == "wds"
    spec = DataSpec.parse("/d/x.csv::/d/y.tsv", csv_caption_key="text")
    assert (spec.kind, spec.paths, spec.csv_caption_key) == ("csv", ["/d/x.csv", "/d/y.tsv"], "text")
    assert DataSpec.parse("csv:/d/table.txt").kind == "csv"
    for bad in ["data/folder", "/a.csv::/b.tar", "wds:"]:
        with pytest.raises(ValueError):
            DataSpec.parse(bad)
    with pytest.raises(ValueError, match="one of"):
        DataSpec("images", ["x"])
    with pytest.raises(ValueError, match="takes no paths"):
        DataSpec("world", ["x.tar"])


def test_rank_batches_follow_the_global_batch_layout():
    got = [rank_batches(11, 2, r, 2, seed=0, epoch=0, shuffle=False, drop_last=False) for r in range(2)]
    # global batches [0..3], [4..7]; the short last one (8, 9, 10) is split 2 + 1
    assert [b.tolist() for b in got[0]] == [[0, 1], [4, 5], [8, 9]]
    assert [b.tolist() for b in got[1]] == [[2, 3], [6, 7], [10]]
    shuffled = [rank_batches(11, 2, r, 2, seed=3, epoch=1, shuffle=True, drop_last=True) for r in range(2)]
    order = np.concatenate([np.concatenate([shuffled[0][g], shuffled[1][g]]) for g in range(2)])
    assert len(set(order.tolist())) == 8 and order.tolist() != list(range(8))
    again = rank_batches(11, 2, 1, 2, seed=3, epoch=1, shuffle=True, drop_last=True)
    other = rank_batches(11, 2, 1, 2, seed=3, epoch=2, shuffle=True, drop_last=True)
    assert all(np.array_equal(a, b) for a, b in zip(again, shuffled[1]))
    assert not all(np.array_equal(a, b) for a, b in zip(other, shuffled[1]))


def test_world_epoch_two_ranks_two_workers_covers_every_sample_once(byte_tokenizer):
    world = ShapesWorld("train", size=16, image_size=16)
    expected = Counter((s.caption, PLAIN(s.image).numpy().tobytes()) for s in world)
    spec = DataSpec("world", world_size_samples=16, image_size=16)
    seen: Counter = Counter()
    for rank in range(2):
        loader = make_loader(spec, PLAIN, byte_tokenizer, 4, workers=2, rank=rank, world_size=2, seed=1)
        assert loader.num_batches == len(loader) == 2
        for images, tokens in loader:
            assert images.shape == (4, 3, 16, 16) and tokens.dtype == torch.long
            seen.update(zip(byte_tokenizer.decode(tokens), (im.numpy().tobytes() for im in images)))
    assert seen == expected


def test_batches_do_not_depend_on_workers_and_resume_gives_the_tail(byte_tokenizer):
    full = list(make_loader(WORLD, AUGMENT, byte_tokenizer, 4, workers=0, seed=7, epoch=2))
    tail = list(make_loader(WORLD, AUGMENT, byte_tokenizer, 4, workers=2, seed=7, epoch=2, start_batch=2))
    assert len(full) == 6 and len(tail) == 4
    for (a, ta), (b, tb) in zip(full[2:], tail):
        assert torch.equal(a, b) and torch.equal(ta, tb)
    other_epoch = list(make_loader(WORLD, AUGMENT, byte_tokenizer, 4, workers=0, seed=7, epoch=3))
    assert not torch.equal(full[0][1], other_epoch[0][1])


def test_augmentation_depends_on_the_sample_not_the_batch_layout(byte_tokenizer):
    small = torch.cat([im for im, _ in make_loader(WORLD, AUGMENT, byte_tokenizer, 2, workers=0, shuffle=False)])
    large = torch.cat([im for im, _ in make_loader(WORLD, AUGMENT, byte_tokenizer, 6, workers=0, shuffle=False)])
    assert torch.equal(small, large)
    next_epoch = torch.cat([im for im, _ in make_loader(WORLD, AUGMENT, byte_tokenizer, 2, workers=0, shuffle=False,
                                                        epoch=1)])
    assert not torch.equal(small, next_epoch)  # same samples, same order: only the crops differ


def test_loading_leaves_the_global_rng_alone(byte_tokenizer):
    torch.manual_seed(123)
    state = torch.get_rng_state()
    for workers in (0, 1):
        list(make_loader(WORLD, AUGMENT, byte_tokenizer, 8, workers=workers))
    assert torch.equal(torch.get_rng_state(), state)


def test_bad_arguments_are_clear_errors(byte_tokenizer):
    with pytest.raises(ValueError, match=r"batch_size 8 x world_size 4 = 32 is larger than the dataset \(24"):
        make_loader(WORLD, PLAIN, byte_tokenizer, 8, world_size=4)
    with pytest.raises(ValueError, match="rank < world_size"):
        make_loader(WORLD, PLAIN, byte_tokenizer, 2, rank=2, world_size=2)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        make_loader(WORLD, PLAIN, byte_tokenizer, 0)
    with pytest.raises(ValueError, match="start_batch 13 is past"):
        make_loader(WORLD, PLAIN, byte_tokenizer, 2, start_batch=13)
