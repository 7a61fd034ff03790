"""The ``hiclip`` console command (also ``python -m hiclip``): a thin argparse layer over the library.

Each subcommand is one :class:`Command` in :data:`COMMANDS`: its name and help, a function that adds
its options to a parser, and ``"module:function"``, the code it runs. Building the parser imports
nothing heavy; only the chosen subcommand's options are built, and its module is imported only
when it runs, so ``hiclip --help`` and argparse errors answer at once (no torch).

Errors the user can fix (bad names, files, inputs) print one line and exit with status 2.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import select
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .cli_options import add_config_option, add_options, replay_config
from .commands.options import (DEVICE_HELP, FinetuneEvalOptions, GroupsOptions, InduceEvalOptions, ParseOptions,
                               PrepareOptions)

# open_clip's training flags (open_clip_train/params.py) that mean what a hiclip option means
OPEN_CLIP_ALIASES = {
    "data": ("--train-data",), "csv_sep": ("--csv-separator",), "weight_decay": ("--wd",),
    "warmup_steps": ("--warmup",), "grad_clip": ("--grad-clip-norm",),
}
OPEN_CLIP_EPILOG = ("open_clip's spellings are accepted: --train-data (--data; paths joined by '::'), "
                    "--csv-separator (--csv-sep), --wd (--weight-decay), --warmup (--warmup-steps), "
                    "--grad-clip-norm (--grad-clip); --batch-size, --lr, --beta1, --beta2, --eps, --epochs, "
                    "--workers, --seed, --resume, --precision (fp32, bf16 = open_clip's amp_bf16, amp), "
                    "--accum-freq, --csv-img-key, --csv-caption-key, --local-loss, --gather-with-grad, "
                    "--grad-checkpointing, --model, --pretrained, --val-data are spelled as there.")


@dataclass(frozen=True)
class Command:
    """One subcommand: ``options(parser)`` adds its options (importing no torch where it can);
    ``run`` is ``"module:function"``, called with the parsed namespace, returning the exit status."""

    name: str
    help: str
    options: Callable[[argparse.ArgumentParser], None]
    run: str
    description: str | None = None
    epilog: str | None = None

    def target(self) -> Callable[[argparse.Namespace], int]:
        module, function = self.run.split(":")
        return getattr(importlib.import_module(module), function)


def dataclass_options(config: type | str, aliases: dict | None = None, config_file: bool = False
                      ) -> Callable[[argparse.ArgumentParser], None]:
    """An options builder from an options dataclass, or ``"module:Class"`` imported when the options are
    built (a config that lives in a heavy module); ``config_file``: also ``--config FILE``."""
    def build(parser: argparse.ArgumentParser) -> None:
        cls = config
        if isinstance(cls, str):
            module, name = cls.split(":")
            cls = getattr(importlib.import_module(module), name)
        add_options(parser, cls, aliases)
        if config_file:
            add_config_option(parser)
    return build


def _models_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", action="store_true", help="also count parameters (builds each model)")


def _export_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", nargs="?", metavar="CHECKPOINT", help="a checkpoint or state dict file (.pt)")
    p.add_argument("--checkpoint", help="the same, as an option")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", help="the .safetensors file to write")
    where.add_argument("--dir", help="the folder to write (a model that names itself: a `hiclip train` checkpoint)")


def _explore_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="checkpoint, local-dir:PATH, or model name (default: the demo's seed-0 "
                                   "HiCLIP-Tiny, demo_out/runs/HiCLIP-Tiny-s0/checkpoints/latest.pt)")
    p.add_argument("--model2", help="a second model, shown beside the first")
    p.add_argument("--port", type=int, default=7860, help="port on 127.0.0.1 (default: %(default)s)")
    p.add_argument("--device", default="auto", help="torch device")


def _report_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("dirs", nargs="+", metavar="DIR", help="demo or fine-tuning study folders")
    p.add_argument("--out", default="docs/results.md", help="the page to write (default: %(default)s)")
    p.add_argument("--readme", help="a README whose headline block to refill")


def _eval_options(p: argparse.ArgumentParser) -> None:
    from .eval.run import OUTPUT_DIR, TASKS, EvalSettings, run_eval
    from .eval.standard import LAYOUTS
    import inspect
    p.add_argument("--model", help="model name, or a checkpoint from `hiclip train` (its model is read from it)")
    p.add_argument("--pretrained", help="weights file (a `hiclip train` checkpoint or a CLIP state dict)")
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS, metavar="TASK",
                   help=f"tasks (default: all of {', '.join(TASKS)})")
    p.add_argument("--datasets", nargs="+", default=list(inspect.signature(run_eval).parameters["datasets"].default),
                   help="'world', 'world/<shape|colour|size|count|holdout>', a standard dataset by its "
                        f"CLIP_benchmark name ({', '.join(LAYOUTS)}; files under --dataset-root), an image "
                        "folder root/<class>/* (with train/ and test/ also for linear_probe), a .csv / .tsv "
                        "(image path, caption) or a COCO/Flickr30k Karpathy .json (default: world)")
    p.add_argument("--benchmark", choices=["paper"], help="'paper': zero-shot on the HiCLIP paper's 11 datasets "
                                                          "present under --dataset-root; writes a Table-1-shaped "
                                                          "benchmark_paper.csv / .md beside the JSONs")
    p.add_argument("--output-dir", default=OUTPUT_DIR, help="where result JSONs go (default: %(default)s)")
    add_options(p, EvalSettings)
    p.add_argument("--compare", nargs="+", metavar="RESULTS",
                   help="result JSON files: metrics side by side; result folders (one per model): "
                        "the Table-1 shape of their zero-shot top-1 accuracies. Prints and exits")


COMMANDS: list[Command] = [
    Command("models", "list the built-in model configs", _models_options, "hiclip.commands.models:run"),
    Command("parse", "print (and draw) the induced parse tree of captions", dataclass_options(ParseOptions),
            "hiclip.commands.induce:parse"),
    Command("groups", "write per-layer region overlays (PNG + GIF) of images", dataclass_options(GroupsOptions),
            "hiclip.commands.induce:groups"),
    Command("induce-eval", "score induced trees and groups against gold, with baselines",
            dataclass_options(InduceEvalOptions), "hiclip.commands.induce:induce_eval_command"),
    Command("eval", "zero-shot classification, retrieval, linear probe, compositional tests", _eval_options,
            "hiclip.commands.evaluate:run",
            description="Evaluate a model; one CLIP_benchmark-style JSON per model x dataset x task."),
    Command("export", "write a checkpoint's weights as a .safetensors file or a local-dir: folder", _export_options,
            "hiclip.commands.export:run",
            description="Copy the model weights of a `hiclip train` checkpoint (or any state dict file) to a "
                        ".safetensors file, which loads without pickle; the model name and config go into its "
                        "metadata. With --dir: a folder of config.json, model.safetensors and a model card "
                        "README.md, loaded as --model local-dir:DIR."),
    Command("explore", "an interactive hierarchy explorer in the browser (needs the [explorer] extra)",
            _explore_options, "hiclip.commands.explore:run",
            description="Caption trees (choice of read-out, threshold) and links per layer; image groups per "
                        "layer; for one model or two side by side. Served on 127.0.0.1 only, nothing contacts "
                        "another host."),
    Command("prepare", "turn a CSV of local images into resized WebDataset shards", dataclass_options(PrepareOptions),
            "hiclip.commands.data:run",
            description="Decode every image of a CSV / TSV once (pixel limit, EXIF, transparency as in training), "
                        "shrink it to a shorter side of --size, and write JPEG + caption WebDataset shards with a "
                        "sizes.json, so that training is not decode-bound."),
    Command("demo", "train HiCLIP-Tiny and CLIP-Tiny alike, evaluate both, write a report",
            dataclass_options("hiclip.demo:DemoConfig"), "hiclip.commands.demo:run",
            description="The main job: HiCLIP-Tiny vs CLIP-Tiny on the embedded world, same data, steps and seeds; "
                        "evaluation, hierarchy induction and OUT/report.md + .html. Rerunning continues an "
                        "interrupted run."),
    Command("report", "write one results page (e.g. docs/results.md) from demo and study folders", _report_options,
            "hiclip.commands.report:run",
            description="Tables, verdicts and the commands behind them from `hiclip demo` folders and fine-tuning "
                        "study folders (study.json), in one markdown page; --readme also refills that file's "
                        "headline block (between <!-- results:begin --> and <!-- results:end -->) from the first "
                        "demo folder."),
    Command("train", "pretrain a model (embedded world, WebDataset or CSV; DDP with torchrun)",
            dataclass_options("hiclip.train.config:TrainConfig", OPEN_CLIP_ALIASES, config_file=True),
            "hiclip.commands.train:run",
            description="Contrastive pretraining; the run folder gets run_config.json (every option), which "
                        "--config replays. Under torchrun, `python -m hiclip.train` takes the same options.",
            epilog=OPEN_CLIP_EPILOG),
    Command("finetune", "fine-tune on VQA or visual entailment (world, VQA v2, SNLI-VE)",
            dataclass_options("hiclip.vl.config:FinetuneConfig", OPEN_CLIP_ALIASES), "hiclip.commands.finetune:run",
            description="Fine-tune a model's towers with a task head; ends with an evaluation on the validation "
                        "split (results JSON in the output directory)."),
    Command("finetune-eval", "evaluate a `hiclip finetune` checkpoint on a split", dataclass_options(FinetuneEvalOptions),
            "hiclip.commands.finetune:evaluate",
            description="Accuracy overall and per question type; a CLIP_benchmark-style results JSON."),
]


def _version() -> str:
    from . import __version__
    return __version__


def _add_command(sub: argparse._SubParsersAction, c: Command, with_options: bool) -> argparse.ArgumentParser:
    sp = sub.add_parser(c.name, help=c.help, description=c.description or c.help.capitalize() + ".", epilog=c.epilog)
    if with_options:
        _build_options(sp, c)
    sp.set_defaults(_command=c)
    return sp


def _build_options(parser: argparse.ArgumentParser, c: Command) -> None:
    """``c``'s options, with ``--device auto`` as the default of every command that has ``--device``."""
    c.options(parser)
    for action in parser._actions:
        if action.dest == "device":
            action.default, action.help = "auto", f"{DEVICE_HELP} (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    """The ``hiclip`` parser with every command's options (importing every config: for tests and docs)."""
    return _build()[0]


