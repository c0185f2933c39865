"""``cephalo calibrate``: store with a model how wrong each of its landmarks is likely to be.

Fits the expected radial error of each landmark from its heatmap peak (``cephalo.artifact.calibration``) on
predictions of images the models never trained or selected on -- the fold folders of a cross-validation, each
predicted by the model that held it out -- scored against the dataset's ground truth, and writes the calibration
into the checkpoint (in place, atomically, or to --out). From then on ``cephalo predict`` gives each landmark an
``expected_error_mm``, flags the points above the threshold for checking (JSON, checks.csv, overlay, report
page) and names the measurements whose class could change within those errors.

    cephalo calibrate --checkpoint runs/final/best.pt --dataset_path data.csv \\
        --predictions cv/fold-1/predictions cv/fold-2/predictions ... cv/fold-5/predictions

Calibrating on a run's own validation images flatters it (it chose its best epoch on them): use held-out images.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from cephalo.artifact.calibration import fit_calibration
from cephalo.artifact.checkpoint import read_checkpoint
from cephalo.checks import between, existing_file, existing_path, writable_file
from cephalo.cli.common import add_dataset_args, check_split, data_options
from cephalo.datasets.sources import DEFAULT_EVAL_SPLIT, load_records
from cephalo.evaluation.predictions import match_predictions, read_predicted_folder
from cephalo.flags import Typed


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("calibrate", help="store with a model how wrong each landmark is likely to be",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Typed(Path, existing_file), required=True,
                   help="the model to calibrate (best.pt; written back in place unless --out)")
    p.add_argument("--predictions", type=Typed(Path, existing_path), nargs="+", required=True, metavar="DIR",
                   help="cephalo predict output folders of held-out images (the folds of a cross-validation)")
    p.add_argument("--out", type=Typed(Path, writable_file), help="write the calibrated checkpoint here instead")
    p.add_argument("--split", help="dataset split whose ground truth scores them (default: test; test1 for ISBI; "
                                   "all rows of a CSV)")
    p.add_argument("--flag_share", type=Typed(float, between(0.01, 0.5)), default=0.15,
                   help="share of the calibration points whose expected error is flagged (default 0.15)")
    add_dataset_args(p, image_size=False, defaults={"dataset_path": None})
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.dataset_path is None:
        raise ValueError("cephalo calibrate needs --dataset_path: the dataset whose ground truth scores the "
                         "predictions")
    checkpoint = read_checkpoint(args.checkpoint)
    names = tuple(checkpoint.stage().spec.landmark_names)
    spec = data_options(args).dataset_spec()
    split = check_split(spec, args.split or DEFAULT_EVAL_SPLIT[spec.resolved_format])
    records = load_records(spec, split, on_bad="skip" if args.skip_bad else "error")
    truth_index = {n: k for k, n in enumerate(records[0].landmark_names)}
    missing = [n for n in names if n not in truth_index]
    if missing:
        raise ValueError(f"{spec.path}: the dataset lacks the model's landmark(s) {', '.join(missing)}")
    peaks, errors, seen = [], [], set()
    for folder in args.predictions:
        predicted = read_predicted_folder(folder)
        if predicted.names != names:
            raise ValueError(f"{folder}: predicted the landmarks {', '.join(predicted.names)}; {args.checkpoint} "
                             f"predicts {', '.join(names)}")
        indices, keys, unmatched = match_predictions(records, predicted.landmarks)
        if unmatched:
            raise ValueError(f"{folder}: {len(unmatched)} image(s) are not in {spec.path} split {split} (e.g. "
                             f"{unmatched[0]}); give the split they come from (--split)")
        for index, key in zip(indices, keys):
            if index in seen:
                raise ValueError(f"{folder}: {records[index].case_id} is predicted twice among the folders: "
                                 "each image once, by the model that held it out")
            seen.add(index)
            record = records[index]
            truth = np.asarray(record.landmarks, np.float64)[[truth_index[n] for n in names]]
            errors.append(np.linalg.norm(predicted.landmarks[key] - truth, axis=1) * record.spacing_mm)
            peaks.append(predicted.peaks[key])
    source = (f"{len(errors)} held-out images of {len(args.predictions)} prediction folder(s), scored against "
              f"{spec.path} ({split})")
    calibration = fit_calibration(np.stack(peaks), np.stack(errors), names, source, args.flag_share)
    out = args.out or args.checkpoint
    checkpoint.with_calibration(calibration).save(out)
    error = np.stack(errors)
    expected = calibration.expected_error_mm(np.stack(peaks))
    worst = error >= np.quantile(error, 0.95)
    flagged = expected > calibration.threshold_mm
    print(f"calibrated on {calibration.points} points ({source})")
    print(f"expected error = exp(level[landmark] + {calibration.slope:.3f} x peak); points above "
          f"{calibration.threshold_mm:.2f} mm are flagged: {flagged.mean() * 100:.1f} % of these points, catching "
          f"{flagged[worst].mean() * 100:.0f} % of their worst 5 % (fitted on them; on held-out ISBI folds the "
          "same flags caught about half of the worst 5 %)")
    print(f"wrote {out}")
    return 0
