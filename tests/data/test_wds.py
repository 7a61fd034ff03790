"""WebDataset shards: reading, bad samples, rank/worker split, resume, up-front errors."""
from __future__ import annotations

import io
import json
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from hiclip.data.loader import DataSpec, make_loader, validate
from hiclip.data.skips import Skip
from hiclip.data.wds import check_shards, count_expansions, expand_shards, iter_shard, shard_sizes

AUGMENT = transforms.Compose([transforms.RandomResizedCrop(8, scale=(0.3, 1.0)), transforms.ToTensor()])


def png(value: int, size: int = 16) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (value % 256, 7, 99)).save(buf, "PNG")
    return buf.getvalue()


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def good(key: str, value: int) -> list[tuple[str, bytes]]:
    return [(f"{key}.png", png(value)), (f"{key}.txt", key.encode())]


def make_shards(root: Path, n_shards: int, per_shard: int) -> str:
    """Shards root/s-000..; sample keys (= captions) "k<shard>x<i>". Returns the brace pattern."""
    for s in range(n_shards):
        write_tar(root / f"s-{s:03d}.tar", [m for i in range(per_shard) for m in good(f"k{s}x{i}", 10 * s + i)])
    return str(root / f"s-{{000..{n_shards - 1:03d}}}.tar")


def captions_of(loader, tokenizer) -> list[str]:
    return [c for _, tokens in loader for c in tokenizer.decode(tokens)]


def test_expand_shards_braces_and_joined_sources():
    urls = expand_shards(["a/s-{0..2}.tar", "b/t-{08..10}.tar"])
    assert urls == ["a/s-0.tar", "a/s-1.tar", "a/s-2.tar", "b/t-08.tar", "b/t-09.tar", "b/t-10.tar"]


@pytest.mark.parametrize("pattern", ["x-{0..99}.tar", "a{1,2,{3..5}}b{x,y}", "{a..e}", "{0..10..3}", "{10..1..2}",
                                     "{000..099}", "plain", "{x}", "{-3..3}", "{{1,2},{3,4}}", r"a\{1,2\}b{x,y}"])
def test_brace_counts_match_the_expansion(pattern):
    from webdataset.shardlists import braceexpand
    assert count_expansions(pattern) == len(list(braceexpand.braceexpand(pattern)))


def test_a_huge_or_unbalanced_pattern_is_refused_before_expanding():
    with pytest.raises(ValueError, match=r"expands to 100000000 names, more than the 1000000 hiclip accepts"):
        expand_shards(["x-{0..99999999}.tar"])  # expanded, this takes minutes and gigabytes
    with pytest.raises(ValueError, match="unbalanced braces"):
        expand_shards(["x-{0..3}}.tar"])


def test_a_pattern_matching_no_file_says_so(tmp_path):
    urls = expand_shards([str(tmp_path / "s-{0..2}.tar")])
    with pytest.raises(FileNotFoundError) as e:
        check_shards(urls)
    assert str(e.value) == (f"the shard pattern matches no file: none of its 3 shard(s) ({urls[0]} ... {urls[2]}) "
                            "exists")


def test_iter_shard_groups_members_and_ignores_meta(tmp_path):
    members = [("__meta__.json", b"{}")] + good("a", 1) + [("a.json", b"{}")] + good("b", 2)
    samples = list(iter_shard(str(write_tar(tmp_path / "x.tar", members))))
    assert [k for k, _ in samples] == ["a", "b"]
    assert samples[0][1] == {"png": png(1), "txt": b"a", "json": b"{}"}


