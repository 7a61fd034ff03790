"""The ``hiclip`` console command: a thin argparse layer over the library."""
from __future__ import annotations

import argparse
import logging
import sys

import torch

from . import factory


def _cmd_models(args: argparse.Namespace) -> int:
    for name in factory.list_models():
        cfg = factory.load_config(name)
        n = sum(p.numel() for p in factory.HiCLIP(cfg).parameters()) if args.params else None
        hier = "hierarchy" if cfg.has_hierarchy else "plain CLIP"
        size = f"{cfg.vision_cfg.image_size}px/{cfg.vision_cfg.patch_size}"
        print(f"{name:18s} {size:8s} {hier:11s}" + (f" {n / 1e6:7.1f}M params" if n else ""))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    model = factory.create_model(args.model).eval()
    tokens = factory.get_tokenizer(args.model)([args.caption])
    with torch.no_grad():
        _, hier = model.encode_text(tokens, return_hierarchy=True)
    tok = factory.get_tokenizer(args.model)
    pieces = [tok.decoder[int(t)] for t in tokens[0, 1:1 + int(hier.lengths[0])]]
    print(f"{args.model} (untrained) link affinities a^l between consecutive word pieces:")
    print("layer " + " ".join(f"{p[:9]:>9s}" for p in pieces))
    for layer, row in zip(hier.layers, hier.links[0]):
        print(f"{layer:5d}     " + " ".join(f"{v:9.3f}" for v in row[: len(pieces) - 1].tolist()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hiclip", description="HiCLIP: CLIP with hierarchy-aware attention.")
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("models", help="list the built-in model configs")
    m.add_argument("--params", action="store_true", help="also count parameters (builds each model)")
    m.set_defaults(func=_cmd_models)
    d = sub.add_parser("demo", help="run the main demo")
    d.add_argument("--model", default="HiCLIP-Tiny", help="model name (default: %(default)s)")
    d.add_argument("--caption", default="a large red circle to the left of a small blue square")
    d.add_argument("--out", default="demo_out", help="output directory")
    d.set_defaults(func=_cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"hiclip {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
