"""``hiclip eval``: evaluate a model (result JSONs), or compare result files / folders."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..cli_options import config_from_args
from ..eval.results import benchmark_table, compare, markdown_table, read_results
from ..eval.run import SUITES, EvalSettings, run_benchmark, run_eval
from .common import device, warn_if_random


def run(args: argparse.Namespace) -> int:
    if args.compare:
        if any(Path(p).is_dir() for p in args.compare):  # one folder of results per model
            print(markdown_table(*benchmark_table(read_results(args.compare), SUITES["paper"])))
        else:
            print(compare(args.compare))
        return 0
    feature_cache = args.feature_cache or str(Path(args.output_dir) / "features")
    settings = config_from_args(args, EvalSettings, feature_cache=feature_cache, device=device(args.device))
    warn_if_random("eval", args.model, args.pretrained)
    if args.benchmark:
        run_benchmark(args.model, args.pretrained, args.benchmark, output_dir=args.output_dir, settings=settings)
    else:
        run_eval(args.model, args.pretrained, tasks=args.tasks, datasets=args.datasets, output_dir=args.output_dir,
                 settings=settings)
    return 0
