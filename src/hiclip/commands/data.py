"""``hiclip prepare``: a CSV of local images -> resized WebDataset shards."""
from __future__ import annotations

import argparse

from ..cli_options import config_from_args
from ..data.prepare import prepare
from .options import PrepareOptions


def run(args: argparse.Namespace) -> int:
    o = config_from_args(args, PrepareOptions)
    summary = prepare(o.csv, o.out, img_key=o.csv_img_key, caption_key=o.csv_caption_key, sep=o.csv_sep,
                      image_root=o.image_root, size=o.size, max_pixels=o.max_pixels,
                      samples_per_shard=o.samples_per_shard, quality=o.quality, workers=o.workers)
    skipped = ", ".join(f"{k}: {v}" for k, v in sorted(summary["skipped"].items())) or "none"
    print(f"wrote {summary['samples']} samples in {len(summary['shards'])} shard(s) to {o.out} "
          f"(skipped: {skipped})\ntrain on them with: hiclip train --data \"wds:{summary['pattern']}\" ...")
    return 0
