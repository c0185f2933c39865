"""Arguments and steps shared by the subcommands (flag spellings follow the user's: underscores)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from cephalo.datasets.sources import FORMATS, SPLITS, DatasetSpec, default_cache_dir
from cephalo.preprocessing.cache import LetterboxCache


def add_dataset_args(parser: argparse.ArgumentParser, image_size: bool = True) -> None:
    g = parser.add_argument_group("dataset")
    g.add_argument("--dataset_path", default="synthetic",
                   help="dataset folder (Aariz or ISBI 2015 layout), a CSV file, or 'synthetic' (default: built-in)")
    g.add_argument("--dataset_format", choices=FORMATS, help="the layout of --dataset_path (default: detected)")
    g.add_argument("--seed", type=int, default=0, help="seed of the CSV split and of the synthetic dataset")
    g.add_argument("--val_fraction", type=float, default=0.2, help="CSV without a split column: share for 'valid'")
    g.add_argument("--test_fraction", type=float, default=0.0, help="CSV without a split column: share for 'test'")
    g.add_argument("--skip_bad", action="store_true",
                   help="leave out bad images/annotations with a warning instead of stopping")
    g.add_argument("--cache_dir", type=Path, default=None,
                   help=f"where letterboxed images are cached (default: $CEPHALO_CACHE or {default_cache_dir()})")
    if image_size:
        g.add_argument("--image_size", type=int, nargs=2, default=[1024, 1024], metavar=("H", "W"),
                       help="letterboxed network input size (default 1024 1024)")


def dataset_spec(args: argparse.Namespace) -> DatasetSpec:
    return DatasetSpec(path=str(args.dataset_path), format=args.dataset_format, seed=args.seed,
                       val_fraction=args.val_fraction, test_fraction=args.test_fraction, cache_dir=args.cache_dir)


def check_split(spec: DatasetSpec, split: str) -> str:
    if split not in SPLITS[spec.resolved_format]:
        raise ValueError(f"--split {split}: the {spec.resolved_format} format has splits {', '.join(SPLITS[spec.resolved_format])}")
    return split


def cache_for(args: argparse.Namespace) -> LetterboxCache:
    return LetterboxCache(args.cache_dir or default_cache_dir(), tuple(args.image_size))


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
