"""CSV / TSV tables: columns, paths, separators, bad rows, up-front errors."""
from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision import transforms

from hiclip.data.csvdata import read_csv
from hiclip.data.loader import DataSpec, make_loader, validate

TO_TENSOR = transforms.Compose([transforms.Resize((8, 8)), transforms.ToTensor()])


def save_png(path: Path, value: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 12), (value, 0, 0)).save(path)
    return path


def write_rows(path: Path, header: str, rows: list[str], sep: str = ",") -> Path:
    path.write_bytes((header + "\n" + "\n".join(rows) + "\n").replace(",", sep).encode("utf-8", "surrogateescape"))
    return path


def test_read_csv_paths_columns_and_separators(tmp_path):
    absolute = save_png(tmp_path / "abs" / "a.png", 1)
    save_png(tmp_path / "sub" / "img" / "b.png", 2)
    first = write_rows(tmp_path / "sub" / "one.csv", "title,filepath", ["cap a," + str(absolute), "cap b,img/b.png"])
    second = write_rows(tmp_path / "two.tsv", "image,text", ["sub/img/b.png,cap c"], sep="\t")
    table = read_csv([first], "filepath", "title")
    assert table.paths == [str(absolute), str(tmp_path / "sub" / "img" / "b.png")]
    assert table.captions == ["cap a", "cap b"]
    other = read_csv([second], img_key="image", caption_key="text")  # .tsv -> tab separator
    assert other.paths == [str(tmp_path / "sub" / "img" / "b.png")] and other.captions == ["cap c"]
    image, caption = table.load(1)
    assert caption == "cap b" and image.mode == "RGB" and image.getpixel((0, 0)) == (2, 0, 0)


def test_missing_columns_and_files_are_clear_errors(tmp_path):
    path = write_rows(tmp_path / "d.csv", "image,caption", ["x.png,hello"])
    with pytest.raises(ValueError, match=r"no column \['filepath', 'title'\]; its columns are \['image', 'caption'\]"):
        validate(DataSpec("csv", [str(path)]))
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        validate(DataSpec("csv", [str(tmp_path / "nope.csv")]))
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match="empty"):
        read_csv([tmp_path / "empty.csv"])


def test_bad_rows_are_counted_and_good_ones_delivered(tmp_path, byte_tokenizer):
    for i in range(4):
        save_png(tmp_path / f"g{i}.png", i)
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG not really an image")
    whole = (tmp_path / "g0.png").read_bytes()
    (tmp_path / "half.png").write_bytes(whole[:len(whole) // 2])
    rows = ["g0.png,good 0", "missing.png,lost", "corrupt.png,bad", "g1.png,good 1", "half.png,cut",
            "g2.png,   ", "g3.png,caf\udcff\udcfe", "g2.png,good 2", ",no path", "g3.png,good 3"]
    path = write_rows(tmp_path / "d.csv", "filepath,title", rows)
    validate(DataSpec.parse(str(path)))
    loader = make_loader(DataSpec("csv", [str(path)]), TO_TENSOR, byte_tokenizer, 2, workers=0, shuffle=False,
                         drop_last=False)
    batches = list(loader)
    captions = [c for _, tokens in batches for c in byte_tokenizer.decode(tokens)]
    assert sorted(set(captions)) == ["good 0", "good 1", "good 2", "good 3"]
    assert loader.skips == Counter({"missing image file": 2, "unreadable image": 2, "empty caption": 1,
                                    "caption not UTF-8": 1})
    # a batch with a bad row is filled from the following rows: batch 0 = rows 0, 1 -> good 0, good 1
    assert byte_tokenizer.decode(batches[0][1]) == ["good 0", "good 1"]
    assert torch.equal(batches[0][0][0], TO_TENSOR(Image.open(tmp_path / "g0.png").convert("RGB")))


def test_skips_are_summed_over_workers(tmp_path, byte_tokenizer):
    for i in range(8):
        save_png(tmp_path / f"g{i}.png", i)
    rows = [f"g{i}.png,good {i}" if i % 3 else f"m{i}.png,lost {i}" for i in range(8)]
    path = write_rows(tmp_path / "d.csv", "filepath,title", rows)
    loader = make_loader(DataSpec("csv", [str(path)]), TO_TENSOR, byte_tokenizer, 2, workers=2, shuffle=False)
    assert len(list(loader)) == 4
    assert loader.skips == Counter({"missing image file": 3})  # rows 0, 3, 6, each in its own batch


def test_no_valid_row_is_an_up_front_error(tmp_path, byte_tokenizer):
    path = write_rows(tmp_path / "d.csv", "filepath,title", ["a.png,x", "b.png,y"])
    with pytest.raises(ValueError, match="no valid sample in 2 CSV row.*missing image file': 2"):
        validate(DataSpec("csv", [str(path)]))
    with pytest.raises(ValueError, match="larger than the dataset"):
        make_loader(DataSpec("csv", [str(path)]), TO_TENSOR, byte_tokenizer, 3)
