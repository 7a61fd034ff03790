"""The ``hiclip`` command: every subcommand's --help, happy paths not run elsewhere, one bad input each.

Happy paths run in other files: parse, groups, induce-eval (tests/induce/test_induce_run.py,
test_induce_select.py), export (tests/test_checkpoint.py), prepare (tests/data/test_prepare.py),
finetune and finetune-eval (tests/vl/test_finetune.py), eval --benchmark / --compare
(tests/eval/test_eval_standard.py). The demo itself is tests/demo/test_demo.py.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import os
import re
import subprocess
import sys

import pytest
import torch

from hiclip import factory, list_models
from hiclip.cli import COMMANDS, build_parser, main, parse_args, parse_command
from hiclip.cli_options import config_from_args
from hiclip.commands.common import device
from hiclip.train import TrainConfig

HEAVY = ("torch", "open_clip", "sklearn", "nltk")
# commands whose option dataclass lives in a module that imports torch today: TrainConfig (train/config.py
# imports hiclip.data.*, whose package imports torch; hiclip/train/__init__ imports the loop), FinetuneConfig
# (vl/config.py imports vl/model.py), EvalSettings (eval/run.py), DemoConfig (demo/pipeline.py)
HEAVY_OPTIONS = {"eval", "demo", "train", "finetune"}

# trains on the embedded world in well under a second a step: CLIP's tokenizer, 16-pixel images
TINY_WORLD = {"embed_dim": 16,
              "vision_cfg": {"image_size": 16, "patch_size": 8, "width": 32, "layers": 2, "heads": 2,
                             "hierarchy": {"enabled": True}},
              "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2,
                           "hierarchy": {"enabled": True}}}


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def _shown_default(action: argparse.Action) -> list[str]:
    """Texts --help must show for an option's default (whitespace removed): "default:VALUE", or each
    value of a list; none for no default, flags and positionals."""
    if not action.option_strings or action.default in (None, argparse.SUPPRESS) or isinstance(action.default, bool):
        return []
    if isinstance(action.default, (list, tuple)):
        return [str(v) for v in action.default]
    return [f"default:{action.default}"]


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_every_command_help_exits_0_and_shows_each_default(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    text = "".join(capsys.readouterr().out.split())  # argparse wraps lines at spaces and hyphens
    for action in _subcommands()[command]._actions:
        if action.help == argparse.SUPPRESS:
            continue
        assert action.help, f"{command} {action.dest}: no help text"
        for flag in action.option_strings:
            assert flag in text
        for shown in _shown_default(action):
            assert shown in text, f"`hiclip {command} --help` does not show {shown!r} ({action.dest})"
        assert "['" not in text, "a list default shown as a Python list"


def test_help_check_catches_a_missing_default():
    p = argparse.ArgumentParser()
    action = p.add_argument("--size", type=int, default=256, help="shorter side")
    assert _shown_default(action) == ["default:256"] and "default:256" not in "".join(p.format_help().split())


def test_models_lists_every_config(capsys):
    assert main(["models"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert set(lines) == set(list_models())
    assert "hierarchy" in lines["HiCLIP-Tiny"] and "plain CLIP" in lines["CLIP-Tiny"]
    assert "declip" in lines["HiDeCLIP-Tiny"]


def test_eval_on_a_tiny_world(tmp_path, capsys):
    out = tmp_path / "results"
    assert main(["eval", "--model", "CLIP-Tiny", "--tasks", "zeroshot_retrieval", "--world-size", "8",
                 "--batch-size", "8", "--output-dir", str(out)]) == 0
    (path,) = out.rglob("*.json")
    record = json.loads(path.read_text())
    assert record["task"] == "zeroshot_retrieval" and record["model"] == "CLIP-Tiny"
    assert 0 <= record["metrics"]["image_retrieval_recall@1"] <= 1


def test_train_two_steps_then_refuse_to_overwrite(tmp_path, capsys):
    model = tmp_path / "tiny.json"
    model.write_text(json.dumps(TINY_WORLD))
    args = ["train", "--output-dir", str(tmp_path / "run"), "--model", str(model), "--steps", "2",
            "--batch-size", "4", "--world-samples", "16", "--val-data", "none", "--warmup-steps", "1",
            "--workers", "0", "--device", "cpu", "--no-tensorboard", "--no-progress"]
    assert main(args) == 0
    assert "training completed: step 2/2" in capsys.readouterr().out
    assert (tmp_path / "run" / "checkpoints" / "latest.pt").is_file()
    saved = json.loads((tmp_path / "run" / "run_config.json").read_text())
    assert saved == dataclasses.asdict(config_from_args(parse_args(args), TrainConfig))  # every option, resolved
    _fails_cleanly(main(args), capsys, "train", "already holds checkpoints")
    _replay_reproduces_the_options(tmp_path / "run" / "run_config.json", TrainConfig(**saved), capsys)


def _replay_reproduces_the_options(path, cfg: TrainConfig, capsys) -> None:
    """``train --config`` gives the run's options; flags override them, even when equal to the default."""
    assert config_from_args(parse_args(["train", "--config", str(path)]), TrainConfig) == cfg
    standalone = parse_command("train", ["--config", str(path)], "python -m hiclip.train", "")
    assert config_from_args(standalone, TrainConfig) == cfg
    changed = path.with_name("changed.json")
    changed.write_text(json.dumps(dataclasses.asdict(cfg) | {"lr": 1e-3, "weight_decay": 0.05}))
    args = parse_args(["train", "--config", str(changed), "--lr", "5e-4", "--wd", "0.2", "--steps", "7"])
    assert config_from_args(args, TrainConfig) == dataclasses.replace(cfg, lr=5e-4, weight_decay=0.2, steps=7)
    assert TrainConfig.lr == 5e-4 and TrainConfig.weight_decay == 0.2  # so the flags above equal the defaults
    changed.write_text(json.dumps({"output_dir": "o", "learning_rate": 1.0}))
    with pytest.raises(SystemExit) as done:
        parse_args(["train", "--config", str(changed)])
    assert done.value.code == 2 and "not options of this command: learning_rate" in capsys.readouterr().err


