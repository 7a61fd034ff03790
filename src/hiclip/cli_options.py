"""Command-line options built from config dataclasses: the one place that turns a config into argparse
options, used by ``hiclip`` (``hiclip.cli``) and ``python -m hiclip.train``; library code never
parses argv (docs/design.md §8).

Each field of the dataclass becomes ``--field-name`` (``metadata["flag"]`` overrides the name) with
the field's default and ``metadata["help"]`` (plus ``choices`` / ``metavar`` where given), its help
ending in "(default: ...)" (``metadata["default_help"]`` replaces the value shown; a None default
shows nothing). A field without a default is a required option; a bool is a flag (``--x``, or
``--x`` / ``--no-x`` when on by default); ``tuple[T, ...]`` takes one or more values.
``metadata["cli"] = False`` keeps a field off the command line (its default applies);
``metadata["positional"]`` makes a field a positional argument (one or more values for a tuple).
``aliases`` adds other spellings of a field's flag (open_clip's, for ``hiclip train``).

``--config FILE`` (:func:`add_config_option`, :func:`replay_config`) replays a JSON file of field
values, such as the ``run_config.json`` of a training run: its values become the defaults before the
command line is parsed, so the flags given there still override them.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from .run_config import read_run_config

CONFIG_DEST = "config_file"


def _kind(hint: Any) -> tuple[Any, bool]:
    """(value type, several values?): ``int | None`` -> (int, False); ``tuple[str, ...]`` -> (str, True)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        (hint,) = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is tuple:
        return typing.get_args(hint)[0], True
    return hint, False


def option_fields(config: type) -> list[dataclasses.Field]:
    """The fields of ``config`` that are command-line options."""
    return [f for f in dataclasses.fields(config) if f.metadata.get("cli", True)]


def _default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def _help(f: dataclasses.Field, default: Any) -> str:
    text = f.metadata["help"]
    shown = f.metadata.get("default_help")
    if shown is None and isinstance(default, (list, tuple)):
        shown = " ".join(map(str, default))
    if shown is not None:
        return f"{text} (default: {shown.replace('%', '%%')})"
    return text if default is None else f"{text} (default: %(default)s)"


def add_options(parser: argparse.ArgumentParser, config: type,
                aliases: Mapping[str, Sequence[str]] | None = None) -> None:
    """One option per :func:`option_fields` field of the dataclass ``config`` (module docstring);
    ``aliases``: field name -> more flags for it (names that are not fields of ``config`` are ignored)."""
    hints = typing.get_type_hints(config)
    for f in option_fields(config):
        kind, several = _kind(hints[f.name])
        nargs = "+" if several else None
        if f.metadata.get("positional"):
            parser.add_argument(f.name, type=kind, nargs=nargs, help=f.metadata["help"])
            continue
        flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
        flags = (flag, *(aliases or {}).get(f.name, ()))
        metavar = f.metadata.get("metavar", flag[2:].replace("-", "_").upper())  # named as the option
        default = _default(f)
        if default is dataclasses.MISSING:
            parser.add_argument(*flags, dest=f.name, type=kind, nargs=nargs, required=True, metavar=metavar,
                                help=f.metadata["help"])
        elif kind is bool:
            action = argparse.BooleanOptionalAction if default else "store_true"
            parser.add_argument(*flags, dest=f.name, action=action, default=default, help=f.metadata["help"])
        else:
            parser.add_argument(*flags, dest=f.name, type=kind, nargs=nargs, default=default,
                                choices=f.metadata.get("choices"),
                                metavar=None if "choices" in f.metadata else metavar,
                                help=_help(f, default))


def config_from_args(args: argparse.Namespace, config: type, **others: Any) -> Any:
    """The ``config`` of parsed arguments; ``others`` sets fields besides (or instead of) the parsed
    ones, the remaining fields keep their defaults; other attributes of ``args`` are ignored."""
    hints = typing.get_type_hints(config)
    values = {}
    for f in option_fields(config):
        value = getattr(args, f.name)
        values[f.name] = tuple(value) if _kind(hints[f.name])[1] and value is not None else value
    return config(**(values | others))


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """``--config FILE``: replay a JSON file of option values (:func:`replay_config`)."""
    parser.add_argument("--config", dest=CONFIG_DEST, metavar="FILE",
                        help="replay a run's run_config.json (or any JSON object of these options, by field "
                             "name): its values replace the defaults; the flags given here override them")


def replay_config(parser: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    """If ``parser`` has ``--config`` and ``argv`` names a file with it, make the file's values ``parser``'s
    defaults before ``argv`` is parsed, so explicit flags win (even when equal to a built-in default) and
    required options may come from the file. ValueError: an unreadable file, or a key that is not an
    option of ``parser``."""
    if not any(a.dest == CONFIG_DEST for a in parser._actions):
        return
    find = argparse.ArgumentParser(add_help=False)
    find.add_argument("--config", dest=CONFIG_DEST)
    path = getattr(find.parse_known_args(list(argv))[0], CONFIG_DEST)
    if not path:
        return
    values = read_run_config(path)
    actions = {a.dest: a for a in parser._actions if a.dest != CONFIG_DEST}
    unknown = sorted(set(values) - set(actions))
    if unknown:
        raise ValueError(f"{path}: not options of this command: {', '.join(unknown)}")
    for name in values:
        actions[name].required = False  # a required option may come from the file
    parser.set_defaults(**values)
