"""``hiclip parse``, ``hiclip groups``, ``hiclip induce-eval``: induced hierarchies of a model."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import factory
from ..cli_options import config_from_args
from ..data.images import ImagePolicy, load_image
from ..data.skips import Skip
from ..induce.curve import checkpoint_curve, format_curve, plot_curve
from ..induce.draw import draw_groups, draw_tree, groups_gif
from ..induce.run import caption_trees, format_report, image_groups, induce_eval
from ..induce.trees import Readout
from .common import device, load_model
from .options import GroupsOptions, InduceEvalOptions, ParseOptions


def parse(args: argparse.Namespace) -> int:
    o = config_from_args(args, ParseOptions)
    model, _, tokenizer = load_model("parse", o)
    readout = Readout(o.readout, o.threshold, o.down, o.side, o.min_layer, o.flat)
    trees, _ = caption_trees(model, tokenizer, list(o.captions), readout=readout)
    for i, tree in enumerate(trees):
        print(tree)
        if o.png:
            path = Path(o.png)
            path = path if len(trees) == 1 else path.with_name(f"{path.stem}-{i}{path.suffix}")
            draw_tree(tree, path)
            print(f"  picture: {path}")
    return 0


def _read_images(paths: tuple[str, ...], policy: ImagePolicy) -> tuple[list[str], list]:
    """(paths, RGB images) of the readable ones; each unreadable one is named on stderr and left out."""
    kept, images = [], []
    for path in paths:
        try:
            images.append(load_image(path, policy))
            kept.append(path)
        except Skip as s:
            print(f"hiclip groups: skipping {path}: {s.reason}", file=sys.stderr)
    if not images:
        raise ValueError(f"cannot read image(s) {', '.join(paths)} (see above)")
    if len(kept) < len(paths):
        print(f"{len(paths) - len(kept)} of {len(paths)} image(s) skipped", file=sys.stderr)
    return kept, images


def groups(args: argparse.Namespace) -> int:
    o = config_from_args(args, GroupsOptions)
    model, transform, _ = load_model("groups", o)
    out = Path(o.out)
    out.mkdir(parents=True, exist_ok=True)
    paths, images = _read_images(o.images, ImagePolicy(o.max_pixels, min_side=model.cfg.vision_cfg.image_size))
    labels, _ = image_groups(model, transform, images, o.threshold)
    for path, image, lab in zip(paths, images, labels):
        view = factory.unnormalise(transform(image))  # the crop the model saw
        stem = Path(path).stem
        draw_groups(view, lab, out / f"{stem}-groups.png")
        groups_gif(view, lab, out / f"{stem}-groups.gif")
        counts = " ".join(str(len(set(layer.ravel().tolist()))) for layer in lab)
        print(f"{path}: regions per layer {counts} -> {out / (stem + '-groups.png')}, {stem}-groups.gif")
    return 0


def induce_eval_command(args: argparse.Namespace) -> int:
    o = config_from_args(args, InduceEvalOptions)
    if o.checkpoints:
        rows = checkpoint_curve(o.checkpoints, n=o.n, tune_n=o.tune_n, device=device(o.device))
        print(format_curve(rows))
        png = plot_curve(rows, Path(o.out).with_suffix(".png") if o.out else Path(o.checkpoints) / "curve.png")
        print(f"plot: {png}")
        if o.out:
            Path(o.out).write_text(json.dumps(rows, indent=2))
            print(f"wrote {o.out}")
        return 0
    model, transform, tokenizer = load_model("induce-eval", o)
    report = induce_eval(model, transform, tokenizer, n=o.n, threshold=o.threshold, seed=o.seed, split=o.split,
                         gold_trees=o.gold_trees, tune_split=None if o.tune_split == "none" else o.tune_split,
                         tune_n=o.tune_n)
    report["model"], report["pretrained"] = o.model, o.pretrained
    print(format_report(report))
    if o.out:
        Path(o.out).parent.mkdir(parents=True, exist_ok=True)
        Path(o.out).write_text(json.dumps(report, indent=2))
        print(f"wrote {o.out}")
    return 0
