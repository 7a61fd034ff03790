"""``hiclip train``: contrastive pretraining (``python -m hiclip.train`` takes the same options)."""
from __future__ import annotations

import argparse
import os

from ..cli_options import config_from_args
from ..train import TrainConfig, format_summary, train


def run(args: argparse.Namespace) -> int:
    summary = train(config_from_args(args, TrainConfig))
    if os.environ.get("RANK", "0") == "0":
        print(format_summary(summary))
    return 0
