"""Real-world images in every command: a decompression bomb is skipped and counted by `hiclip eval`,
the training CSV loader and `hiclip groups`."""
from __future__ import annotations

from collections import Counter

import torch
from torch.utils.data import DataLoader
from torchvision import transforms

from hiclip.cli import main
from hiclip.data.loader import DataSpec, make_loader
from hiclip.eval import zeroshot
from hiclip.eval.datasets import SkipBadImages, collate_skip_none, image_folder


def test_every_command_skips_and_counts_a_bomb(tmp_path, colour_model, save_solid, huge_png, capsys):
    # eval: an image folder with a 600-megapixel PNG
    for name, rgb in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        save_solid(tmp_path / "folder" / name / "0.png", rgb)
    huge_png(tmp_path / "folder" / "red" / "bomb.png")
    dataset = image_folder(tmp_path / "folder", transforms.ToTensor())
    loader = DataLoader(SkipBadImages(dataset), batch_size=2, collate_fn=collate_skip_none)
    m = zeroshot.evaluate(colour_model, loader, colour_model.tokenize, dataset.classes, ["a {c} thing"], "cpu")
    assert m["skipped"] == 1 and m["acc1"] == 1.0
    # training: a CSV naming it
    save_solid(tmp_path / "ok.png", (1, 2, 3))
    (tmp_path / "pairs.csv").write_text(f"filepath,title\n{tmp_path / 'ok.png'},fine\n"
                                        f"{tmp_path / 'folder' / 'red' / 'bomb.png'},bomb\n")
    spec = DataSpec("csv", [str(tmp_path / "pairs.csv")], image_size=16)
    batches = make_loader(spec, transforms.Compose([transforms.Resize((8, 8)), transforms.ToTensor()]),
                          lambda caps: torch.zeros(len(caps), 4, dtype=torch.long), 2, workers=0, shuffle=False)
    assert [images.shape[0] for images, _ in batches] == [1] and batches.skips == Counter({"image too large": 1})
    # groups: the bomb is named and skipped, the good image drawn
    assert main(["groups", str(tmp_path / "folder" / "red" / "bomb.png"), str(tmp_path / "ok.png"),
                 "--out", str(tmp_path / "g")]) == 0
    captured = capsys.readouterr()
    assert "skipping" in captured.err and "image too large" in captured.err and "Traceback" not in captured.err
    assert (tmp_path / "g" / "ok-groups.png").is_file() and not (tmp_path / "g" / "bomb-groups.png").exists()