def _build(only: Sequence[str] | None = None) -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """(the ``hiclip`` parser, its subparsers by name); ``only``: build the options of these commands only
    (the others are listed by name and help), so that importing their configs is left to when they run."""
    p = argparse.ArgumentParser(prog="hiclip", description="HiCLIP: CLIP with hierarchy-aware attention.")
    p.add_argument("--version", action="version", version=f"hiclip {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    return p, {c.name: _add_command(sub, c, only is None or c.name in only) for c in COMMANDS}


def _chosen(argv: Sequence[str]) -> list[str]:
    """The subcommand named in ``argv`` (the first word not an option), as a list of at most one."""
    return [a for a in argv if not a.startswith("-")][:1]


def _parse(parser: argparse.ArgumentParser, command: argparse.ArgumentParser | None,
           argv: list[str]) -> argparse.Namespace:
    """``argv`` parsed by ``parser``, after ``command`` (the chosen one's parser) took a ``--config`` file."""
    if command is not None:
        try:
            replay_config(command, argv)
        except ValueError as e:
            command.error(str(e))  # usage and one line, status 2
    return parser.parse_args(argv)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``argv`` parsed, with ``--config FILE`` replayed where the command has it (argparse errors exit 2)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = _chosen(argv)
    parser, subparsers = _build(chosen)
    return _parse(parser, subparsers.get(chosen[0]) if chosen else None, argv)


def parse_command(name: str, argv: Sequence[str] | None, prog: str, description: str) -> argparse.Namespace:
    """``argv`` parsed by a stand-alone parser of the command ``name`` (``python -m hiclip.train``)."""
    (c,) = [c for c in COMMANDS if c.name == name]
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=c.epilog)
    _build_options(parser, c)
    parser.set_defaults(_command=c)
    return _parse(parser, parser, list(sys.argv[1:] if argv is None else argv))


