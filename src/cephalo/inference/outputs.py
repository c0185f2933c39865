"""What ``cephalo predict`` writes: the batched loop of :mod:`cephalo.inference.predict` plus its outputs.

:func:`predict_to_folder` writes ``predictions.csv`` (the CSV dataset layout, original pixels, which
``cephalo evaluate`` scores), one ``<stem>.json`` per image and, on request, ``<stem>_overlay.jpg`` (drawn in
background threads while the model runs).
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePath

import numpy as np

from cephalo.analysis.analyze import analyze
from cephalo.analysis.uncertainty import unstable_readings
from cephalo.artifact.calibration import ErrorCalibration
from cephalo.atomic import write_text
from cephalo.datasets.csv_dataset import write_landmarks_csv
from cephalo.datasets.issues import DataIssue
from cephalo.dicom import (
    INSTALL_HINT,
    header_spacing_mm,
    is_dicom_file,
    pydicom_available,
    spacings_differ,
    warn_stderr,
)
from cephalo.image_io import write_image
from cephalo.inference.inputs import InputImage, aligned_truth
from cephalo.inference.predict import (
    ImageFailure,
    ImageResult,
    LoopStats,
    iter_predictions,
)
from cephalo.inference.predictor import Predictor
from cephalo.inference.provenance import run_record, write_run_record
from cephalo.visualize.patient_page import page_input, write_index, write_page

CSV_NAME = "predictions.csv"
REPORT_FOLDER = "report"  # predict --report: <stem>.html per image and index.html
CHECKS_NAME = "checks.csv"  # with a calibrated model: every landmark's expected error and whether to check it


def write_checks_csv(path: Path, rows: list[list]) -> None:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image", "landmark", "x", "y", "expected_error_mm", "check"])
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


@dataclass
class PredictionSummary:
    out_dir: Path
    csv_path: Path | None
    predicted: list[str] = field(default_factory=list)
    failures: list[DataIssue] = field(default_factory=list)
    seconds: float = 0.0
    model_seconds: float = 0.0
    overlays: int = 0
    pages: int = 0
    flagged: int = 0  # points to check (a calibrated model)
    mre_mm: float | None = None  # against the ground truth of dataset inputs, when there is any
    truth_images: int = 0

    @property
    def images_per_s(self) -> float:
        return len(self.predicted) / self.seconds if self.seconds > 0 else math.nan


def output_stems(items: list[InputImage]) -> list[str]:
    """File stems for each image's outputs, unique even on case-insensitive file systems.

    ``001.png`` gives ``001``; when two inputs share a stem (``a/001.png``, ``b/001.png``) the parent folder is
    prefixed (``a_001``, ``b_001``), and a counter is appended if that is still not unique.
    """
    stem_counts = Counter(item.path.stem.lower() for item in items)
    used: set[str] = set()
    stems = []
    for item in items:
        name = item.path.stem
        if stem_counts[name.lower()] > 1:
            parent = PurePath(item.key.replace("\\", "/")).parent.name.strip(".") or item.path.resolve().parent.name
            name = f"{parent}_{name}" if parent else name
        base, n = name, 2
        while name.lower() in used:
            name, n = f"{base}_{n}", n + 1
        used.add(name.lower())
        stems.append(name)
    return stems


def landmark_json(item: InputImage, result: ImageResult, names: tuple[str, ...], spacing_mm: float | None,
                  spacing_source: str | None = None, calibration: ErrorCalibration | None = None) -> dict:
    """One image's JSON: its landmarks (original pixels, confidence, mm where the spacing is known; with a
    ``calibration`` each one's expected error and whether to check it, the points to check and the readings that
    could change within those errors) and its cephalometric measurements (None where unavailable, with the
    reasons), norm verdicts and ISBI classes."""
    analysis = analyze(result.landmarks[None], names, [spacing_mm])
    expected = None if calibration is None else calibration.expected_error_mm(result.confidence)
    landmarks = {}
    for k, (name, (x, y), c) in enumerate(zip(names, result.landmarks, result.confidence)):
        entry = {"x": round(float(x), 3), "y": round(float(y), 3), "confidence": round(float(c), 4)}
        if spacing_mm is not None:
            entry.update(x_mm=round(float(x) * spacing_mm, 3), y_mm=round(float(y) * spacing_mm, 3))
        if expected is not None:
            entry.update(expected_error_mm=round(float(expected[k]), 2),
                         check=bool(expected[k] > calibration.threshold_mm))
        landmarks[name] = entry
    out = {"image": str(item.path), "image_size": list(result.image_size), "spacing_mm": spacing_mm,
           "spacing_source": spacing_source, "landmarks": landmarks, "measurements": analysis.row(0),
           "unavailable": analysis.unavailable}
    if expected is not None:
        out["checks"] = [{"landmark": n, "expected_error_mm": e} for n, e in points_to_check(names, expected,
                                                                                            calibration)]
        out["unstable_readings"] = unstable_readings(result.landmarks, names, spacing_mm, expected)
        out["calibration"] = {"threshold_mm": round(calibration.threshold_mm, 2), "source": calibration.source}
    return out


def points_to_check(names, expected: np.ndarray, calibration: ErrorCalibration) -> list[tuple[str, float]]:
    """The landmarks whose expected error is above the calibration's threshold, largest first."""
    flagged = [(str(n), round(float(e), 2)) for n, e in zip(names, expected) if e > calibration.threshold_mm]
    return sorted(flagged, key=lambda pair: -pair[1])


