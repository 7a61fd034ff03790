"""Data: the embedded world (``world``), its writers (``export``), and training loaders over the
world, WebDataset shards and CSV/TSV files (``loader``, ``wds``, ``csvdata``, ``skips``)."""

from hiclip.data.loader import DataSpec, Loader, make_loader, validate
from hiclip.data.skips import REASONS
from hiclip.data.world import (
    COLOURS, HELDOUT_COMBOS, SHAPES, SIZES, Sample, ShapesWorld, WorldObject,
    classification_task, hard_negatives)

__all__ = ["COLOURS", "HELDOUT_COMBOS", "SHAPES", "SIZES", "Sample", "ShapesWorld",
           "WorldObject", "classification_task", "hard_negatives",
           "DataSpec", "Loader", "make_loader", "validate", "REASONS"]
