"""``cephalo prepare``: decode and letterbox every image once into the cache, checking the data on the way."""

from __future__ import annotations

import argparse

from cephalo.cli.common import add_dataset_args, data_options, print_duplicates
from cephalo.datasets.sources import SPLITS
from cephalo.preprocessing.cache import find_duplicates
from cephalo.preprocessing.prepare import prepare_splits


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("prepare", help="letterbox and cache a dataset's images (checks every file)",
                              description=__doc__)
    add_dataset_args(p)
    p.add_argument("--splits", nargs="+", help="splits to prepare (default: every split of the format; every row "
                                               "of a CSV)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    options = data_options(args)
    spec = options.dataset_spec()
    fmt = spec.resolved_format
    # a CSV's rows once (its drawn valid/test splits may be empty); the other formats split by folder
    splits = args.splits or (["all"] if fmt == "csv" else [s for s in SPLITS[fmt] if s != "all"])
    cache = options.letterbox_cache()
    results = prepare_splits(spec, splits, cache, args.skip_bad)
    for split, r in results.items():
        skipped = f", {len(r.issues)} skipped" if r.issues else ""
        print(f"{split:>6}: {len(r.records)} images ({r.decoded} decoded, {r.reused} already cached{skipped}) "
              f"in {r.seconds:.1f} s")
    records = [rec for r in results.values() for rec in r.records]
    entries = [e for r in results.values() for e in r.entries]
    print_duplicates(find_duplicates(records, entries))
    print(f"cache: {cache.folder}")
    return 0
