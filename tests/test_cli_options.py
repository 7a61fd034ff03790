"""``hiclip.cli_options``: a config dataclass -> argparse options -> the same dataclass."""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import pytest

from hiclip.cli_options import add_options, config_from_args
from hiclip.config import option


@dataclass
class Example:
    out: str = field(metadata={"help": "where"})
    size: int = option(64, "pixels")
    names: tuple[str, ...] = option(("a", "b"), "some names", metavar="NAME")
    sep: str | None = option(None, "separator", default_help="',' or tab")
    root: str | None = option(None, "a folder")
    workers: int = option(0, "processes", flag="--jobs")
    fast: bool = option(False, "go fast")
    progress: bool = option(True, "show progress")
    kind: str = option("x", "one of x, y", choices=("x", "y"))
    hidden: float = option(0.5, "not an option", cli=False)
    notes: list[str] = field(default_factory=list, metadata={"cli": False})


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="example")
    add_options(p, Example)
    return p


def test_defaults_round_trip():
    assert config_from_args(parser().parse_args(["--out", "o"]), Example) == Example(out="o")


def test_every_kind_of_field_parses():
    args = parser().parse_args(["--out", "o", "--size", "8", "--names", "c", "d", "e", "--sep", ";", "--jobs", "3",
                                "--fast", "--no-progress", "--kind", "y"])
    cfg = config_from_args(args, Example, notes=["n"])
    assert cfg == Example("o", 8, ("c", "d", "e"), ";", None, 3, True, False, "y", 0.5, ["n"])
    assert config_from_args(args, Example, size=9).size == 9  # ``others`` replace parsed values


def test_help_shows_defaults_and_leaves_hidden_fields_out(capsys):
    text = " ".join(parser().format_help().split())
    assert "pixels (default: 64)" in text and "some names (default: a b)" in text
    assert "separator (default: ',' or tab)" in text and "a folder" in text and "a folder (default" not in text
    assert "--jobs JOBS processes (default: 0)" in text and "--workers" not in text
    assert "--progress, --no-progress" in text and "--hidden" not in text and "--notes" not in text


@pytest.mark.parametrize("argv", [[], ["--out", "o", "--kind", "z"], ["--out", "o", "--size", "big"]])
def test_bad_command_lines_are_argparse_errors(argv, capsys):
    with pytest.raises(SystemExit) as done:
        parser().parse_args(argv)
    assert done.value.code == 2 and "example: error:" in capsys.readouterr().err
