"""``cephalo prepare``: decode and letterbox every image once into the cache, checking the data on the way."""

from __future__ import annotations

import argparse

from cephalo.cli.common import add_dataset_args, cache_for, dataset_spec, print_duplicates
from cephalo.datasets.sources import SPLITS
from cephalo.preprocessing.cache import find_duplicates
from cephalo.preprocessing.prepare import prepare_splits


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("prepare", help="letterbox and cache a dataset's images (checks every file)",
                              description=__doc__)
    add_dataset_args(p)
    p.add_argument("--splits", nargs="+", help="splits to prepare (default: all of the format's splits)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    spec = dataset_spec(args)
    fmt = spec.resolved_format
    splits = args.splits or [s for s in SPLITS[fmt] if s != "all"]
    cache = cache_for(args)
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
