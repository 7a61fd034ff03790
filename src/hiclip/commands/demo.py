"""``hiclip demo``: HiCLIP-Tiny against CLIP-Tiny, trained and judged end to end."""
from __future__ import annotations

import argparse
import sys

from ..cli_options import config_from_args
from ..demo import DemoConfig, run_demo
from .common import device


def run(args: argparse.Namespace) -> int:
    command = "hiclip " + " ".join(sys.argv[1:])
    run_demo(config_from_args(args, DemoConfig, commands=[command], device=device(args.device)))  # bad values: ValueError
    return 0
