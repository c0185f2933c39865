"""Arguments and steps shared by the subcommands (flag spellings follow the user's: underscores)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from cephalo.datasets.sources import SPLITS, DatasetSpec
from cephalo.flags import add_flags, option_fields, values_from
from cephalo.preprocessing.options import DataOptions


def add_dataset_args(parser: argparse.ArgumentParser, image_size: bool = True) -> None:
    """The data options (:class:`~cephalo.preprocessing.options.DataOptions`, the ones ``cephalo train`` has), with
    ``--image_size`` where the command caches images."""
    names = [f.name for f in option_fields(DataOptions) if image_size or f.name != "image_size"]
    add_flags(parser.add_argument_group("dataset"), DataOptions, names)


def data_options(args: argparse.Namespace) -> DataOptions:
    names = [f.name for f in option_fields(DataOptions) if hasattr(args, f.name)]
    return DataOptions(**values_from(args, DataOptions, names))


def check_split(spec: DatasetSpec, split: str) -> str:
    if split not in SPLITS[spec.resolved_format]:
        raise ValueError(f"--split {split}: the {spec.resolved_format} format has splits {', '.join(SPLITS[spec.resolved_format])}")
    return split


def print_duplicates(duplicates: list[list[Path]]) -> None:
    if duplicates:
        print(f"warning: {len(duplicates)} group(s) of byte-identical images (check for leaks across splits):",
              file=sys.stderr)
        for group in duplicates:
            print("  - " + "  ==  ".join(str(p) for p in group), file=sys.stderr)


def run_reporting_errors(action: Callable[[], int], on_interrupt: str) -> int:
    """Run a command; bad input the user can fix (ValueError, FileNotFoundError) becomes one ``error:`` line and
    exit code 2, because a traceback would bury the message that names the file and the remedy.
    ``CEPHALO_DEBUG=1`` shows the traceback instead."""
    try:
        return action()
    except (ValueError, FileNotFoundError) as e:
        if os.environ.get("CEPHALO_DEBUG"):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(on_interrupt, file=sys.stderr)
        return 130
