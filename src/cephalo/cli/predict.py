"""``cephalo predict``: landmarks for new cephalograms from a trained checkpoint (or an exported ONNX model).

INPUT is any mix of image files, folders of images and datasets (Aariz, ISBI 2015 or CSV: their ground truth and
pixel spacing come along). Writes to --out: predictions.csv (the CSV dataset layout, original pixels, scored by
``cephalo evaluate``), one <stem>.json per image (coordinates, confidences, mm when the spacing is known) and, with
--overlay, <stem>_overlay.jpg. Unreadable images are listed and skipped; the exit code is then 1.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from cephalo.checks import above, at_least, device_name, existing_file, writable_folder
from cephalo.datasets.sources import DEFAULT_EVAL_SPLIT, FORMATS
from cephalo.flags import Typed, add_flags, values_from
from cephalo.inference.inputs import resolve_inputs
from cephalo.inference.loading import load_predictor
from cephalo.inference.outputs import CSV_NAME, predict_to_folder
from cephalo.inference.provenance import clear_earlier_outputs, earlier_outputs, model_record, tta_record
from cephalo.inference.tta import TestTimeAugmentation
from cephalo.preprocessing.options import DataOptions

SPLIT_OPTIONS = ("seed", "val_fraction", "test_fraction", "fold", "test_fold")
# the settings measured best by 5-fold CV (benchmarks/tta_cv.md)
TTA_SHIFT_HEATMAP_PX, TTA_SCALES = 0.5, (0.95, 1.05)  # one-stage models: 7 views of the global stage
TTA_LOCAL_MM = 0.5  # two-stage models: the local stage also starts 0.5 mm left, right, up and down


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("predict", help="predict landmarks on images, folders or a dataset", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image file, folder of images, or dataset (Aariz/ISBI 2015 folder, CSV file or its folder)")
    p.add_argument("--checkpoint", type=Typed(Path, existing_file), required=True,
                   help="best.pt / last.pt from cephalo train, or an .onnx from cephalo export (holds everything needed)")
    p.add_argument("--out", type=Typed(Path, writable_folder), required=True,
                   help="output folder: created, or empty (a folder that holds files is refused: --overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="--out holds an earlier prediction: remove what that run wrote (the files its run.json "
                        "lists) before writing; other files are kept")
    p.add_argument("--overlay", action="store_true", help="also write <stem>_overlay.jpg with the landmarks drawn")
    p.add_argument("--overlay_analysis", action="store_true",
                   help="overlays (implies --overlay) also draw the analysis lines: S-N, FH, the mandibular and "
                        "palatal planes, N-Pog, A-B, and the incisor axes where the landmark set has the incisor "
                        "apices (Aariz does, the 19 ISBI landmarks do not: the overlay says which lines it left out)")
    p.add_argument("--overlay_values", action="store_true",
                   help="overlays (implies --overlay) also carry a panel of the measurements and their verdicts "
                        "against the norms")
    p.add_argument("--report", action="store_true",
                   help="also one printable page per image in --out/report/ (tracing, each analysis with its norms "
                        "and deviations, a skeletal summary, points to check) and an index.html")
    p.add_argument("--batch_size", type=Typed(int, at_least(1)), default=4, help="images per forward pass (default 4)")
    p.add_argument("--num_workers", type=Typed(int, at_least(0)), default=2,
                   help="DataLoader workers reading images (default 2)")
    p.add_argument("--device", type=Typed(str, device_name), default="auto",
                   help="auto|cpu|cuda|cuda:N (default: CUDA when there is one)")
    p.add_argument("--no_mixed_precision", dest="mixed_precision", action="store_false",
                   help="fp32 instead of autocast (fp16 on CUDA, bf16 on CPU)")
    p.add_argument("--tta", action="store_true",
                   help="test-time augmentation, landmarks averaged in the image's pixels: a one-stage model sees 7 "
                        "views of each image (shifts of half a heatmap pixel, scales 0.95 and 1.05), a two-stage "
                        "model's local stage also starts 0.5 mm left, right, up and down; about 3-5x the time "
                        "(5-fold CV on ISBI 2015: lower or equal MRE on every fold)")
    p.add_argument("--spacing_mm", type=Typed(float, above(0)),
                   help="pixel spacing (mm per pixel) of images whose spacing no dataset gives (it wins over a DICOM "
                        "header's): adds mm to the JSON and the mm measurements")
    p.add_argument("--dataset_format", choices=FORMATS, help="read folder/CSV inputs as this dataset layout (default: detected)")
    p.add_argument("--split", help="dataset split to predict (default: " + ", ".join(f"{k} {v}" for k, v in DEFAULT_EVAL_SPLIT.items()) + ")")
    p.add_argument("--recursive", action="store_true", help="look for images in subfolders of folder inputs too")
    add_flags(p.add_argument_group("how a dataset's splits and folds are drawn (give what cephalo train was given)"),
              DataOptions, SPLIT_OPTIONS)
    p.add_argument("--no_progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(run=run)


def evaluate_command(args: argparse.Namespace, items) -> str | None:
    """The ``cephalo evaluate`` command that scores this run's predictions.csv against the one dataset split its
    ground truth came from (with the split options it was drawn with), or None where there is not exactly one."""
    datasets = {item.dataset for item in items if item.dataset is not None}
    if len(datasets) != 1:
        return None
    (path, fmt, split), = datasets
    words = ["cephalo", "evaluate", "--predictions", str(args.out / CSV_NAME), "--dataset_path", path,
             "--split", split]
    if args.dataset_format:
        words += ["--dataset_format", fmt]
    defaults = DataOptions()
    for name in SPLIT_OPTIONS:
        if (value := getattr(args, name)) != getattr(defaults, name):
            words += [f"--{name}", str(value)]
    return shlex.join(words)


def clear_out(args: argparse.Namespace) -> None:
    """Refuse a ``--out`` that holds files (the new outputs would mix with them), or with ``--overwrite`` remove
    what an earlier predict wrote there."""
    if not (earlier := earlier_outputs(args.out)):
        return
    if not args.overwrite:
        raise ValueError(f"--out {args.out} is not empty ({len(earlier)} entries, e.g. {earlier[0].name}): the new "
                         "outputs would mix with them. Give a new folder, or --overwrite to remove what an earlier "
                         "cephalo predict wrote there (other files are kept)")
    removed, kept = clear_earlier_outputs(args.out)
    print(f"--overwrite: removed {len(removed)} file(s) of an earlier prediction from {args.out}"
          + (f"; kept {len(kept)} other entr{'y' if len(kept) == 1 else 'ies'} ({kept[0].name}"
             + (", ..." if len(kept) > 1 else "") + ")" if kept else ""))


def run(args: argparse.Namespace) -> int:
    clear_out(args)
    predictor = load_predictor(args.checkpoint, args.device, args.mixed_precision)
    if args.tta:  # what was measured for each kind of model: a one-stage model's views, a two-stage one's starts
        two_stage = getattr(predictor, "local_spec", None) is not None
        predictor.tta = (TestTimeAugmentation.standard(predictor.spec.stride, 0.0, local_offset_mm=TTA_LOCAL_MM)
                         if two_stage else
                         TestTimeAugmentation.standard(predictor.spec.stride, TTA_SHIFT_HEATMAP_PX, TTA_SCALES))
    items, issues, notes = resolve_inputs(args.inputs, args.dataset_format, args.split, args.recursive,
                                          exclude=args.out.resolve(),
                                          data=DataOptions(**values_from(args, DataOptions, SPLIT_OPTIONS)))
    if not items:
        listed = "".join(f"\n  - {issue}" for issue in issues)
        raise ValueError(f"no input images in {' '.join(args.inputs)}{listed}")
    for note in notes:
        print(note)
    (h, w), names = predictor.image_size, predictor.landmark_names
    where = " on ".join(str(x) for x in (getattr(predictor, "precision", None), getattr(predictor, "device", None)) if x)
    local = getattr(predictor, "local_spec", None)
    print(f"model: {args.checkpoint} ({predictor.spec.model_name}, {len(names)} landmarks, input {h}x{w}"
          + (f", {where}" if where else "") + ")"
          + (f"; local stage {local.model_name} on {local.image_size[0]} px patches at {local.mm_per_px:g} mm/px"
             if local is not None else "")
          + (f"; test-time augmentation: {len(predictor.tta.views)} global view(s), "
             f"{len(predictor.tta.local_offsets_mm)} local start(s)" if args.tta else ""))
    print(f"predicting {len(items)} image(s) -> {args.out}")
    overlay = args.overlay or args.overlay_analysis or args.overlay_values
    summary = predict_to_folder(predictor, items, args.out, overlay=overlay, analysis_lines=args.overlay_analysis,
                                batch_size=args.batch_size,
                                num_workers=args.num_workers, progress=args.progress, spacing_mm=args.spacing_mm,
                                failures=issues, report=args.report, overlay_values=args.overlay_values,
                                provenance={"command": getattr(args, "argv", None),
                                                             "model": model_record(args.checkpoint, predictor),
                                                             "tta": tta_record(predictor)})
    n, failed = len(summary.predicted), len(summary.failures)
    if n:
        outputs = f"{CSV_NAME}, {n} JSON" + (f", {summary.overlays} overlays" if overlay else "") + ", run.json"
        print(f"wrote {outputs} in {args.out}")
        if args.report:
            print(f"report pages: {args.out / 'report' / 'index.html'} ({summary.pages} page(s))")
        print(f"{n} images in {summary.seconds:.1f} s: {summary.images_per_s:.2f} images/s "
              f"(model {n / max(summary.model_seconds, 1e-9):.2f} images/s; batch {args.batch_size}, "
              f"{args.num_workers} workers)")
    if summary.mre_mm is not None:
        print(f"against the dataset's ground truth ({summary.truth_images} images): MRE {summary.mre_mm:.2f} mm"
              + ("; the full table: " + command if (command := evaluate_command(args, items)) else ""))
    print(f"{n} images predicted, {failed} failed")
    if failed:
        print("failed:", file=sys.stderr)
        for issue in summary.failures:
            print(f"  - {issue}", file=sys.stderr)
        return 1
    return 0
