"""``hiclip export``: a checkpoint's weights as a .safetensors file."""
from __future__ import annotations

import argparse

from ..checkpoint import export_safetensors, read_info


def run(args: argparse.Namespace) -> int:
    out = export_safetensors(args.checkpoint, args.out)
    info = read_info(out)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB, model {info.get('model', 'unnamed')}, "
          f"step {info.get('step', '-')}); load it with --model {out} or pretrained={out}")
    return 0
