"""``python -m hiclip.train ...`` / ``torchrun --nproc_per_node=N -m hiclip.train ...``."""
import sys

from hiclip.cli import main

sys.exit(main(["train", *sys.argv[1:]]))
