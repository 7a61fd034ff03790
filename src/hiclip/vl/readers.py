"""Checked reading of the real datasets' annotation files: clear errors naming file and field."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable


def read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def read_jsonl(path: Path, what: str) -> list[tuple[int, Any]]:
    """(line number, parsed object) of each non-blank line."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    rows = []
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
                if line.strip():
                    rows.append((n, json.loads(line)))
            except UnicodeDecodeError as e:
                raise ValueError(f"{path}, line {n}: not UTF-8 text ({e.reason} at byte {e.start})") from None
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}, line {n}: not valid JSON ({e})") from None
    return rows


def field(record: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``record[key]``, checked to be of ``kind``; else ValueError naming ``where`` and the field."""
    if not isinstance(record, dict) or key not in record:
        raise ValueError(f"{where}: missing field {key!r}")
    value = record[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        names = "/".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise ValueError(f"{where}: field {key!r} must be {names}, got {type(value).__name__} {value!r:.60}")
    return value


def list_field(record: Any, key: str, where: str) -> Iterable[tuple[int, Any]]:
    return enumerate(field(record, key, list, where))
