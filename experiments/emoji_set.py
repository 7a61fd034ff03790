"""A real, offline clip-art image–caption set from the npm packages of emoji-datasource.

The same emoji names drawn by two vendors: train on one vendor's drawings (Google), test on the
other's (Apple) -- the same captions, different pictures. The packages are MIT-licensed
(images: Google's Noto Emoji under Apache-2.0 / OFL, Apple's under Apple's terms; see each
package's README) and are fetched with npm, never at run time:

    npm install --prefix /work/emoji_npm emoji-datasource-google@16.0.0 emoji-datasource-apple@16.0.0
    python experiments/emoji_set.py --npm-dir /work/emoji_npm --out /work/emoji_data

What it writes under ``--out``:

- ``google/<image>.png``, ``apple/<image>.png``: each vendor's 64 px image, composited on white
  and saved as RGB (read by :func:`hiclip.data.images.load_image`, the project's one image loader);
- ``google.csv``, ``apple.csv``: every entry the vendor draws (open_clip's columns ``filepath``,
  ``title``; paths relative to the CSV's folder, as ``hiclip train --data csv:`` reads them);
- ``train.csv`` / ``val.csv``: Google's entries, ``val`` the 10 % whose ``unified`` code point
  sequence hashes into it (:func:`hiclip.data.splits.split_of` with fractions 0.9 / 0.1 / 0);
- ``test.csv``: every Apple entry; ``test_unseen.csv``: the Apple entries of ``val``'s code points
  (captions never trained on);
- ``counts.json``: entries and skips per vendor and split.

Captions are deterministic, from the Unicode name and the subcategory, e.g. "grinning face, a face
smiling emoji"; when two entries share a name the short name is added in brackets. Entries that
a vendor has no image for (``has_img_<vendor>`` false, or the file absent) are skipped for that
vendor and counted. ``--skin-tones`` adds each skin-tone variant ("waving hand, medium skin tone,
a hand fingers open emoji").

Counts with emoji-datasource 16.0.0 (the commands above, no --skin-tones; also in counts.json):
1911 entries in emoji.json; google draws 1911 (0 skipped), apple 1908 (3 skipped: no image for
this vendor); train 1710, val 201, test 1908, test_unseen 201.

``python experiments/emoji_set.py --help`` lists the options. Then, for instance:

    hiclip demo --data csv:/work/emoji_data --out emoji_demo
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from hiclip.data.csvdata import CAPTION_KEY, IMAGE_KEY
from hiclip.data.images import load_image
from hiclip.data.skips import Skip
from hiclip.data.splits import split_of

VENDORS = ("google", "apple")
SKIN_TONES = {"1F3FB": "light", "1F3FC": "medium-light", "1F3FD": "medium", "1F3FE": "medium-dark",
              "1F3FF": "dark"}
NO_FLAG, NO_FILE, BAD_FILE = "no image for this vendor", "image file missing", "image file unreadable"


@dataclass(frozen=True)
class Entry:
    """One emoji (or one skin-tone variant): its code points, image file name, per-vendor flags, caption."""
    key: str
    image: str
    vendors: frozenset[str]
    caption: str


def _tones(code: str) -> str:
    """"1F3FB-1F3FD" -> "light and medium skin tones"; one tone -> "light skin tone"."""
    names = [SKIN_TONES.get(c, c.lower()) for c in code.split("-")]
    return f"{' and '.join(dict.fromkeys(names))} skin tone{'s' if len(set(names)) > 1 else ''}"


def _vendors(record: dict) -> frozenset[str]:
    return frozenset(v for v in VENDORS if record.get(f"has_img_{v}"))


def read_entries(emoji_json: Path, skin_tones: bool = False) -> list[Entry]:
    """The entries of an emoji-datasource ``emoji.json``, in ``sort_order``."""
    records = sorted(json.loads(emoji_json.read_text(encoding="utf-8")), key=lambda r: r.get("sort_order", 0))
    names = Counter((r.get("name") or r["short_name"]).lower() for r in records)
    out = []
    for r in records:
        name = (r.get("name") or r["short_name"]).lower()
        if names[name] > 1:
            name = f"{name} ({r['short_name'].replace('_', ' ')})"
        sub = r["subcategory"].replace("-", " ")
        kind = f"{'an' if sub[:1] in 'aeiou' else 'a'} {sub} emoji"
        out.append(Entry(r["unified"], r["image"], _vendors(r), f"{name}, {kind}"))
        if skin_tones:
            for code, variant in sorted((r.get("skin_variations") or {}).items()):
                out.append(Entry(variant["unified"], variant["image"], _vendors(variant),
                                 f"{name}, {_tones(code)}, {kind}"))
    return out


def package_dir(npm_dir: Path, vendor: str) -> Path:
    """The installed package folder: ``npm_dir/node_modules/emoji-datasource-<vendor>`` (or
    ``npm_dir/emoji-datasource-<vendor>``)."""
    for base in (npm_dir / "node_modules", npm_dir):
        folder = base / f"emoji-datasource-{vendor}"
        if (folder / "emoji.json").is_file():
            return folder
    raise FileNotFoundError(f"no emoji-datasource-{vendor} package (with emoji.json) under {npm_dir}; install it "
                            f"with: npm install --prefix {npm_dir} emoji-datasource-{vendor}")


def build_vendor(folder: Path, vendor: str, out: Path, skin_tones: bool) -> tuple[list[tuple[str, str, str]], Counter]:
    """Convert the vendor's images into ``out/<vendor>/``; -> ([(key, relative path, caption)], skips)."""
    (out / vendor).mkdir(parents=True, exist_ok=True)
    rows, skips = [], Counter()
    for entry in read_entries(folder / "emoji.json", skin_tones):
        source = folder / "img" / vendor / "64" / entry.image
        if vendor not in entry.vendors:
            skips[NO_FLAG] += 1
            continue
        if not source.is_file():
            skips[NO_FILE] += 1
            continue
        try:
            image = load_image(source)
        except Skip:
            skips[BAD_FILE] += 1
            continue
        relative = f"{vendor}/{Path(entry.image).stem}.png"
        image.save(out / relative)
        rows.append((entry.key, relative, entry.caption))
    return rows, skips


