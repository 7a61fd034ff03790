"""``hiclip models``: the built-in model configs, one line each."""
from __future__ import annotations

import argparse

from .. import factory


def run(args: argparse.Namespace) -> int:
    for name in factory.list_models():
        cfg = factory.load_config(name)
        n = sum(p.numel() for p in factory.HiCLIP(cfg).parameters()) if args.params else None
        hier = "hierarchy" if cfg.has_hierarchy else "plain CLIP"
        size = f"{cfg.vision_cfg.image_size}px/{cfg.vision_cfg.patch_size}"
        print(f"{name:18s} {size:8s} {hier:11s} {cfg.objective:7s}" + (f" {n / 1e6:7.1f}M params" if n else ""))
    return 0