@pytest.mark.parametrize("cut", ["data", "header"])
def test_truncated_tar_yields_samples_before_the_cut(tmp_path, cut):
    path = write_tar(tmp_path / "t.tar", [m for i in range(4) for m in good(f"k{i}", i)])
    with tarfile.open(path) as tar:
        last = tar.getmember("k3.png")
    raw = path.read_bytes()
    path.write_bytes(raw[:last.offset_data + 20] if cut == "data" else raw[:last.offset])
    keys = []
    with pytest.raises(Skip) as info:
        for key, _ in iter_shard(str(path)):
            keys.append(key)
    assert info.value.reason == "truncated tar"
    # cut inside k3's data: k0..k2 complete; cut before k3's header: k2 may lack members, so dropped
    assert keys == (["k0", "k1", "k2"] if cut == "data" else ["k0", "k1"])


def test_bad_samples_are_counted_and_good_ones_delivered(tmp_path, byte_tokenizer):
    half_png = png(5)[:len(png(5)) // 2]
    members = (good("g0", 0) + [("bad1.png", np.random.default_rng(0).bytes(300)), ("bad1.txt", b"x")]
               + [("bad2.png", half_png), ("bad2.txt", b"x")] + good("g1", 1)
               + [("bad3.png", png(3))] + [("bad4.txt", b"only text")]
               + [("bad5.jpg", png(4)), ("bad5.txt", b"  \n ")]
               + [("bad6.webp", png(6)), ("bad6.txt", b"caf\xff\xfe")] + good("g2", 2))
    write_tar(tmp_path / "s-000.tar", members)
    cut = write_tar(tmp_path / "s-001.tar", [m for i in range(3, 7) for m in good(f"g{i}", i)])
    with tarfile.open(cut) as tar:
        offset = tar.getmember("g6.png").offset_data + 10
    cut.write_bytes(cut.read_bytes()[:offset])
    spec = DataSpec.parse(str(tmp_path / "s-{000..001}.tar"))
    validate(spec)
    loader = make_loader(spec, AUGMENT, byte_tokenizer, 2, workers=0, shuffle=False, drop_last=False)
    assert sorted(captions_of(loader, byte_tokenizer)) == ["g0", "g1", "g2", "g3", "g4", "g5"]
    assert loader.skips == Counter({"unreadable image": 2, "no caption": 1, "no image": 1,
                                    "empty caption": 1, "caption not UTF-8": 1, "truncated tar": 1})


def test_quota_is_kept_when_bad_samples_leave_a_rank_short(tmp_path, byte_tokenizer):
    write_tar(tmp_path / "s-000.tar", good("a", 0) + [("b.txt", b"no image")] + good("c", 1) + good("d", 2))
    loader = make_loader(DataSpec("wds", [str(tmp_path / "s-000.tar")]), AUGMENT, byte_tokenizer, 2, workers=0)
    assert loader.num_batches == 2  # 4 samples counted in the tar headers
    got = captions_of(loader, byte_tokenizer)
    assert len(got) == 4 and set(got) == {"a", "c", "d"}  # wraps round to fill the second batch
    assert loader.skips == Counter({"no image": 1})


def test_two_ranks_two_workers_cover_the_epoch_once(tmp_path, byte_tokenizer):
    spec = DataSpec("wds", [make_shards(tmp_path, 8, 5)])
    seen = []
    for rank in range(2):
        loader = make_loader(spec, AUGMENT, byte_tokenizer, 5, workers=2, rank=rank, world_size=2, epoch=3)
        got = captions_of(loader, byte_tokenizer)
        assert loader.num_batches == 4 and len(got) == 20
        seen += got
    assert sorted(seen) == sorted(f"k{s}x{i}" for s in range(8) for i in range(5))


def test_unequal_shards_give_every_rank_the_same_batch_count(tmp_path, byte_tokenizer):
    for s, n in enumerate([6, 2, 5, 3]):
        write_tar(tmp_path / f"s-{s:03d}.tar", [m for i in range(n) for m in good(f"k{s}x{i}", i)])
    spec = DataSpec("wds", [str(tmp_path / "s-{000..003}.tar")])
    got = []
    for rank in range(2):
        loader = make_loader(spec, AUGMENT, byte_tokenizer, 2, workers=2, rank=rank, world_size=2, shuffle=False)
        got.append(captions_of(loader, byte_tokenizer))
        # rank 1 holds shards 1 and 3 (2 and 3 samples), one per worker: 2 batches fit without reuse
        assert loader.num_batches == 2 and len(got[-1]) == 4
    assert len(set(got[0] + got[1])) == 8


def test_fewer_shards_than_ranks_and_workers(tmp_path, byte_tokenizer):
    spec = DataSpec("wds", [make_shards(tmp_path, 1, 12)])
    per_rank = []
    for rank in range(2):
        with pytest.warns(UserWarning, match="using 1 worker"):
            loader = make_loader(spec, AUGMENT, byte_tokenizer, 3, workers=2, rank=rank, world_size=2)
        per_rank.append(captions_of(loader, byte_tokenizer))
    # every rank reads the shard and keeps samples j with j % 2 == rank
    assert per_rank == [[f"k0x{i}" for i in range(r, 12, 2)] for r in range(2)]


def test_resume_reproduces_the_tail_of_the_epoch(tmp_path, byte_tokenizer):
    spec = DataSpec("wds", [make_shards(tmp_path, 4, 6)])
    kw = dict(workers=2, seed=5, epoch=1)
    full = list(make_loader(spec, AUGMENT, byte_tokenizer, 3, **kw))
    tail = list(make_loader(spec, AUGMENT, byte_tokenizer, 3, start_batch=3, **kw))
    assert len(full) == 8 and len(tail) == 5
    for (a, ta), (b, tb) in zip(full[3:], tail):
        assert torch.equal(a, b) and torch.equal(ta, tb)


def test_shard_order_depends_on_seed_and_epoch(tmp_path, byte_tokenizer):
    spec = DataSpec("wds", [make_shards(tmp_path, 6, 2)])
    def order_of(seed: int, epoch: int) -> list[str]:
        return captions_of(make_loader(spec, AUGMENT, byte_tokenizer, 2, workers=0, seed=seed, epoch=epoch),
                           byte_tokenizer)

    order = {(s, e): order_of(s, e) for s, e in [(0, 0), (0, 1), (1, 0)]}
    assert order[0, 0] == order_of(0, 0)
    assert order[0, 0] != order[0, 1] and order[0, 0] != order[1, 0]
    assert all(sorted(v) == sorted(order[0, 0]) for v in order.values())


def test_shard_sizes_from_sizes_json_or_headers(tmp_path):
    pattern = make_shards(tmp_path, 2, 3)
    urls = expand_shards([pattern])
    assert shard_sizes(urls) == [3, 3]
    (tmp_path / "sizes.json").write_text(json.dumps({"s-000.tar": 2, "s-001.tar": 1}))
    assert shard_sizes(urls) == [2, 1]  # sizes.json wins over counting
    assert shard_sizes(urls[::-1]) == [1, 2]


def test_up_front_errors(tmp_path, byte_tokenizer):
    pattern = make_shards(tmp_path, 2, 3)
    missing = DataSpec("wds", [str(tmp_path / "s-{000..002}.tar")])
    with pytest.raises(FileNotFoundError, match="1 of 3 shards not found: .*s-002.tar"):
        validate(missing)
    with pytest.raises(FileNotFoundError):
        make_loader(missing, AUGMENT, byte_tokenizer, 2)
    with pytest.raises(ValueError, match="batch_size 4 is larger"):
        make_loader(DataSpec("wds", [pattern]), AUGMENT, byte_tokenizer, 4, workers=0, world_size=2)
    write_tar(tmp_path / "bad.tar", [("a.png", b"junk"), ("a.txt", b"x"), ("b.txt", b"y")])
    with pytest.raises(ValueError, match="no valid sample"):
        validate(DataSpec("wds", [str(tmp_path / "bad.tar")]))