def image_spacing(item: InputImage, spacing_mm: float | None,
                  warn: Callable[[str], None] = warn_stderr) -> float | None:
    """The spacing (mm per pixel) of one image (:func:`spacing_and_source`)."""
    return spacing_and_source(item, spacing_mm, warn)[0]


def spacing_and_source(item: InputImage, spacing_mm: float | None,
                       warn: Callable[[str], None] = warn_stderr) -> tuple[float | None, str]:
    """The spacing (mm per pixel) of one image and where it came from: the dataset's (``item.spacing_mm``, the CSV
    column), else ``spacing_mm`` (``--spacing_mm``), else the DICOM header's (PixelSpacing, or ImagerPixelSpacing
    over the magnification factor: :func:`cephalo.dicom.spacing_from_header`), else ``(None, "unknown")``.

    A given spacing that differs from the header's by more than 1 % is kept, with one ``warn``ing naming both and
    the file. Only a DICOM's header is read, never its pixels again.
    """
    given, source = (item.spacing_mm, "dataset") if item.spacing_mm is not None else (spacing_mm, "--spacing_mm")
    header = header_spacing_mm(item.path, warn)
    if given is None:
        return (header, "DICOM header") if header is not None else (None, "unknown")
    if header is not None and spacings_differ(given, header):
        named = "the dataset's spacing_mm" if source == "dataset" else source
        warn(f"{item.path}: {named} {given:g} mm differs from the DICOM header's {header:g} mm by more than 1 %; "
             f"using {given:g} mm")
    return given, source


def _check_dicom_support(items: list[InputImage]) -> None:
    """Without pydicom, stop once before reading anything rather than fail every DICOM in the workers."""
    if not pydicom_available() and (dicoms := [item.path for item in items if is_dicom_file(item.path)]):
        raise ImportError(f"{len(dicoms)} DICOM image(s) ({dicoms[0]}{', ...' if len(dicoms) > 1 else ''}): "
                          f"reading DICOM images needs pydicom: {INSTALL_HINT}")


def _overlay(path: Path, original: np.ndarray, landmarks: np.ndarray, names: tuple[str, ...],
             truth: np.ndarray | None, analysis_lines: bool, flagged: set[str] | None = None, title: str | None = None,
             values: list[str] | None = None) -> None:
    from cephalo.visualize.overlay import draw_overlay

    write_image(path, draw_overlay(original, landmarks, names, truth=truth, flagged=flagged, lines=analysis_lines,
                                   title=title, values=values))


def value_lines(measurements: dict) -> list[str]:
    """The overlay's panel: each available measurement with its unit and its verdict against the norm."""
    from cephalo.analysis.measures import MEASUREMENTS
    from cephalo.analysis.summary import format_value

    lines = []
    for m in MEASUREMENTS:
        value = measurements.get(m.name)
        if value is not None:
            verdict = measurements.get(f"{m.name}_vs_norm")
            lines.append(f"{m.name} {format_value(m.name, value)}" + (f"  {verdict}" if verdict else ""))
    return lines


