"""``hiclip train``'s options, built from TrainConfig by ``hiclip.cli_options``: every field is an option."""
from __future__ import annotations

import argparse
import dataclasses

import pytest

from hiclip.cli_options import add_options, config_from_args
from hiclip.train import TrainConfig, format_summary


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hiclip train")
    add_options(p, TrainConfig)
    return p


def test_defaults_match_train_config():
    args = parser().parse_args(["--output-dir", "runs/x"])
    assert config_from_args(args, TrainConfig) == TrainConfig(output_dir="runs/x")


def test_every_field_has_an_option_with_its_help_and_default():
    text = "".join(parser().format_help().split())  # argparse wraps lines at spaces and hyphens
    for f in dataclasses.fields(TrainConfig):
        assert "--" + f.name.replace("_", "-") in text
        assert "".join(f.metadata["help"].split()) in text, f.name
        if f.default not in (dataclasses.MISSING, None) and not isinstance(f.default, bool):
            assert f"(default:{f.default})" in text, f.name


def test_options_parse_to_typed_values():
    args = parser().parse_args(["--output-dir", "o", "--steps", "7", "--lr", "1e-3", "--grad-clip", "1.5",
                                "--precision", "bf16", "--local-loss", "--no-tensorboard", "--resume", "latest"])
    cfg = config_from_args(args, TrainConfig)
    assert (cfg.steps, cfg.lr, cfg.grad_clip, cfg.precision) == (7, 1e-3, 1.5, "bf16")
    assert cfg.local_loss is True and cfg.tensorboard is False and cfg.resume == "latest"
    assert cfg.max_minutes is None and cfg.gather_with_grad is False


@pytest.mark.parametrize("argv", [[], ["--output-dir", "o", "--precision", "fp16"],
                                  ["--output-dir", "o", "--steps", "many"]])
def test_bad_command_lines_exit(argv, capsys):
    with pytest.raises(SystemExit):
        parser().parse_args(argv)
    assert "error" in capsys.readouterr().err


@pytest.mark.parametrize("changes, message", [({"batch_size": 0}, "batch_size must be >= 1"),
                                              ({"lr": -1.0}, "lr must be > 0"),
                                              ({"grad_clip": 0.0}, "grad_clip must be > 0"),
                                              ({"steps": 0}, "steps must be >= 1"),
                                              ({"threads": 0}, "threads must be >= 1")])
def test_bad_values_are_value_errors(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(output_dir="o", **changes)


def test_format_summary_mentions_the_essentials():
    text = format_summary({"stopped": "completed", "steps": 10, "total_steps": 10, "start_step": 0, "time_s": 2.0,
                           "pairs_per_s": 40.0, "final_loss": 1.5,
                           "final_val": {"step": 10, "val_loss": 2.0, "i2t_r1": 0.5, "t2i_r1": 0.25, "samples": 8.0},
                           "skipped": {"corrupt image": 3}, "checkpoint": "c/latest.pt", "output_dir": "o"})
    assert "training completed: step 10/10" in text and "val loss at step 10: 2.0000" in text
    assert "1.5000" in text and "2.0000" in text and "corrupt image: 3" in text
