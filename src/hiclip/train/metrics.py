"""Per-step metrics to ``metrics.csv`` / ``val.csv`` and TensorBoard (rank 0 only); the run summary as text."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

TRAIN_FIELDS = ("step", "epoch", "loss", "lr", "logit_scale", "grad_norm", "samples_per_s", "elapsed_s")
VAL_FIELDS = ("step", "epoch", "val_loss", "i2t_r1", "t2i_r1", "samples")


def _open_csv(path: Path, fields: tuple[str, ...], keep_until: int):
    """Open ``path`` for appending rows; rows of steps after ``keep_until`` are dropped first
    (a resumed run rewrites the steps it repeats). Returns (file, DictWriter)."""
    kept: list[dict[str, str]] = []
    if keep_until > 0 and path.is_file():
        with path.open(newline="") as f:
            kept = [row for row in csv.DictReader(f) if row.get("step", "").isdigit()
                    and int(row["step"]) <= keep_until]
    f = path.open("w", newline="")
    writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(kept)
    f.flush()
    return f, writer


def read_csv(path: str | Path) -> list[dict[str, float]]:
    """Rows of a metrics / val CSV as floats."""
    with Path(path).open(newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


class MetricsWriter:
    """Writes ``OUT/metrics.csv``, ``OUT/val.csv`` and (optionally) ``OUT/tensorboard/``.

    ``keep_until``: the step the run starts from (0 for a fresh run); earlier rows are kept.
    ``terms``: the objective's loss terms, extra columns after the total loss (and in TensorBoard);
    ``train_fields`` / ``val_fields``: the CSV columns (other runs than pretraining log other values).
    """

    def __init__(self, out_dir: Path, keep_until: int = 0, tensorboard: bool = True, terms: tuple[str, ...] = (),
                 train_fields: tuple[str, ...] = TRAIN_FIELDS, val_fields: tuple[str, ...] = VAL_FIELDS):
        out_dir.mkdir(parents=True, exist_ok=True)
        fields = train_fields[:3] + tuple(terms) + train_fields[3:]  # loss terms after the total loss
        self._train = _open_csv(out_dir / "metrics.csv", fields, keep_until)
        self._val = _open_csv(out_dir / "val.csv", val_fields, keep_until)
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # slow import; only when asked for
            self._tb = SummaryWriter(str(out_dir / "tensorboard"), purge_step=keep_until + 1 if keep_until else None)

    def _write(self, target, prefix: str, row: dict[str, float]) -> None:
        f, writer = target
        writer.writerow(row)
        f.flush()
        if self._tb is not None:
            for key, value in row.items():
                if key not in ("step", "epoch"):
                    self._tb.add_scalar(f"{prefix}/{key}", value, int(row["step"]))

    def train(self, row: dict[str, float]) -> None:
        """One optimizer step: keys of ``train_fields`` and the loss terms."""
        self._write(self._train, "train", row)

    def val(self, row: dict[str, float]) -> None:
        """One validation: keys of ``val_fields``."""
        self._write(self._val, "val", row)

    def close(self) -> None:
        self._train[0].close()
        self._val[0].close()
        if self._tb is not None:
            self._tb.close()


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