def predict_to_folder(predictor: Predictor, items: list[InputImage], out_dir: Path | str, overlay: bool = False,
                      batch_size: int = 4, num_workers: int = 2, progress: bool = True,
                      spacing_mm: float | None = None, failures: list[DataIssue] | None = None,
                      analysis_lines: bool = False, provenance: dict | None = None,
                      report: bool = False, overlay_values: bool = False) -> PredictionSummary:
    """Predict ``items`` and write ``predictions.csv``, ``<stem>.json`` (and ``<stem>_overlay.jpg``, with the
    cephalometric analysis lines when ``analysis_lines``) in ``out_dir``.

    ``spacing_mm`` is used for images whose spacing no dataset gives, before a DICOM header's (:func:`image_spacing`).
    JSON files and overlays are written as the images are done (an interrupted run keeps them); the CSV, one row per
    predicted image in input order, at the end. Unreadable images are listed in the summary's ``failures`` (after
    the given ``failures``), not raised. With ``provenance`` (``command``, ``model``, ``tta``:
    :mod:`cephalo.inference.provenance`) it also writes ``run.json``, before the first image and at the end. With
    ``report``, one printable page per image and an index in ``report/`` (:mod:`cephalo.visualize.patient_page`).
    """
    if spacing_mm is not None and not (math.isfinite(spacing_mm) and spacing_mm > 0):
        raise ValueError(f"--spacing_mm must be a positive number of mm per pixel, got {spacing_mm}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir}: exists and is not a folder")
    _check_dicom_support(items)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = tuple(predictor.landmark_names)
    stems = output_stems(items)
    summary = PredictionSummary(out_dir=out_dir, csv_path=None, failures=list(failures or []))
    rows: list[tuple[str, np.ndarray, float | None]] = []
    errors_mm: list[np.ndarray] = []
    stats = LoopStats()
    spacings, sources = zip(*[spacing_and_source(item, spacing_mm) for item in items]) if items else ((), ())
    spacings = list(spacings)  # once per image: a header warns once
    if provenance is not None:
        outputs = [CSV_NAME] + ([CHECKS_NAME] if getattr(predictor, "calibration", None) else []) + [
            f"{stem}.json" for stem in stems] + (
            [f"{stem}_overlay.jpg" for stem in stems] if overlay else []) + (
            [f"{REPORT_FOLDER}/{stem}.html" for stem in stems] + [f"{REPORT_FOLDER}/index.html"] if report else [])
        images = [{"image": item.key, "path": str(item.path), "output": stem, "spacing_mm": spacing,
                   "spacing_source": source} for item, stem, spacing, source in zip(items, stems, spacings, sources)]
        record = run_record(**provenance, images=images, outputs=outputs)
        write_run_record(out_dir, record)
    local = getattr(predictor, "local_spec", None)
    if local is not None and (unknown := sum(s is None for s in spacings)):
        warn_stderr(f"{unknown} image(s) without a known pixel spacing: the local stage assumes "
                    f"{local.default_spacing_mm:g} mm (its training images' median); give --spacing_mm")
    pending: deque[tuple[str, Future]] = deque()  # ("overlay" | "page", its job), oldest first
    pages: list[dict] = []
    calibration = getattr(predictor, "calibration", None)
    check_rows: list[list] = []  # checks.csv: every landmark's expected error, with a calibrated model

    def finish_oldest() -> None:
        kind, job = pending.popleft()
        if kind == "overlay":
            job.result()
            summary.overlays += 1
        else:
            pages.append(job.result())

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:  # overlays and pages are drawn while the model runs
        for outcome in iter_predictions(predictor, [it.path for it in items], batch_size, num_workers, progress,
                                        keep_originals=overlay or report, stats=stats, spacings=spacings):
            item = items[outcome.index]
            if isinstance(outcome, ImageFailure):
                summary.failures.append(DataIssue(item.path, outcome.message.removeprefix(f"{item.path}: ")))
                continue
            spacing = spacings[outcome.index]
            stem = stems[outcome.index]
            image_json = landmark_json(item, outcome, names, spacing, sources[outcome.index], calibration)
            write_text(out_dir / f"{stem}.json", json.dumps(image_json, indent=2))
            checks = None if calibration is None else [(c["landmark"], c["expected_error_mm"])
                                                        for c in image_json["checks"]]
            if checks is not None:
                check_rows += [[item.key, n, f"{outcome.landmarks[k][0]:.3f}", f"{outcome.landmarks[k][1]:.3f}",
                                image_json["landmarks"][n]["expected_error_mm"],
                                int(image_json["landmarks"][n]["check"])] for k, n in enumerate(names)]
            truth = aligned_truth(item, names)
            if truth is not None and item.spacing_mm is not None:
                errors_mm.append(np.linalg.norm(outcome.landmarks - truth, axis=1) * item.spacing_mm)
            if overlay:
                flagged = {n for n, _ in checks} if checks else None
                pending.append(("overlay", pool.submit(
                    _overlay, out_dir / f"{stem}_overlay.jpg", outcome.original, outcome.landmarks, names, truth,
                    analysis_lines, flagged, item.key, value_lines(image_json["measurements"]) if overlay_values
                    else None)))
            if report:
                page = page_input(item.key, outcome.landmarks, names, spacing, sources[outcome.index],
                                  image=outcome.original, model=(provenance or {}).get("model"),
                                  tta=(provenance or {}).get("tta"), checks=checks,
                                  flagged_measures=(image_json.get("unstable_readings") or []))
                pending.append(("page", pool.submit(write_page, out_dir / REPORT_FOLDER, stem, page)))
            outcome.original = None
            while len(pending) > 2 * batch_size:  # bound the originals held in memory
                finish_oldest()
            rows.append((item.key, outcome.landmarks, spacing))
            summary.predicted.append(item.key)
        while pending:
            finish_oldest()
    if report:
        write_index(out_dir / REPORT_FOLDER, pages, f"cephalo predict: {len(pages)} image(s)")
        summary.pages = len(pages)
    summary.seconds = time.perf_counter() - start
    summary.model_seconds = stats.model_seconds
    if rows:
        summary.csv_path = out_dir / CSV_NAME
        write_landmarks_csv(summary.csv_path, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], names)
    if check_rows:
        write_checks_csv(out_dir / CHECKS_NAME, check_rows)
        summary.flagged = sum(row[-1] for row in check_rows)
    if errors_mm:
        summary.mre_mm = float(np.nanmean(np.concatenate(errors_mm)))
        summary.truth_images = len(errors_mm)
    if provenance is not None:
        record.update(finished=True, failed=[str(issue) for issue in summary.failures])
        write_run_record(out_dir, record)
    return summary