def _stdout_closed() -> bool:
    """Whether stdout's reader has gone (a BrokenPipeError from elsewhere, e.g. a worker's pipe, is a real error)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), or no real stdout: trust the error
        return True


def _diverged(e: Exception) -> bool:
    """Whether ``e`` is the run skeleton's TrainingDiverged (its module is heavy: not imported to ask)."""
    loop = sys.modules.get("hiclip.train.skeleton")
    return loop is not None and isinstance(e, loop.TrainingDiverged)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        try:
            code = args._command.target()(args)
        except BrokenPipeError:
            raise
        except (ValueError, OSError) as e:  # bad input, a missing or unwritable file, a full disk, a folder in use
            print(f"hiclip {args.command}: error: {' '.join(str(e).split())}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:  # a third Ctrl-C (the first asks for a clean stop with a checkpoint)
            print(f"hiclip {args.command}: interrupted; the last complete checkpoint is kept", file=sys.stderr)
            return 130
        except Exception as e:
            if not _diverged(e):  # train, finetune: TrainingDiverged
                raise
            print(f"hiclip {args.command}: error: {e}", file=sys.stderr)
            return 3
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except BrokenPipeError:
        if not _stdout_closed():
            raise
        # the reader went away (`hiclip models | head -1`): no traceback; the interpreter's final flush
        # goes to /dev/null; the status is that of a process that SIGPIPE ended
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13


if __name__ == "__main__":
    sys.exit(main())