def test_open_clip_spellings_set_the_same_options(capsys):
    args = parse_args(["train", "--output-dir", "o", "--train-data", "a.csv::b.csv", "--csv-separator", ";",
                       "--wd", "0.1", "--warmup", "3", "--grad-clip-norm", "1.5"])
    cfg = config_from_args(args, TrainConfig)
    assert (cfg.data, cfg.csv_sep, cfg.weight_decay, cfg.warmup_steps, cfg.grad_clip) == ("a.csv::b.csv", ";", 0.1,
                                                                                          3, 1.5)
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--weight-decay WEIGHT_DECAY, --wd WEIGHT_DECAY" in text and "open_clip's spellings are accepted" in text


def test_every_device_option_defaults_to_auto_and_auto_resolves_once():
    for name, parser in _subcommands().items():
        for action in parser._actions:
            if action.dest == "device":
                assert action.default == "auto", name
    assert {"train", "eval", "parse", "groups", "induce-eval", "finetune", "finetune-eval", "demo"} <= {
        name for name, p in _subcommands().items() if any(a.dest == "device" for a in p._actions)}
    assert device("auto") == ("cuda:0" if torch.cuda.is_available() else "cpu") and device("cpu") == "cpu"


@pytest.mark.parametrize("command", ["parse", "groups", "induce-eval", "eval"])
@pytest.mark.parametrize("weights", [False, True])
def test_random_weights_are_named_in_one_warning_line(command, weights, tmp_path, capsys, monkeypatch):
    def stop(*a, **k):
        raise ValueError("stopped before loading")

    monkeypatch.setattr(factory, "load_for_inference", stop)
    argv = {"parse": ["parse", "a cat"], "groups": ["groups", str(tmp_path / "x.png")], "induce-eval": ["induce-eval"],
            "eval": ["eval"]}[command] + ["--model", "HiCLIP-Tiny"] + (["--pretrained", "w.pt"] if weights else [])
    assert main(argv + ["--device", "cpu"]) == 2
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warnings == ([] if weights else [f"hiclip {command}: warning: HiCLIP-Tiny has random weights (no "
                                            "checkpoint given); pass a checkpoint as --model, or --pretrained "
                                            "FILE, for a trained model"])


def _python(code: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, **kw)


