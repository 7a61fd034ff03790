"""experiments/emoji_set.py on a tiny package folder laid out like emoji-datasource's: captions,
per-vendor skips, images on white, the vendor split and the stable-hash validation share."""
import csv
import importlib.util
import json
import sys
from pathlib import Path

import pytest
from PIL import Image

from hiclip.data.csvdata import read_csv
from hiclip.data.splits import split_of

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "emoji_set.py"


@pytest.fixture(scope="module")
def emoji():
    spec = importlib.util.spec_from_file_location("emoji_set", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["emoji_set"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _record(unified, name, sub, *, apple=True, google=True, order=0, short="x", **extra):
    return {"name": name, "unified": unified, "image": f"{unified.lower()}.png", "short_name": short,
            "category": "Smileys & Emotion", "subcategory": sub, "sort_order": order,
            "has_img_apple": apple, "has_img_google": google} | extra


def _package(root: Path, vendor: str, records: list[dict], colour: tuple[int, int, int], missing=()) -> None:
    folder = root / "node_modules" / f"emoji-datasource-{vendor}"
    (folder / "img" / vendor / "64").mkdir(parents=True)
    (folder / "emoji.json").write_text(json.dumps(records))
    (folder / "package.json").write_text(json.dumps({"version": "0.0.1"}))
    for r in records:
        for item in [r, *r.get("skin_variations", {}).values()]:
            if item[f"has_img_{vendor}"] and item["unified"] not in missing:
                image = Image.new("RGBA", (4, 4), (0, 0, 0, 0))  # transparent, one opaque pixel
                image.putpixel((1, 1), colour + (255,))
                image.save(folder / "img" / vendor / "64" / item["image"])


def _rows(path):
    with open(path, newline="") as f:
        return [(r["filepath"], r["title"]) for r in csv.DictReader(f)]


def test_builds_vendor_split_with_captions_and_counted_skips(emoji, tmp_path):
    tone = {"1F3FD": {"unified": "1F44B-1F3FD", "image": "1f44b-1f3fd.png", "has_img_apple": True,
                      "has_img_google": True}}
    records = [_record("1F600", "GRINNING FACE", "face-smiling", order=2),
               _record("1F44B", "WAVING HAND", "hand-fingers-open", order=1, skin_variations=tone),
               _record("1F98A", "FOX FACE", "animal-mammal", order=3, apple=False),
               _record("1F935", "MAN IN TUXEDO", "person-role", order=4, short="man_in_tuxedo"),
               _record("1F935-200D-2642-FE0F", "MAN IN TUXEDO", "person-role", order=5, short="man in tuxedo 2"),
               _record("1F47B", "GHOST", "face-costume", order=6)]
    records += [_record(f"E{i:03X}", f"Flag {i}", "country-flag", order=10 + i) for i in range(40)]
    _package(tmp_path / "npm", "google", records, (255, 0, 0))
    _package(tmp_path / "npm", "apple", records, (0, 0, 255), missing={"1F47B"})
    out = tmp_path / "set"
    assert emoji.main(["--npm-dir", str(tmp_path / "npm"), "--out", str(out), "--skin-tones"]) == 0
    counts = json.loads((out / "counts.json").read_text())
    assert counts["entries"] == 47
    assert counts["google"] == {"kept": 47, "skipped": {}}
    assert counts["apple"] == {"kept": 45, "skipped": {"no image for this vendor": 1, "image file missing": 1}}
    google = _rows(out / "google.csv")
    assert google[:3] == [("google/1f44b.png", "waving hand, a hand fingers open emoji"),
                          ("google/1f44b-1f3fd.png", "waving hand, medium skin tone, a hand fingers open emoji"),
                          ("google/1f600.png", "grinning face, a face smiling emoji")]
    assert ("google/1f98a.png", "fox face, an animal mammal emoji") in google
    assert [c for _, c in google if "tuxedo" in c] == ["man in tuxedo (man in tuxedo), a person role emoji",
                                                        "man in tuxedo (man in tuxedo 2), a person role emoji"]
    # images: RGB, transparent parts white, the vendor's own drawing
    red = Image.open(out / "google" / "1f600.png")
    assert red.mode == "RGB" and red.getpixel((0, 0)) == (255, 255, 255) and red.getpixel((1, 1)) == (255, 0, 0)
    assert Image.open(out / "apple" / "1f600.png").getpixel((1, 1)) == (0, 0, 255)
    # splits: train + val = google, disjoint by hash of the code points; test = apple
    keys = {f"google/{r['unified'].lower()}.png": r["unified"] for r in records}
    keys |= {"google/1f44b-1f3fd.png": "1F44B-1F3FD"}
    train, val, test = (_rows(out / f"{s}.csv") for s in ("train", "val", "test"))
    assert sorted(train + val) == sorted(google) and not set(train) & set(val)
    assert all(split_of(keys[p], (0.9, 0.1, 0.0)) == "val" for p, _ in val) and val
    assert all(split_of(keys[p], (0.9, 0.1, 0.0)) == "train" for p, _ in train)
    assert test == _rows(out / "apple.csv") and all(p.startswith("apple/") for p, _ in test)
    assert {c for _, c in _rows(out / "test_unseen.csv")} == {c for _, c in val} - {"ghost, a face costume emoji"}
    # the project's CSV reader resolves the relative paths to the written files
    table = read_csv([out / "train.csv"])
    assert table.load(0)[0].size == (4, 4) and table.paths[0] == str(out / train[0][0])


def test_missing_package_is_one_line_and_status_2(emoji, tmp_path, capsys):
    assert emoji.main(["--npm-dir", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no emoji-datasource-google package" in err
