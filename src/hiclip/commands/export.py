"""``hiclip export``: a checkpoint's weights as a .safetensors file, or a ``local-dir:`` model folder."""
from __future__ import annotations

import argparse

from ..checkpoint import export_safetensors, read_info


def run(args: argparse.Namespace) -> int:
    given = [a for a in (args.source, args.checkpoint) if a]
    if len(given) != 1:
        raise ValueError("expected the checkpoint once: as the argument or as --checkpoint")
    src = given[0]
    if args.dir:
        from ..export import export_dir
        out = export_dir(src, args.dir)
        print(f"wrote {out}/ (config.json, model.safetensors, README.md); load it with --model local-dir:{out}")
        return 0
    out = export_safetensors(src, args.out)
    info = read_info(out)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB, model {info.get('model', 'unnamed')}, "
          f"step {info.get('step', '-')}); load it with --model {out} or pretrained={out}")
    return 0
