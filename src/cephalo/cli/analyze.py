"""``cephalo analyze``: cephalometric measurements (SNA, SNB, ANB, FH_MP, ...) and the ISBI 2015 classes of every image.

INPUT is a landmarks CSV (a dataset's ground truth or a predictions.csv), one image's JSON from ``cephalo predict``,
a ``cephalo predict`` output folder, or a dataset (Aariz, ISBI 2015, CSV). Writes to --out: measurements.csv (one row per image: ``image``, one column per
measurement in degrees, mm or a ratio, then ``<measure>_class`` for the ISBI measures; empty where unavailable)
and analysis.json (the definitions, norms and sources used, and what could not be computed and why).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cephalo.analysis.analyze import Analysis, analyze, parse_mapping
from cephalo.analysis.classes import ISBI_CLASSES
from cephalo.atomic import write_text
from cephalo.checks import existing_path, writable_folder
from cephalo.cli.common import add_dataset_args, check_split, data_options
from cephalo.datasets.sources import DEFAULT_EVAL_SPLIT, load_records
from cephalo.evaluation.predictions import landmark_table_from_json, read_json, read_landmark_table
from cephalo.flags import Typed
from cephalo.image_io import ImageReadError, read_grey
from cephalo.inference.inputs import InputImage
from cephalo.inference.outputs import output_stems
from cephalo.visualize.patient_page import page_input, write_index, write_page


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("analyze", help="cephalometric measurements and ISBI classes of every image",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", type=Typed(Path, existing_path), metavar="INPUT",
                   help="landmarks CSV, one image's JSON from cephalo predict, a cephalo predict output folder, or a "
                        "dataset folder")
    p.add_argument("--out", type=Typed(Path, writable_folder), required=True, help="output folder (created)")
    p.add_argument("--split", help="dataset split to analyze (default: " + ", ".join(
        f"{k} {v}" for k, v in DEFAULT_EVAL_SPLIT.items()) + ")")
    p.add_argument("--landmark_map", default="", metavar="NAME=TABLE,...",
                   help="names of this landmark set in the table's names (S, N, Or, Po, A, B, Pog, Me, Gn, Go, Ar, "
                        "PNS, ANS, UIT, LIT, UIA, LIA), e.g. Sella=S,Nasion=N")
    p.add_argument("--report", type=Typed(Path, writable_folder), metavar="DIR",
                   help="also one printable page per image in DIR (tracing where the image file is found, each "
                        "analysis with norms and deviations, a skeletal summary) and an index.html: for landmarks "
                        "corrected by hand")
    add_dataset_args(p, image_size=False, dataset_path=False)
    p.set_defaults(run=run)


@dataclass
class Landmarks:
    """What ``cephalo analyze`` reads: ``landmarks (N, K, 2)`` named ``names``, each image's key, spacing, where
    that spacing came from and where the image file is (for the report's tracing; None where unknown)."""

    images: list[str]
    landmarks: np.ndarray
    names: tuple[str, ...]
    spacing_mm: list
    spacing_source: list[str]
    image_paths: list[Path | None]
    what: str


def read_input(args: argparse.Namespace) -> Landmarks:
    """The landmarks of INPUT: a landmarks CSV, a predict JSON, a predict folder or a dataset."""
    path = args.input
    if path.is_dir() and (path / "predictions.csv").is_file():
        paths = _predicted_image_paths(path)  # a cephalo predict output folder: its run.json knows the images
        table = read_landmark_table(path / "predictions.csv")
        return Landmarks(table.images, table.landmarks, table.names, table.spacing_mm,
                         [paths.get(i, ("", "predictions.csv"))[1] for i in table.images],
                         [paths.get(i, (None, ""))[0] for i in table.images],
                         f"{path / 'predictions.csv'} ({len(table.images)} rows)")
    if path.is_file() and path.suffix.lower() == ".json":
        content = read_json(path)
        table = landmark_table_from_json(content, path)
        image = Path(table.images[0])
        return Landmarks(table.images, table.landmarks, table.names, table.spacing_mm,
                         [content.get("spacing_source") or "the JSON"], [image], f"{path} (one image)")
    if path.is_file():
        table = read_landmark_table(path)
        return Landmarks(table.images, table.landmarks, table.names, table.spacing_mm,
                         ["the CSV"] * len(table.images), [path.parent / i for i in table.images],
                         f"{path} ({len(table.images)} rows)")
    spec = dataclasses.replace(data_options(args), dataset_path=str(path)).dataset_spec()
    fmt = spec.resolved_format
    split = check_split(spec, args.split or DEFAULT_EVAL_SPLIT[fmt])
    records = load_records(spec, split, on_bad="skip" if args.skip_bad else "error")
    landmarks = np.stack([r.landmarks for r in records])
    return Landmarks([r.case_id for r in records], landmarks, records[0].landmark_names,
                     [r.spacing_mm for r in records], ["dataset"] * len(records), [r.image_path for r in records],
                     f"{fmt} dataset {path}, split {split} ({len(records)} images)")


def _predicted_image_paths(folder: Path) -> dict[str, tuple[Path, str]]:
    """key -> (image path, spacing source) from a predict folder's run.json ({} where it has none)."""
    try:
        record = json.loads((folder / "run.json").read_text(encoding="utf-8"))
        return {e["image"]: (Path(e["path"]), e.get("spacing_source") or "") for e in record["images"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def write_pages(folder: Path, read: Landmarks) -> int:
    """One patient page per image and an index (the tracing where the image file can be read)."""
    entries = []
    stems = output_stems([InputImage(path=Path(key), key=key) for key in read.images])
    for i, (key, stem) in enumerate(zip(read.images, stems)):
        image, note = None, ""
        path = read.image_paths[i]
        if path is None:
            note = "the image file is not known (no run.json beside predictions.csv)"
        else:
            try:
                image = read_grey(path)
            except ImageReadError as e:
                note = str(e)
        page = page_input(key, read.landmarks[i], read.names, read.spacing_mm[i], read.spacing_source[i] or "given",
                          image=image, image_note=note, extra=[("landmarks from", read.what)])
        entries.append(write_page(folder, stem, page))
    write_index(folder, entries, f"cephalo analyze: {read.what}")
    return len(entries)


def measurements_csv(images: list[str], result: Analysis) -> str:
    """One row per image: the values (rounded: 2 decimals, a ratio 3), each against its clinical norm in words,
    and the ISBI classes as codes and in words (:meth:`Analysis.row`)."""
    columns = result.columns()
    decimals = {m.name: 3 if m.unit == "ratio" else 2 for m in result.measurements}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image", *columns])
    for i, image in enumerate(images):
        row = result.row(i)
        writer.writerow([image, *("" if row[c] is None else f"{row[c]:.{decimals[c]}f}" if isinstance(row[c], float)
                                  else row[c] for c in columns)])
    return buffer.getvalue()


def summary(result: Analysis) -> list[str]:
    lines = [f"{'measurement':<13} {'unit':>5} {'images':>6} {'mean ± SD':>17}  {'within norm':>11}  norm (source)"]
    for m in result.available():
        v = result.values[m.name]
        v = v[np.isfinite(v)]
        within = m.within
        share = f"{((v >= within[0]) & (v <= within[1])).mean() * 100:10.0f}%" if within and v.size else " " * 11
        lines.append(f"{m.name:<13} {m.unit:>5} {v.size:>6} {v.mean():>8.2f} ± {v.std():<6.2f}  {share}  "
                     f"{m.norm_text} ({m.source.split(' (')[0]})")
    for name, classes in result.classes.items():
        counts = np.bincount(classes, minlength=5)
        names = ISBI_CLASSES[name].names
        lines.append(f"{name}_class: " + ", ".join(f"{c} {names[c]} {counts[c]}" for c in sorted(names)))
    lines += [f"{name}: unavailable ({why})" for name, why in result.unavailable.items()]
    return lines


def run(args: argparse.Namespace) -> int:
    read = read_input(args)
    images, what = read.images, read.what
    if not images:
        raise ValueError(f"{args.input}: no images to analyze")
    result = analyze(read.landmarks, read.names, read.spacing_mm, parse_mapping(args.landmark_map))
    args.out.mkdir(parents=True, exist_ok=True)
    write_text(args.out / "measurements.csv", measurements_csv(images, result))
    definitions = [{"name": m.name, "title": m.title, "unit": m.unit, "landmarks": list(m.landmarks),
                    "reading": m.reading, "norm": m.norm_text, "source": m.source} for m in result.measurements]
    write_text(args.out / "analysis.json", json.dumps({"input": what, "measurements": definitions,
                                                       "unavailable": result.unavailable,
                                                       "isbi_classes": {n: c.names for n, c in ISBI_CLASSES.items()},
                                                       "images": [dict(image=image, **result.row(i))
                                                                  for i, image in enumerate(images)]}, indent=2))
    print(f"analyzed {what}")
    print("\n".join(summary(result)))
    if result.missing_spacing is not None and result.missing_spacing.any() and "IncisalTipDistance" not in result.unavailable:
        print(f"note: {int(result.missing_spacing.sum())} image(s) without a pixel spacing: their mm measurements "
              "are empty")
    print(f"wrote {args.out / 'measurements.csv'} and {args.out / 'analysis.json'}")
    if args.report is not None:
        pages = write_pages(args.report, read)
        print(f"report pages: {args.report / 'index.html'} ({pages} page(s))")
    return 0
