"""argparse wiring of ``hiclip train``, built from ``TrainConfig``'s fields and help texts."""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import types
import typing
from typing import Any

from .config import TrainConfig
from .loop import TrainingDiverged, train


def _base_type(hint: Any) -> type:
    """``int | None`` -> int; ``str`` -> str."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return inner
    return hint


def add_train_arguments(parser: argparse.ArgumentParser, config: type = TrainConfig) -> None:
    """One ``--option`` per field of ``config`` (a TrainConfig-like dataclass: fields without a
    default are required); bools are flags (``--no-X`` for those on by default)."""
    hints = typing.get_type_hints(config)
    for f in dataclasses.fields(config):
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata["help"]
        kind = _base_type(hints[f.name])
        if f.default is dataclasses.MISSING:
            parser.add_argument(flag, dest=f.name, type=kind, required=True, help=help_text)
        elif kind is bool:
            action = argparse.BooleanOptionalAction if f.default else "store_true"
            parser.add_argument(flag, dest=f.name, action=action, default=f.default, help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, type=kind, default=f.default, choices=f.metadata.get("choices"),
                                help=f"{help_text} (default: %(default)s)")


def config_from_args(args: argparse.Namespace, config: type = TrainConfig) -> Any:
    """The ``config`` (TrainConfig) of parsed arguments (other attributes of ``args`` are ignored)."""
    return config(**{f.name: getattr(args, f.name) for f in dataclasses.fields(config)})


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable lines of ``train()``'s summary."""
    how = "completed" if summary["stopped"] == "completed" else f"stopped ({summary['stopped']})"
    lines = [f"training {how}: step {summary['steps']}/{summary['total_steps']} "
             f"(started at {summary['start_step']}), {summary['time_s']:.1f} s, {summary['pairs_per_s']:.1f} pairs/s",
             f"final train loss: {summary['final_loss']:.4f}"]
    val = summary["final_val"]
    if val:
        lines.append(f"val loss at step {int(val['step'])}: {val['val_loss']:.4f}, R@1 image->text "
                     f"{val['i2t_r1']:.3f}, text->image {val['t2i_r1']:.3f} ({int(val['samples'])} pairs)")
    skipped = summary["skipped"]
    lines.append("skipped samples: " + (", ".join(f"{r}: {n}" for r, n in sorted(skipped.items())) or "none"))
    lines.append(f"checkpoint: {summary['checkpoint']}; metrics: {summary['output_dir']}/metrics.csv")
    return "\n".join(lines)


def run_from_args(args: argparse.Namespace) -> int:
    """Train with the parsed options; print the summary (rank 0). 0 on success, 3 when the loss diverged."""
    try:
        summary = train(config_from_args(args))
    except TrainingDiverged as e:
        print(f"hiclip train: error: {e}", file=sys.stderr)
        return 3
    if os.environ.get("RANK", "0") == "0":
        print(format_summary(summary))
    return 0
