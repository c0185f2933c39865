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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePath

import numpy as np

from cephalo.atomic import write_text
from cephalo.datasets.csv_dataset import write_landmarks_csv
from cephalo.datasets.issues import DataIssue
from cephalo.dicom import (
    INSTALL_HINT,
    is_dicom_file,
    pydicom_available,
    warn_stderr,
)
from cephalo.inference.image_outputs import CHECKS_NAME, landmark_json, overlay_file, value_lines, write_checks_csv
from cephalo.inference.inputs import InputImage, aligned_truth
from cephalo.inference.predict import (
    ImageFailure,
    LoopStats,
    iter_predictions,
)
from cephalo.inference.predictor import Predictor
from cephalo.inference.provenance import run_record, write_run_record
from cephalo.inference.spacing import spacing_and_source
from cephalo.visualize.patient_page import page_input, write_index, write_page

CSV_NAME = "predictions.csv"
REPORT_FOLDER = "report"  # predict --report: <stem>.html per image and index.html


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


def _check_dicom_support(items: list[InputImage]) -> None:
    """Without pydicom, stop once before reading anything rather than fail every DICOM in the workers."""
    if not pydicom_available() and (dicoms := [item.path for item in items if is_dicom_file(item.path)]):
        raise ImportError(f"{len(dicoms)} DICOM image(s) ({dicoms[0]}{', ...' if len(dicoms) > 1 else ''}): "
                          f"reading DICOM images needs pydicom: {INSTALL_HINT}")


def predict_to_folder(predictor: Predictor, items: list[InputImage], out_dir: Path | str, overlay: bool = False,
                      batch_size: int = 4, num_workers: int = 2, progress: bool = True,
                      spacing_mm: float | None = None, failures: list[DataIssue] | None = None,
                      analysis_lines: bool = False, provenance: dict | None = None,
                      report: bool = False, overlay_values: bool = False) -> PredictionSummary:
    """Predict ``items`` and write ``predictions.csv``, ``<stem>.json`` (and ``<stem>_overlay.jpg``, with the
    cephalometric analysis lines when ``analysis_lines``) in ``out_dir``.

    ``spacing_mm`` is used for images whose spacing no dataset gives, before a DICOM header's (:func:`cephalo.inference.spacing.spacing_and_source`).
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
                    overlay_file, out_dir / f"{stem}_overlay.jpg", outcome.original, outcome.landmarks, names, truth,
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
