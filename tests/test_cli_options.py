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


@dataclass(kw_only=True)
class WithPositional:
    files: tuple[str, ...] = field(metadata={"help": "inputs", "positional": True})
    weight_decay: float = option(0.2, "decay")


def test_positional_fields_and_aliases():
    p = argparse.ArgumentParser(prog="example")
    add_options(p, WithPositional, aliases={"weight_decay": ("--wd",), "not_a_field": ("--x",)})
    assert config_from_args(p.parse_args(["a", "b", "--wd", "0.1"]), WithPositional) == WithPositional(
        files=("a", "b"), weight_decay=0.1)
    assert config_from_args(p.parse_args(["a", "--weight-decay", "0.3"]), WithPositional).weight_decay == 0.3
    assert "--x" not in p.format_help()


def test_light_option_defaults_agree_with_the_library():
    """The light option dataclasses repeat library defaults (to avoid importing torch); they must not drift."""
    import inspect

    from hiclip.commands import options as o
    from hiclip.data import csvdata
    from hiclip.data.images import DEFAULT_MAX_PIXELS
    from hiclip.data.prepare import prepare
    from hiclip.induce.run import induce_eval
    from hiclip.induce.trees import METHODS, Readout
    from hiclip.vl import evaluate_checkpoint

    def defaults(fn):
        return {k: p.default for k, p in inspect.signature(fn).parameters.items()}

    r, parse = Readout(), o.ParseOptions(captions=("a",))
    assert (parse.readout, parse.threshold, parse.down, parse.side, parse.min_layer, parse.flat) == (
        r.method, r.threshold, r.down, r.side, r.min_layer, r.flat)
    assert o.READOUT_METHODS == METHODS and o.PIL_MAX_PIXELS == DEFAULT_MAX_PIXELS
    d, prep = defaults(prepare), o.PrepareOptions(csv=("a.csv",), out="o")
    assert (prep.size, prep.csv_img_key, prep.csv_caption_key, prep.csv_sep, prep.max_pixels, prep.samples_per_shard,
            prep.quality, prep.workers) == (d["size"], csvdata.IMAGE_KEY, csvdata.CAPTION_KEY, d["sep"],
                                            d["max_pixels"], d["samples_per_shard"], d["quality"], d["workers"])
    d, ie = defaults(induce_eval), o.InduceEvalOptions()
    assert (ie.n, ie.threshold, ie.seed, ie.split, ie.tune_split, ie.tune_n) == (
        d["n"], d["threshold"], d["seed"], d["split"], d["tune_split"], d["tune_n"])
    d, fe = defaults(evaluate_checkpoint), o.FinetuneEvalOptions(checkpoint="c")
    assert (fe.split, fe.batch_size, fe.workers, fe.device) == (d["split"], d["batch_size"], d["workers"], d["device"])
