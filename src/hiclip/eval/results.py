"""Result files (CLIP_benchmark's format) and tables.

One JSON per model x dataset x task: ``{"dataset", "model", "pretrained", "task", "language",
"metrics": {name: number}, "skipped", "skipped_captions"}``, what ``clip_benchmark eval`` writes and
``clip_benchmark build`` reads: ``pretrained`` is always a string (the weights file, or
:data:`RANDOM` for a randomly initialised model), ``language`` the language of the prompts,
and the counts of items left out sit beside ``metrics`` (they are not scores).
"""
from __future__ import annotations

import csv
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REQUIRED_KEYS = ("dataset", "model", "pretrained", "task", "metrics")
RANDOM = "random"
"""``pretrained`` of a model evaluated with its random initial weights."""
SKIP_KEYS = ("skipped", "skipped_captions")
"""Counts the task functions return among their metrics; a record keeps them beside ``metrics``."""


def make_record(dataset: str, model: str, pretrained: str | None, task: str,
                metrics: dict[str, float], language: str = "en") -> dict[str, Any]:
    """A result record in CLIP_benchmark's layout (module docstring); ``pretrained`` None is :data:`RANDOM`."""
    return {"dataset": dataset, "model": model, "pretrained": RANDOM if pretrained is None else str(pretrained),
            "task": task, "language": language,
            "metrics": {k: v for k, v in metrics.items() if k not in SKIP_KEYS},
            **{k: metrics[k] for k in SKIP_KEYS if k in metrics}}


def result_filename(record: dict[str, Any]) -> str:
    """``{dataset}_{pretrained}_{model}_{task}.json`` with path-unsafe characters replaced."""
    pretrained = Path(record["pretrained"]).stem if record["pretrained"] else RANDOM
    parts = [record["dataset"], pretrained, record["model"], record["task"]]
    return "_".join(re.sub(r"[^A-Za-z0-9._+-]+", "-", str(p)) for p in parts) + ".json"


def write_result(record: dict[str, Any], output_dir: str | Path) -> Path:
    """Write one record as JSON under ``output_dir`` (created if needed); returns its path."""
    path = Path(output_dir) / result_filename(record)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return path


def read_result(path: str | Path) -> dict[str, Any]:
    """Read and check one result JSON; ValueError naming the file if malformed."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read result file {path}: {err}") from err
    missing = [k for k in REQUIRED_KEYS if not isinstance(record, dict) or k not in record]
    if missing or not isinstance(record["metrics"], dict):
        raise ValueError(f"result file {path}: expected keys {list(REQUIRED_KEYS)} with a "
                         f"'metrics' object, missing {missing or ['metrics (not an object)']}")
    return record


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else str(value)


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_results(records: Sequence[dict[str, Any]]) -> str:
    """One row per (record, metric): model, pretrained, dataset, task, metric, value."""
    rows = [[r["model"], _fmt(r["pretrained"]), r["dataset"], r["task"], name, _fmt(value)]
            for r in records for name, value in r["metrics"].items()]
    return _table(["model", "pretrained", "dataset", "task", "metric", "value"], rows)


def compare(paths: Sequence[str | Path]) -> str:
    """Side-by-side table of two or more result files: metrics as rows, files as columns
    (headed by file name, with model / pretrained / dataset / task rows); with exactly two
    files, a last column holds the difference second - first."""
    if len(paths) < 2:
        raise ValueError(f"expected two or more result files to compare, got {len(paths)}")
    records = [read_result(p) for p in paths]
    records = [{**r, "metrics": {**r["metrics"], **{k: r[k] for k in SKIP_KEYS if k in r}}} for r in records]
    names = list(dict.fromkeys(n for r in records for n in r["metrics"]))
    header = ["metric"] + [Path(p).name for p in paths] + (["diff"] if len(paths) == 2 else [])
    rows = [[key] + [_fmt(r[key]) for r in records] + ([""] if len(paths) == 2 else [])
            for key in ("model", "pretrained", "dataset", "task")]
    for name in names:
        values = [r["metrics"].get(name) for r in records]
        row = [name] + [_fmt(v) for v in values]
        if len(paths) == 2:
            numeric = all(isinstance(v, (int, float)) for v in values)
            row.append(_fmt(values[1] - values[0]) if numeric else "-")
        rows.append(row)
    return _table(header, rows)


def read_results(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Records of result files and of every ``*.json`` result in folders (sorted by name); a
    folder's records carry its path as ``source``."""
    records = []
    for p in map(Path, paths):
        files = sorted(p.glob("*.json")) if p.is_dir() else [p]
        records += [read_result(f) | ({"source": str(p)} if p.is_dir() else {}) for f in files]
    return records


def benchmark_table(records: Sequence[dict[str, Any]], datasets: Sequence[str], metric: str = "acc1",
                    task: str = "zeroshot_classification") -> tuple[list[str], list[list[str]]]:
    """The shape of the HiCLIP paper's Table 1: one row per (model, weights), one column per
    dataset (``metric`` x 100, "-" where absent) and the average over the datasets present in
    that row (with their count when not all are); records with a ``source`` folder are rows of
    their own. -> (header, rows)."""
    scores: dict[tuple[str, str], dict[str, float]] = {}
    for r in records:
        if r["task"] == task and metric in r["metrics"]:
            weights = Path(r["pretrained"]).name if r["pretrained"] else "-"
            key = (r["model"], weights + (f" ({r['source']})" if r.get("source") else ""))
            scores.setdefault(key, {})[r["dataset"]] = 100 * float(r["metrics"][metric])
    columns = list(datasets) + sorted({d for row in scores.values() for d in row} - set(datasets))
    rows = []
    for (model, weights), row in scores.items():
        present = [row[d] for d in columns if d in row]
        average = f"{sum(present) / len(present):.1f}" + ("" if len(present) == len(columns) else f" ({len(present)})")
        rows.append([model, weights] + [f"{row[d]:.1f}" if d in row else "-" for d in columns] + [average])
    return ["model", "weights"] + columns + ["average"], rows


def markdown_table(header: list[str], rows: list[list[str]], left: int = 2) -> str:
    """A GitHub Markdown table: the first ``left`` columns left-aligned, the rest (numbers) right-aligned."""
    align = ["---" if i < left else "---:" for i in range(len(header))]
    return "\n".join("| " + " | ".join(r) + " |" for r in [header, align] + rows)


def write_benchmark(records: Sequence[dict[str, Any]], datasets: Sequence[str], output_dir: str | Path,
                    name: str) -> tuple[Path, Path, str]:
    """Write ``{name}.csv`` and ``{name}.md`` (:func:`benchmark_table`) -> (csv path, md path, markdown)."""
    header, rows = benchmark_table(records, datasets)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    with (out / f"{name}.csv").open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header] + rows)
    text = markdown_table(header, rows)
    (out / f"{name}.md").write_text(text + "\n", encoding="utf-8")
    return out / f"{name}.csv", out / f"{name}.md", text
