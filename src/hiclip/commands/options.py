"""Options of the commands whose library functions take plain arguments (parse, groups, induce-eval,
prepare, finetune-eval), as dataclasses turned into argparse options by :mod:`hiclip.cli_options`.

This module must stay light (no torch, PIL, open_clip, nltk): ``hiclip CMD --help`` and argparse
errors build these options before anything heavy is imported. The defaults repeat the library's
(``Readout()``, ``prepare``'s and ``evaluate_checkpoint``'s keyword defaults, PIL's pixel limit);
``tests/test_cli_options.py`` checks that they agree.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..config import option

DEVICE_HELP = "torch device: auto (cuda if available, else cpu), cpu, cuda or cuda:N"
PIL_MAX_PIXELS = 178_956_970  # PIL's Image.MAX_IMAGE_PIXELS, hiclip.data.images.DEFAULT_MAX_PIXELS
READOUT_METHODS = ("topdown", "tree_transformer", "aggregate")  # hiclip.induce.trees.METHODS


@dataclass(kw_only=True)
class ModelOptions:
    """The model to load for inference (``hiclip.factory.load_for_inference``) and its merge threshold."""

    model: str = option("HiCLIP-Tiny", "model name (see `hiclip models`), JSON config, or a checkpoint from "
                                       "`hiclip train` (a name or config alone has random weights)")
    pretrained: str | None = option(None, "local weights file (open_clip / OpenAI state dict)")
    device: str = option("auto", DEVICE_HELP)
    threshold: float = option(0.5, "merge threshold tau")


@dataclass(kw_only=True)
class ParseOptions(ModelOptions):
    """``hiclip parse``: captions -> induced trees (``hiclip.induce.run.caption_trees``)."""

    captions: tuple[str, ...] = field(metadata={"help": "one or more captions", "positional": True})
    png: str | None = option(None, "also draw the tree to this PNG/SVG file (numbered when several)")
    readout: str = option("topdown", "tree read-out (docs/design.md §2; thresholds: --threshold)",
                          choices=READOUT_METHODS)
    down: float = option(0.8, "tree_transformer: go down while the weakest link exceeds this")
    side: float = option(0.7, "tree_transformer: a part goes one layer lower when its weakest link exceeds this")
    min_layer: int = option(0, "tree_transformer: spans merged at this layer are flat")
    flat: float = option(0.0, "aggregate: spans whose largest summed distance is below this are flat")


@dataclass(kw_only=True)
class GroupsOptions(ModelOptions):
    """``hiclip groups``: images -> per-layer region overlays (``hiclip.induce.run.image_groups``)."""

    images: tuple[str, ...] = field(metadata={"help": "image files", "positional": True})
    out: str = option("groups_out", "output directory")
    max_pixels: int = option(PIL_MAX_PIXELS, "skip images larger than this many pixels",
                             default_help=f"{PIL_MAX_PIXELS}, PIL's limit")


@dataclass(kw_only=True)
class InduceEvalOptions(ModelOptions):
    """``hiclip induce-eval``: induced trees and groups scored against gold (``hiclip.induce.run.induce_eval``)."""

    n: int = option(500, "captions / images from the embedded world")
    split: str = option("test", "embedded-world split")
    seed: int = option(0, "world seed")
    gold_trees: str | None = option(None, "file of PTB-style bracketed trees, one per line, to score captions "
                                          "against")
    tune_split: str = option("val", "world split on which the tree read-out and the image-group layer/threshold "
                                    "are chosen, or 'none' for top-down at --threshold")
    tune_n: int | None = option(None, "samples of the tuning split", default_help="--n")
    checkpoints: str | None = option(None, "a run's checkpoint folder: score every step_N.pt / latest.pt and plot "
                                           "tree F1 and ARI against the training step")
    out: str | None = option(None, "write the JSON report here (with --checkpoints: the rows, and a PNG beside it)")


@dataclass(kw_only=True)
class PrepareOptions:
    """``hiclip prepare``: a CSV of local images -> resized WebDataset shards (``hiclip.data.prepare.prepare``)."""

    csv: tuple[str, ...] = field(metadata={"help": "CSV / TSV files with an image-path and a caption column",
                                           "positional": True})
    out: str = field(metadata={"help": "output folder for the shards"})
    size: int = option(256, "shorter side in pixels, never enlarged")
    csv_img_key: str = option("filepath", "CSV column of image paths")
    csv_caption_key: str = option("title", "CSV column of captions")
    csv_sep: str | None = option(None, "CSV separator", default_help="',' for .csv, tab for .tsv")
    image_root: str | None = option(None, "root for relative image paths (default: each CSV's folder)")
    max_pixels: int = option(PIL_MAX_PIXELS, "skip (and count) larger images",
                             default_help=f"{PIL_MAX_PIXELS}, PIL's limit")
    samples_per_shard: int = option(1000, "samples per shard")
    quality: int = option(90, "JPEG quality")
    workers: int = option(0, "decoding processes, 0: in this one")


@dataclass(kw_only=True)
class FinetuneEvalOptions:
    """``hiclip finetune-eval``: a fine-tuned checkpoint on a split (``hiclip.vl.evaluate_checkpoint``)."""

    checkpoint: str = field(metadata={"help": "a checkpoint written by `hiclip finetune`"})
    split: str = option("val", "val, test, holdout (world tasks) or train")
    task: str | None = option(None, "evaluate on this task spec instead of the checkpoint's (same classes)")
    samples: int | None = option(None, "the first N examples only (world tasks: the split's size)")
    batch_size: int = option(64, "examples per batch")
    workers: int = option(0, "data loader workers")
    device: str = option("auto", DEVICE_HELP)
    output_dir: str | None = option(None, "where the results JSON goes (default: the checkpoint's run directory)")
    predictions: bool = option(False, "also write per-example predictions (.jsonl)")
