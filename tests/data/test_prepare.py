"""hiclip prepare: CSV of local images -> resized WebDataset shards that the training loader reads."""
from __future__ import annotations

import json
import tarfile
from collections import Counter

import numpy as np
import torch
from PIL import Image
from torchvision import transforms

from hiclip.cli import main
from hiclip.data.loader import DataSpec, make_loader
from hiclip.data.prepare import prepare


def test_prepare_resizes_counts_skips_and_trains(tmp_path, huge_png, capsys):
    rng = np.random.default_rng(0)
    rows = ["filepath,title"]
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (90 + i, 120, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
        rows.append(f"{i}.png,picture {i}")
    Image.new("RGB", (20, 30), (5, 6, 7)).save(tmp_path / "small.png")  # never enlarged
    huge_png(tmp_path / "bomb.png")
    (tmp_path / "junk.png").write_bytes(b"junk")
    rows += ["small.png,small one", "bomb.png,a bomb", "junk.png,junk", "0.png,   ", "gone.png,missing"]
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n")
    summary = prepare([tmp_path / "pairs.csv"], tmp_path / "shards", size=32, samples_per_shard=4, progress=False)
    assert summary["samples"] == 6 and summary["skipped"] == {"image too large": 1, "unreadable image": 1,
                                                              "empty caption": 1, "missing image file": 1}
    assert json.loads((tmp_path / "shards" / "sizes.json").read_text()) == {"shard-000000.tar": 4,
                                                                          "shard-000001.tar": 2}
    with tarfile.open(tmp_path / "shards" / "shard-000000.tar") as tar:
        names = tar.getnames()
        first = Image.open(tar.extractfile(names[0]))
        assert names[:2] == ["000000000.jpg", "000000000.txt"] and tar.extractfile(names[1]).read() == b"picture 0"
    assert first.size == (43, 32)  # 120 x 90 -> shorter side 32, aspect kept
    spec = DataSpec("wds", [summary["pattern"]], image_size=32)
    loader = make_loader(spec, transforms.Compose([transforms.Resize((16, 16)), transforms.ToTensor()]),
                         lambda caps: torch.zeros(len(caps), 4, dtype=torch.long), 2, workers=0)
    assert sum(len(images) for images, _ in loader) == 6 and loader.skips == Counter()
    assert main(["prepare", str(tmp_path / "pairs.csv"), "--out", str(tmp_path / "cli"), "--size", "32"]) == 0
    out = capsys.readouterr().out
    assert "wrote 6 samples in 1 shard(s)" in out and "image too large: 1" in out and "wds:" in out
