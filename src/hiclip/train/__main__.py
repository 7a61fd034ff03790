"""``python -m hiclip.train ...`` / ``torchrun --nproc_per_node=N -m hiclip.train ...``: the options of
``hiclip train`` (built from ``TrainConfig`` by ``hiclip.cli_options``), then :func:`hiclip.train.train`.

Errors the user can fix print one line and exit with status 2; a diverged loss exits with 3.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

from hiclip.cli_options import add_options, config_from_args
from hiclip.train import TrainConfig, TrainingDiverged, format_summary, train


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m hiclip.train", description="Contrastive pretraining "
                                     "(the options of `hiclip train`); run it under torchrun for several processes.")
    add_options(parser, TrainConfig)
    args = parser.parse_args(argv)
    try:
        summary = train(config_from_args(args, TrainConfig))
    except (ValueError, OSError, TrainingDiverged) as e:  # OSError: unwritable folder, full disk
        print(f"{parser.prog}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 3 if isinstance(e, TrainingDiverged) else 2
    except KeyboardInterrupt:  # a third Ctrl-C
        print(f"{parser.prog}: interrupted; the last complete checkpoint is kept", file=sys.stderr)
        return 130
    if os.environ.get("RANK", "0") == "0":
        print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
