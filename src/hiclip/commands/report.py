"""``hiclip report``: one results page (docs/results.md) from demo and study folders."""
from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from ..demo.results import write_results
    readme = ["--readme", args.readme] if args.readme else []
    command = " ".join(["hiclip report", *args.dirs, "--out", args.out, *readme])
    print(f"wrote {write_results(args.dirs, args.out, args.readme, command)}")
    return 0
