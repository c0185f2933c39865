"""Command-line flags generated from dataclass fields, so that an option's name, default, type, choices and help are
written once, next to the field, and every command that offers it offers the same thing.

    @dataclass
    class Options:
        image_size: tuple[int, int] = option((256, 256), "network input H W (letterboxed)", metavar=("H", "W"))
        use_ema: bool = option(False, "keep an exponential moving average of the weights")

    add_flags(parser, Options)                       # --image_size H W, --use_ema
    add_flags(parser, Options, ["image_size"], defaults={"image_size": (512, 512)})

Flags are spelled like the fields (underscores, as in the user's training command). A ``bool`` field that is off
by default is a switch; one that is on by default takes ``--name`` (accepted, changes nothing) and ``--no_name``.

A field's ``check`` (see :mod:`cephalo.checks`) runs when the flag is parsed, so a bad value stops the command
with one line naming the flag and the valid range; :func:`check_values` runs the same checks on values that came
from elsewhere (a ``--config`` file, a preset, code).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable, Iterable

Check = Callable[[object], "str | None"]  # value -> None if fine, else what is wrong ("must be at least 1")


def option(default, help: str, *, choices: Iterable | None = None, type=None, metavar=None, flag: str | None = None,
           check: Check | None = None):
    """A dataclass field with what its command-line flag needs. ``type`` is needed only where the default does not
    tell it (``None``); ``flag`` replaces the generated spelling (``--no_progress`` for ``progress``); ``check``
    validates each value (each element of a tuple)."""
    metadata = {"help": help, "choices": tuple(choices) if choices is not None else None, "type": type,
                "metavar": metavar, "flag": flag, "check": check}
    return dataclasses.field(default=default, metadata=metadata)


class Parser(argparse.ArgumentParser):
    """argparse, with a bad flag reported as one ``error:`` line that says where the options are listed (instead of
    the whole usage text, which buries the line that matters)."""

    def error(self, message: str):
        self.exit(2, f"error: {message} ({self.prog} --help lists the options)\n")


class Typed:
    """An argparse ``type``: converts the word with ``kind`` and applies ``check``; the error names the value and
    what it must be (argparse adds the flag). ``kind`` and ``check`` stay readable for tests of the flags."""

    def __init__(self, kind: type, check: Check | None = None):
        self.kind, self.check = kind, check
        self.__name__ = getattr(kind, "__name__", "value")
        self.expects = _KIND_NAMES.get(kind) or getattr(kind, "expects", "valid")  # what a good word looks like

    def __call__(self, word: str):
        try:
            value = self.kind(word)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"{word!r} is not {self.expects}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{word}: must be a finite number")
        problem = self.check(value) if self.check is not None else None
        if problem:
            raise argparse.ArgumentTypeError(f"{word}: {problem}")
        return value


_KIND_NAMES = {int: "an integer", float: "a number"}


def check_values(obj, cls=None) -> None:
    """Apply the option checks of ``cls`` (default: ``type(obj)``) to ``obj``'s values; raises ``ValueError`` with
    one line naming every bad flag."""
    problems = []
    for f in option_fields(cls or type(obj)):
        value, check = getattr(obj, f.name), f.metadata["check"]
        kind = f.metadata["type"] or (type(f.default) if f.default is not None else None)
        if value is None or (check is None and f.metadata["choices"] is None and kind not in (int, float, bool)):
            continue
        choices = f.metadata["choices"]
        for element in value if isinstance(value, (tuple, list)) else (value,):
            problem = _kind_problem(element, kind, f.default) or (check(element) if check else None)
            if problem is None and choices is not None and element not in choices:
                problem = f"must be one of {', '.join(map(str, choices))}"
            if problem:
                problems.append(f"--{f.name} {element!r}: {problem}")
                break
    if problems:
        raise ValueError("; ".join(problems))


def _kind_problem(value, kind, default) -> str | None:
    if isinstance(default, tuple):
        kind = type(default[0])
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        return "must be an integer"
    if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
        return "must be a number"
    if isinstance(value, float) and not math.isfinite(value):  # inf or nan from a config file or the command line
        return "must be a finite number"
    if kind is bool and not isinstance(value, bool):
        return "must be true or false"
    return None


def option_fields(cls, names: Iterable[str] | None = None) -> list[dataclasses.Field]:
    """The fields of ``cls`` that are options, in declaration order (or in the order of ``names``)."""
    by_name = {f.name: f for f in dataclasses.fields(cls) if "help" in f.metadata}
    if names is None:
        return list(by_name.values())
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise KeyError(f"{cls.__name__} has no option(s) {', '.join(unknown)}")
    return [by_name[n] for n in names]


def add_flags(parser, cls, names: Iterable[str] | None = None, defaults: dict | None = None) -> None:
    """Add a flag to ``parser`` (or an argument group) for each option field of ``cls`` (or those in ``names``);
    ``defaults`` replaces some defaults for this command."""
    defaults = defaults or {}
    for f in option_fields(cls, names):
        meta, default = f.metadata, defaults.get(f.name, f.default)
        flag = f"--{f.name}"
        if meta["flag"]:  # a switch spelled otherwise, e.g. --no_progress for progress=True
            parser.add_argument(meta["flag"], dest=f.name, action="store_false" if default else "store_true",
                                default=default, help=meta["help"])
        elif default is True:
            parser.add_argument(flag, action="store_true", default=True, help=meta["help"])
            parser.add_argument(f"--no_{f.name}", dest=f.name, action="store_false", help=argparse.SUPPRESS)
        elif isinstance(default, bool) or meta["type"] is bool:
            parser.add_argument(flag, action="store_true", default=default, help=meta["help"])
        elif _is_tuple(f):  # H W: as many words as the default or the metavar has
            kind = type(default[0]) if isinstance(default, tuple) else meta["type"]
            parser.add_argument(flag, type=Typed(kind, meta["check"]), nargs=len(default or meta["metavar"]),
                                metavar=meta["metavar"], default=default, help=meta["help"])
        else:
            kind = meta["type"] or (type(default) if default is not None else str)
            parser.add_argument(flag, type=Typed(kind, meta["check"]), default=default, choices=meta["choices"],
                                metavar=meta["metavar"], help=meta["help"])


def values_from(args: argparse.Namespace, cls, names: Iterable[str] | None = None) -> dict:
    """The values parsed for the option fields of ``cls`` (tuple fields back as tuples)."""
    values = {}
    for f in option_fields(cls, names):
        value = getattr(args, f.name)
        values[f.name] = tuple(value) if _is_tuple(f) and value is not None else value
    return values


def _is_tuple(f: dataclasses.Field) -> bool:
    return isinstance(f.default, tuple) or isinstance(f.metadata["metavar"], tuple)


def flag_words(cls, values: dict) -> list[str]:
    """``values`` of option fields of ``cls`` spelled as command-line words (a command that can be run again)."""
    words: list[str] = []
    for f in option_fields(cls, list(values)):
        value = values[f.name]
        if f.metadata["flag"]:
            words += [f.metadata["flag"]] if value != f.default else []
        elif isinstance(value, bool):
            words.append(f"--{f.name}" if value else f"--no_{f.name}" if f.default is True else "")
        elif value is None:
            continue
        elif isinstance(value, (tuple, list)):
            words += [f"--{f.name}", *(str(v) for v in value)]
        else:
            words += [f"--{f.name}", f"{value:g}" if isinstance(value, float) else str(value)]
    return [w for w in words if w]