def test_help_and_argparse_errors_import_nothing_heavy():
    light = sorted(c.name for c in COMMANDS if c.name not in HEAVY_OPTIONS)
    assert "parse" in light and "prepare" in light
    code = f"""if True:
        import json, sys
        from hiclip.cli import main
        codes = {{}}
        for argv in [["--help"], ["--version"], ["no-such-command"], ["parse"], ["parse", "--threshold", "x", "a"],
                     ["prepare", "a.csv"]] + [[name, "--help"] for name in {light!r}]:
            try:
                codes[" ".join(argv)] = main(argv)
            except SystemExit as e:
                codes[" ".join(argv)] = e.code
        print(json.dumps({{"codes": codes, "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
    """
    done = _python(code)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["heavy"] == [], report
    assert {k: v for k, v in report["codes"].items() if v != 0} == {
        "no-such-command": 2, "parse": 2, "parse --threshold x a": 2, "prepare a.csv": 2}
    assert "invalid float value: 'x'" in done.stderr and "required: --out" in done.stderr


def test_version_is_the_package_metadata_and_python_m_hiclip_runs(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    expected = f"hiclip {importlib.metadata.version('hiclip')}"
    assert capsys.readouterr().out.strip() == expected
    run = subprocess.run([sys.executable, "-m", "hiclip", "--version"], capture_output=True, text=True, timeout=600)
    assert (run.returncode, run.stdout.strip()) == (0, expected)


@pytest.mark.parametrize("argv, status", [(["--help"], 0), (["models"], 141)])
def test_a_closed_stdout_pipe_ends_quietly(argv, status):
    """The reader is gone before the first write (``hiclip models | head -0``), so every write fails:
    no traceback; status 141 as after SIGPIPE (argparse's --help ignores a failed write itself: 0)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        run = subprocess.run([sys.executable, "-m", "hiclip", *argv], stdout=write_end, stderr=subprocess.PIPE,
                             text=True, timeout=600)
    finally:
        os.close(write_end)
    assert run.returncode == status and run.stderr == "", run.stderr


def _fails_cleanly(code: int, capsys, command: str, message: str) -> None:
    """Exit status 2, no traceback, and the error as the last line on stderr."""
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert re.match(rf"hiclip {command}: error: ", last) and message in last, err


BAD = {  # one bad input per command -> the message its one line must hold
    "models": (["models", "--params=yes"], "ignored explicit argument"),
    "parse": (["parse", "--model", "NoSuchModel", "a cat"], "unknown model 'NoSuchModel'"),
    "groups": (["groups", "{tmp}/missing.png"], "cannot read image(s)"),
    "induce-eval": (["induce-eval", "--model", "NoSuchModel"], "unknown model"),
    "eval": (["eval", "--datasets", "world"], "expected a model name"),
    "export": (["export", "{tmp}/missing.pt", "--out", "{tmp}/m.safetensors"], "not found"),
    "prepare": (["prepare", "{tmp}/missing.csv", "--out", "{tmp}/shards"], "CSV file not found"),
    "train": (["train", "--output-dir", "{tmp}/run", "--batch-size", "0"], "batch_size must be >= 1"),
    "finetune": (["finetune", "--task", "vqa2", "--output-dir", "{tmp}/ft"], "unknown task 'vqa2'"),
    "finetune-eval": (["finetune-eval", "--checkpoint", "{tmp}/missing.pt"], "not found"),
    "demo": (["demo", "--out", "{tmp}/demo", "--steps", "0"], "steps must be >= 1"),
    "report": (["report", "{tmp}", "--out", "{tmp}/results.md"], "neither a demo folder"),
    "explore": (["explore", "--model", "NoSuchModel"], "unknown model"),
}


def test_bad_inputs_cover_every_command():
    assert set(BAD) == set(_subcommands())


@pytest.mark.parametrize("command", sorted(BAD))
def test_a_bad_input_is_one_clear_line(command, tmp_path, capsys):
    argv, message = BAD[command]
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors: usage, then the one error line
        code = e.code
    _fails_cleanly(code, capsys, command, message)
    assert not (tmp_path / "demo").exists()  # the demo refuses before it writes anything


def test_python_m_hiclip_train_has_the_options_of_hiclip_train(tmp_path, capsys):
    from hiclip.train.__main__ import main as train_main

    def flags(parser: argparse.ArgumentParser) -> set[str]:
        return {s for a in parser._actions for s in a.option_strings}

    with pytest.raises(SystemExit) as done:
        train_main(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert flags(_subcommands()["train"]) - {"-h", "--help"} <= {w.strip("[],") for w in text.split()}
    assert train_main(["--output-dir", str(tmp_path / "run"), "--batch-size", "0"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "python -m hiclip.train: error: batch_size must be >= 1, got 0"
