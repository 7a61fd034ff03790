"""``run_config.json``: the resolved options of a training run, in its run folder, as readable JSON.

``hiclip train --config RUN/run_config.json`` replays it (``hiclip.cli_options.replay_config``).
Light on purpose (json only): the command line reads it before anything heavy is imported.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

RUN_CONFIG = "run_config.json"


def write_run_config(config: Any, folder: str | Path) -> Path:
    """Write the dataclass ``config`` (every field) to ``folder/run_config.json``, atomically; -> its path."""
    path = Path(folder) / RUN_CONFIG
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    os.replace(tmp, path)
    return path


def read_run_config(path: str | Path) -> dict[str, Any]:
    """The field values in a ``run_config.json``; ValueError (one line) if it is missing or not a JSON object."""
    try:
        values = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read config file {path}: {e}") from None
    if not isinstance(values, dict):
        raise ValueError(f"config file {path}: expected a JSON object of option values, got {type(values).__name__}")
    return values
