"""`hiclip demo --data csv:...`: the demo's study on a user's captioned images: hash splits, both
models trained alike, the report's retrieval numbers recomputed from a checkpoint by hand."""
import csv
import json

import pytest
import torch
from PIL import Image, ImageDraw

from hiclip import factory
from hiclip.cli import main
from hiclip.demo import DemoConfig, DemoLayout, run_demo
from hiclip.eval.comparison import mean_sd

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 220), "yellow": (230, 210, 40),
           "black": (20, 20, 20)}
SHAPES = ("square", "circle", "triangle", "cross")
SIZES = {"small": 8, "medium": 14, "large": 22}


def make_set(folder):
    """60 images, one per (colour, shape, size), each with its own caption; paths relative to the CSV."""
    (folder / "img").mkdir(parents=True)
    rows = []
    for colour, rgb in COLOURS.items():
        for shape in SHAPES:
            for size, r in SIZES.items():
                im = Image.new("RGB", (64, 64), "white")
                d, box = ImageDraw.Draw(im), (32 - r, 32 - r, 32 + r, 32 + r)
                if shape == "square":
                    d.rectangle(box, fill=rgb)
                elif shape == "circle":
                    d.ellipse(box, fill=rgb)
                elif shape == "triangle":
                    d.polygon([(32, 32 - r), (32 - r, 32 + r), (32 + r, 32 + r)], fill=rgb)
                else:
                    d.rectangle((32 - r, 29, 32 + r, 35), fill=rgb), d.rectangle((29, 32 - r, 35, 32 + r), fill=rgb)
                name = f"img/{colour}-{shape}-{size}.png"
                im.save(folder / name)
                rows.append((name, f"a {size} {colour} {shape}"))
    with open(folder / "pairs.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filepath", "title"])
        w.writerows(rows)
    return folder / "pairs.csv", dict(rows)


def by_hand_r1(model, transform, tokenizer, test_csv):
    """Image→text and text→image R@1 over the test split (one caption per image), written out."""
    with open(test_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    images = torch.stack([transform(Image.open(r["filepath"]).convert("RGB")) for r in rows])
    with torch.no_grad():
        v = torch.nn.functional.normalize(model.encode_image(images), dim=-1)
        t = torch.nn.functional.normalize(model.encode_text(tokenizer([r["title"] for r in rows])), dim=-1)
    sim, own = v @ t.T, torch.arange(len(rows))
    return (sim.argmax(1) == own).double().mean().item(), (sim.argmax(0) == own).double().mean().item()


@pytest.mark.slow  # four tiny training runs and their evaluation
def test_demo_on_a_csv_set_splits_trains_and_reports_retrieval(tmp_path):
    pairs, captions = make_set(tmp_path / "set")
    out = tmp_path / "demo"
    cfg = DemoConfig(out=str(out), data=f"csv:{pairs}", steps=2, seeds=2, eval_samples=100, val_samples=16,
                     batch_size=8, workers=0, progress=False, commands=["pytest"])
    text = run_demo(cfg).read_text()
    layout = DemoLayout(out)
    splits = {}
    for s in ("train", "val", "test"):
        with open(layout.data / f"{s}.csv", newline="") as f:
            splits[s] = [r["filepath"] for r in csv.DictReader(f)]
    assert sorted(p for ps in splits.values() for p in ps) == sorted(str((tmp_path / "set" / k).resolve())
                                                                    for k in captions)  # each image once
    stored = json.loads((layout.data / "splits.json").read_text())
    assert stored["counts"] == {s: len(p) for s, p in splits.items()} and all(splits.values())
    # every score comes from the test split: recompute one run's R@1 from its checkpoint
    model, transform, tokenizer = factory.load_for_inference("HiCLIP-Tiny", layout.run("HiCLIP-Tiny", 0).latest)
    i2t, t2i = by_hand_r1(model.eval(), transform, tokenizer, layout.data / "test.csv")
    (record,) = json.loads(layout.eval_records("HiCLIP-Tiny", 0).read_text())
    assert record["task"] == "zeroshot_retrieval"
    assert record["metrics"]["text_retrieval_recall@1"] == pytest.approx(i2t)
    assert record["metrics"]["image_retrieval_recall@1"] == pytest.approx(t2i)
    seeds = [json.loads(layout.eval_records("HiCLIP-Tiny", s).read_text())[0]["metrics"]["text_retrieval_recall@1"]
             for s in (0, 1)]
    m, sd = mean_sd(seeds)
    assert f"| retrieval image→text R@1 | {m:.3f} ± {sd:.3f} |" in text
    assert f"# HiCLIP-Tiny vs CLIP-Tiny on `csv:{pairs}`" in text
    assert "no gold hierarchies here" in text and "caption trees" not in text and "compositional" not in text
    assert json.loads(layout.induce_report("HiCLIP-Tiny", 0).read_text()).keys() == {"no_gold"}
    # `hiclip report` on the folder: the same table and the data line
    assert main(["report", str(out), "--out", str(tmp_path / "page.md")]) == 0
    page = (tmp_path / "page.md").read_text()
    assert f"| retrieval image→text R@1 | {m:.3f} ± {sd:.3f} |" in page and "by a stable hash of each image" in page
    # the folder belongs to this data: another set is refused before any work
    with pytest.raises(ValueError, match="holds a demo on data .*use another --out"):
        run_demo(DemoConfig(out=str(out), steps=2, seeds=2, batch_size=8, workers=0, progress=False))


def test_demo_data_options_are_checked_up_front(tmp_path, capsys):
    with pytest.raises(ValueError, match="data must be world, csv:FILE"):
        DemoConfig(data="pairs.csv")
    with pytest.raises(ValueError, match="--classes .* goes with --data"):
        DemoConfig(classes="folder")
    with pytest.raises(ValueError, match="--vl .* needs --data world"):
        DemoConfig(data="csv:x.csv", vl=True)
    assert main(["demo", "--data", f"csv:{tmp_path}/none.csv", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "none.csv" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
