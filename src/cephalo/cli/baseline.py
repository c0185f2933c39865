"""``cephalo baseline``: the mean-shape predictor, a floor every trained model must beat by far."""

from __future__ import annotations

import argparse
from pathlib import Path

from cephalo.checks import writable_file
from cephalo.cli.common import add_dataset_args, check_split, data_options
from cephalo.datasets.csv_dataset import write_landmarks_csv
from cephalo.datasets.sources import DEFAULT_EVAL_SPLIT
from cephalo.evaluation.mean_shape import fit_mean_shape, predict_mean_shape
from cephalo.flags import Typed
from cephalo.preprocessing.prepare import prepare_splits


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("baseline", help="predict the training set's mean landmark layout (a reference floor)",
                              description=__doc__)
    add_dataset_args(p)
    p.add_argument("--train_split", default="train", help="split the mean shape is fitted on (default train)")
    p.add_argument("--split", help="split to predict (default: test; test1 for ISBI; valid of a CSV)")
    p.add_argument("--out", type=Typed(Path, writable_file), required=True, help="predictions CSV to write")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    options = data_options(args)
    spec = options.dataset_spec()
    fmt = spec.resolved_format
    train_split = check_split(spec, args.train_split)
    split = check_split(spec, args.split or ("valid" if fmt == "csv" else DEFAULT_EVAL_SPLIT[fmt]))
    results = prepare_splits(spec, [train_split, split], options.letterbox_cache(), args.skip_bad)
    train, target = results[train_split], results[split]
    mean_shape = fit_mean_shape(train.records, train.entries)
    predicted = predict_mean_shape(mean_shape, target.entries)
    write_landmarks_csv(args.out, [r.case_id for r in target.records], predicted,
                        [r.spacing_mm for r in target.records], target.records[0].landmark_names)
    print(f"mean shape of {len(train.records)} {train_split} images -> {len(target.records)} {split} predictions: {args.out}")
    return 0
