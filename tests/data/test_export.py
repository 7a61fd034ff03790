import csv
import io
import json
import tarfile
from dataclasses import asdict

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from hiclip.data.export import write_csv, write_webdataset
from hiclip.data.world import ShapesWorld


def _members(path):
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def test_webdataset_round_trip(tmp_path):
    world = ShapesWorld("val", size=5, seed=2)
    shards = write_webdataset(world, tmp_path / "wds", samples_per_shard=2)
    assert [p.name for p in shards] == ["world-000000.tar", "world-000001.tar", "world-000002.tar"]
    members = {}
    for p in shards:
        members.update(_members(p))
    assert len(members) == 5 * 3
    for i, s in enumerate(world):
        key = f"{i:08d}"
        image = Image.open(io.BytesIO(members[f"{key}.png"]))
        assert np.array_equal(np.asarray(image.convert("RGB")), np.asarray(s.image))
        assert members[f"{key}.txt"].decode() == s.caption
        meta = json.loads(members[f"{key}.json"])
        assert meta["objects"] == [asdict(o) for o in s.objects]
        assert [tuple(r) for r in meta["relations"]] == s.relations and meta["tree"] == s.tree
    # the webdataset reader sees the same samples
    read = list(wds.WebDataset([str(p) for p in shards], shardshuffle=False).decode("pil"))
    assert [r["txt"] for r in read] == [s.caption for s in world]
    assert np.array_equal(np.asarray(read[3]["png"]), np.asarray(world[3].image))


def test_webdataset_jpg(tmp_path):
    world = ShapesWorld("train", size=2)
    (shard,) = write_webdataset(world, tmp_path, image_format="jpg")
    image = np.asarray(Image.open(io.BytesIO(_members(shard)["00000001.jpg"])), float)
    assert image.shape == (64, 64, 3)
    assert np.abs(image - np.asarray(world[1].image)).mean() < 8


@pytest.mark.parametrize("sep", [",", "\t"])
def test_csv_round_trip(tmp_path, sep):
    world = ShapesWorld("test", size=4, seed=1, image_size=32)
    path = write_csv(world, tmp_path / "csv", sep=sep)
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f, delimiter=sep))
    assert len(rows) == 4
    for row, s in zip(rows, world):
        assert row["filepath"] == str(tmp_path.resolve() / "csv" / "images" / f"{s.index}.png")
        image = Image.open(row["filepath"]).convert("RGB")
        assert np.array_equal(np.asarray(image), np.asarray(s.image))
        assert row["title"] == s.caption and row["tree"] == s.tree


def test_bad_format(tmp_path):
    world = ShapesWorld(size=1)
    with pytest.raises(ValueError, match="image_format"):
        write_webdataset(world, tmp_path, image_format="bmp")
    with pytest.raises(ValueError, match="image_format"):
        write_csv(world, tmp_path, image_format="gif")
    with pytest.raises(ValueError, match="samples_per_shard"):
        write_webdataset(world, tmp_path, samples_per_shard=0)
