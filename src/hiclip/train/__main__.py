"""``python -m hiclip.train ...`` / ``torchrun --nproc_per_node=N -m hiclip.train ...``: the options of
``hiclip train`` (built from ``TrainConfig`` by ``hiclip.cli_options``), then :func:`hiclip.train.train`.

Errors the user can fix print one line and exit with status 2; a diverged loss exits with 3.
"""
from __future__ import annotations

import logging
import os
import sys

from hiclip.cli import parse_command
from hiclip.cli_options import config_from_args
from hiclip.train import TrainConfig, TrainingDiverged, format_summary, train

PROG = "python -m hiclip.train"


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_command("train", argv, PROG, "Contrastive pretraining (the options of `hiclip train`); run it "
                         "under torchrun for several processes.")
    try:
        summary = train(config_from_args(args, TrainConfig))
    except (ValueError, OSError, TrainingDiverged) as e:  # OSError: unwritable folder, full disk
        print(f"{PROG}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 3 if isinstance(e, TrainingDiverged) else 2
    except KeyboardInterrupt:  # a third Ctrl-C
        print(f"{PROG}: interrupted; the last complete checkpoint is kept", file=sys.stderr)
        return 130
    if os.environ.get("RANK", "0") == "0":
        print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