def write_csv(path: Path, rows: list[tuple[str, str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([IMAGE_KEY, CAPTION_KEY])
        writer.writerows((p, c) for _, p, c in rows)


def build(npm_dir: Path, out: Path, train_vendor: str = "google", test_vendor: str = "apple",
          val_fraction: float = 0.1, skin_tones: bool = False) -> dict:
    """Write the dataset (module docstring) and return the counts (also in ``counts.json``)."""
    if train_vendor == test_vendor:
        raise ValueError(f"train and test vendors must differ, got {train_vendor} twice")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val fraction must be in (0, 1), got {val_fraction}")
    folders = {v: package_dir(npm_dir, v) for v in (train_vendor, test_vendor)}
    out.mkdir(parents=True, exist_ok=True)
    counts: dict = {"entries": len(read_entries(folders[train_vendor] / "emoji.json", skin_tones))}
    rows = {}
    for vendor, folder in folders.items():
        rows[vendor], skips = build_vendor(folder, vendor, out, skin_tones)
        write_csv(out / f"{vendor}.csv", rows[vendor])
        counts[vendor] = {"kept": len(rows[vendor]), "skipped": dict(skips)}
    fractions = (1 - val_fraction, val_fraction, 0.0)
    val_keys = {k for k, _, _ in rows[train_vendor] if split_of(k, fractions) == "val"}
    splits = {"train": [r for r in rows[train_vendor] if r[0] not in val_keys],
              "val": [r for r in rows[train_vendor] if r[0] in val_keys],
              "test": rows[test_vendor],
              "test_unseen": [r for r in rows[test_vendor] if r[0] in val_keys]}
    for name, part in splits.items():
        write_csv(out / f"{name}.csv", part)
    counts["splits"] = {name: len(part) for name, part in splits.items()}
    counts["config"] = {"train_vendor": train_vendor, "test_vendor": test_vendor, "val_fraction": val_fraction,
                        "skin_tones": skin_tones,
                        "versions": {v: json.loads((f / "package.json").read_text()).get("version")
                                     for v, f in folders.items() if (f / "package.json").is_file()}}
    (out / "counts.json").write_text(json.dumps(counts, indent=2))
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="Writes the images, CSVs and counts.json described in the module docstring.")
    p.add_argument("--npm-dir", type=Path, required=True, help="the --prefix folder of `npm install`")
    p.add_argument("--out", type=Path, required=True, help="dataset folder to write (keep it out of git)")
    p.add_argument("--train-vendor", default="google", choices=VENDORS, help="vendor of train.csv and val.csv")
    p.add_argument("--test-vendor", default="apple", choices=VENDORS, help="vendor of test.csv")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of the train vendor's entries held out")
    p.add_argument("--skin-tones", action="store_true", help="add every skin-tone variant as its own entry")
    args = p.parse_args(argv)
    try:
        counts = build(args.npm_dir, args.out, args.train_vendor, args.test_vendor, args.val_fraction,
                       args.skin_tones)
    except KeyError as err:
        print(f"emoji_set: an emoji.json entry has no field {err}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as err:  # json.JSONDecodeError is a ValueError
        print(f"emoji_set: {err}", file=sys.stderr)
        return 2
    print(json.dumps(counts, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
