"""Arguments and steps shared by the subcommands (flag spellings follow the user's: underscores)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cephalo.datasets.sources import DatasetSpec, available_splits
from cephalo.flags import add_flags, option_fields, values_from
from cephalo.preprocessing.options import DataOptions


def add_dataset_args(parser: argparse.ArgumentParser, image_size: bool = True, dataset_path: bool = True,
                     defaults: dict | None = None) -> None:
    """The data options (:class:`~cephalo.preprocessing.options.DataOptions`, the ones ``cephalo train`` has), with
    ``--image_size`` where the command caches images (and without ``--dataset_path`` where INPUT names it);
    ``defaults`` replaces some defaults for this command."""
    left_out = {"image_size"} - ({"image_size"} if image_size else set()) | (set() if dataset_path else {"dataset_path"})
    names = [f.name for f in option_fields(DataOptions) if f.name not in left_out]
    add_flags(parser.add_argument_group("dataset"), DataOptions, names, defaults)


def data_options(args: argparse.Namespace) -> DataOptions:
    names = [f.name for f in option_fields(DataOptions) if hasattr(args, f.name)]
    return DataOptions(**values_from(args, DataOptions, names))


def check_split(spec: DatasetSpec, split: str) -> str:
    splits = available_splits(spec)
    if split not in splits:
        raise ValueError(f"--split {split}: the {spec.resolved_format} format has splits {', '.join(splits)}")
    return split


def print_duplicates(duplicates: list[list[Path]]) -> None:
    if duplicates:
        print(f"warning: {len(duplicates)} group(s) of byte-identical images (check for leaks across splits):",
              file=sys.stderr)
        for group in duplicates:
            print("  - " + "  ==  ".join(str(p) for p in group), file=sys.stderr)
