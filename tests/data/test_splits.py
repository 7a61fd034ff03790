"""Stable-hash splits: known buckets, stability across processes, proportions, disjoint files."""
import csv
import json
import os
import subprocess
import sys

import pytest

from hiclip.data import splits
from hiclip.data.export import write_csv, write_webdataset
from hiclip.data.world import ShapesWorld


def test_buckets_of_known_digests():
    # sha1 digests from coreutils' sha1sum: "a" 86f7e437..., "n" d1854cae..., "b" e9d71f5e...
    assert splits.unit_hash("a") == pytest.approx(0x86F7E437FAA5A7FC / 2 ** 64)
    assert [splits.split_of(k) for k in ("a", "n", "b")] == ["train", "val", "test"]
    assert splits.split_of("b", (0.95, 0.0, 0.05)) == "train"  # 0.913 < 0.95
    with pytest.raises(ValueError, match="summing to 1"):
        splits.split_of("a", (0.5, 0.5, 0.5))


def test_same_splits_in_another_process_with_another_hash_seed():
    keys = [f"images/{i}.png" for i in range(200)]
    code = ("import json, sys; from hiclip.data.splits import split_of; "
            "print(json.dumps([split_of(k) for k in json.loads(sys.argv[1])]))")
    env = os.environ | {"PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code, json.dumps(keys)], env=env, check=True,
                         capture_output=True, text=True).stdout
    assert json.loads(out) == [splits.split_of(k) for k in keys]


def test_proportions_within_binomial_tolerance():
    n = 20_000
    counts = {s: 0 for s in splits.SPLITS}
    for i in range(n):
        counts[splits.split_of(f"item-{i}")] += 1
    for s, p in zip(splits.SPLITS, splits.FRACTIONS):
        sd = (n * p * (1 - p)) ** 0.5
        assert abs(counts[s] - n * p) < 4 * sd, counts


def _rows(path):
    with open(path, newline="") as f:
        return [(r["filepath"], r["title"]) for r in csv.DictReader(f)]


def test_csv_splits_are_disjoint_cover_every_row_and_survive_a_move(tmp_path):
    src = write_csv(ShapesWorld("train", 60, 32), tmp_path / "set")
    with open(src, newline="") as f:
        original = [(r["filepath"], r["title"]) for r in csv.DictReader(f)]
    # the same image twice, with another caption: both rows must land in one split
    with open(src, "a", newline="") as f:
        csv.writer(f).writerow([original[0][0], "a second caption", ""])
    files = splits.write_splits(f"csv:{src}", tmp_path / "out")
    parts = {s: _rows(files[s]) for s in splits.SPLITS}
    assert sorted(sum(parts.values(), [])) == sorted(original + [(original[0][0], "a second caption")])
    where = {p: s for s, rows in parts.items() for p, _ in rows}
    assert [s for s, rows in parts.items() for p, _ in rows if p == original[0][0]] == [where[original[0][0]]] * 2
    # each row's split is the hash of its path relative to the CSV folder
    for s, rows in parts.items():
        assert all(splits.split_of(os.path.relpath(p, src.parent)) == s for p, _ in rows)
    counts = json.loads((tmp_path / "out" / "splits.json").read_text())["counts"]
    assert counts == {s: len(rows) for s, rows in parts.items()}


def test_a_folder_with_split_files_is_used_as_given(tmp_path):
    for s in splits.SPLITS:
        (tmp_path / f"{s}.csv").write_text("filepath,title\nx.png,x\n")
    assert splits.write_splits(f"csv:{tmp_path}", tmp_path / "out") == {
        s: tmp_path / f"{s}.csv" for s in splits.SPLITS}
    (tmp_path / "test.csv").unlink()
    with pytest.raises(ValueError, match="must hold train.csv, val.csv, test.csv"):
        splits.write_splits(f"csv:{tmp_path}", tmp_path / "out")


def test_shards_split_by_sample_key_and_a_too_small_set_is_refused(tmp_path):
    write_webdataset(ShapesWorld("train", 40, 32), tmp_path / "shards", samples_per_shard=16)
    files = splits.write_splits(f"wds:{tmp_path}/shards/world-{{000000..000002}}.tar", tmp_path / "out")
    world = ShapesWorld("train", 40, 32)
    expected = {s: sorted(world[i].caption for i in range(40) if splits.split_of(f"{i:08d}") == s)
                for s in splits.SPLITS}
    assert {s: sorted(c for _, c in _rows(files[s])) for s in splits.SPLITS} == expected
    assert all(os.path.isfile(p) for s in splits.SPLITS for p, _ in _rows(files[s]))
    one = tmp_path / "one.csv"
    one.write_text("filepath,title\na,x\n")  # key "a" -> train; val and test stay empty
    with pytest.raises(ValueError, match=r"no item to split\(s\) \['val', 'test'\]"):
        splits.write_splits(f"csv:{one}", tmp_path / "out1")
