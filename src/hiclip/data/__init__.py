"""Data: the embedded world (``hiclip.data.world``) and its writers (``hiclip.data.export``)."""

from hiclip.data.world import (
    COLOURS, HELDOUT_COMBOS, SHAPES, SIZES, Sample, ShapesWorld, WorldObject,
    classification_task, hard_negatives)

__all__ = ["COLOURS", "HELDOUT_COMBOS", "SHAPES", "SIZES", "Sample", "ShapesWorld",
           "WorldObject", "classification_task", "hard_negatives"]
