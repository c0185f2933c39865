"""``cephalo evaluate``: score a predictions CSV against a dataset split (MRE, SD, SDR per landmark)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cephalo.analysis.analyze import parse_mapping
from cephalo.atomic import write_text
from cephalo.checks import at_least, existing_file, writable_file, writable_folder
from cephalo.cli.common import add_dataset_args, check_split, data_options
from cephalo.datasets.sources import DEFAULT_EVAL_SPLIT, load_records
from cephalo.evaluation.analysis import compare_measurements, format_comparison
from cephalo.evaluation.evaluate import score_predictions
from cephalo.evaluation.predictions import read_landmark_table
from cephalo.flags import Typed
from cephalo.inference.provenance import read_run_record
from cephalo.metrics import format_report


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="score predictions (CSV) against ground truth", description=__doc__)
    add_dataset_args(p, image_size=False, defaults={"dataset_path": None})  # never scored against synthetic unasked
    p.add_argument("--split", help="split to score (default: test; test1 for ISBI; all rows of a CSV)")
    p.add_argument("--predictions", type=Typed(Path, existing_file), required=True,
                   help="CSV in the dataset layout: image,spacing_mm,<name>_x,<name>_y,... in original pixels")
    p.add_argument("--output", type=Typed(Path, writable_file),
                   help="JSON report (default: next to the predictions, *.eval.json)")
    p.add_argument("--allow_missing", action="store_true", help="score only the images that have a prediction")
    p.add_argument("--report", type=Typed(Path, writable_folder), metavar="DIR",
                   help="also write a report folder: report.html with tables, plots (needs matplotlib) and the "
                        "worst images drawn, per_landmark.csv/.md, per_image.csv, report.json")
    p.add_argument("--analysis", action="store_true",
                   help="also the cephalometric measurements: their errors, and the ISBI 2015 classification "
                        "success rates with confusion matrices (in the printout, the JSON and the report)")
    p.add_argument("--landmark_map", default="", metavar="NAME=TABLE,...",
                   help="--analysis: this landmark set's names in the measurement table's (see cephalo analyze)")
    p.add_argument("--worst", type=Typed(int, at_least(0)), default=6, metavar="N",
                   help="--report: how many of the images with the highest MRE to draw (default 6)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.dataset_path is None:
        raise ValueError("cephalo evaluate needs --dataset_path: the dataset (folder or CSV) whose ground truth "
                         f"scores {args.predictions} ('synthetic' for the built-in synthetic set)")
    options = data_options(args)
    spec = options.dataset_spec()
    split = check_split(spec, args.split or DEFAULT_EVAL_SPLIT[spec.resolved_format])
    records = load_records(spec, split, on_bad="skip" if args.skip_bad else "error")
    table = read_landmark_table(args.predictions)
    evaluation = score_predictions(records, table.names, dict(zip(table.images, table.landmarks)),
                                   allow_missing=args.allow_missing,
                                   spacing_mm=dict(zip(table.images, table.spacing_mm)))
    report = evaluation.report
    if report["spacing_mismatch"]:
        first = report["spacing_mismatch"][0]
        print(f"warning: {args.predictions}: {len(report['spacing_mismatch'])} image(s) were predicted with another "
              f"pixel spacing than the dataset's (e.g. {first['image']}: {first['predictions_mm']:g} mm against "
              f"{first['dataset_mm']:g}); scored in the dataset's spacing (the landmarks are in pixels), so these "
              "scores hold, but mm figures the predictions came with (analysis, reports) are off for them; all are "
              "listed in the report's spacing_mismatch", file=sys.stderr)
    report.update(dataset=str(spec.path), split=split, predictions=str(args.predictions))
    if (run := read_run_record(args.predictions.parent)) is not None:  # where the predictions came from
        report["prediction_run"] = {k: run.get(k) for k in ("cephalo", "created", "command", "model", "tta")}
    print(format_report(report))
    if args.analysis:
        spacing = [records[i].spacing_mm for i in evaluation.record_indices]
        report["analysis"] = compare_measurements(evaluation.predicted, evaluation.target, records[0].landmark_names,
                                                  spacing, parse_mapping(args.landmark_map))
        print()
        print(format_comparison(report["analysis"]))
    print(f"{report['images']} images x {len(records[0].landmark_names)} landmarks"
          + (f"; {len(report['missing'])} without prediction" if report["missing"] else ""))
    output = args.output or args.predictions.with_suffix(".eval.json")
    write_text(output, json.dumps(report, indent=2))
    print(f"report: {output}")
    if args.report is not None:
        from cephalo.evaluation.report import write_report

        written = write_report(args.report, evaluation, records, worst=args.worst)
        print(f"report page: {written.html} ({len(written.files)} files"
              + (f", {len(written.warnings)} warning(s)" if written.warnings else "") + ")")
    return 0
