"""What ``cephalo predict`` writes for each image: its JSON (landmarks, measurements, with a calibrated model the
expected errors, the points to check and the readings that could change), its rows of ``checks.csv`` and its
overlay. The loop that calls these is :func:`cephalo.inference.outputs.predict_to_folder`.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from cephalo.analysis.analyze import analyze
from cephalo.analysis.uncertainty import unstable_readings
from cephalo.artifact.calibration import ErrorCalibration
from cephalo.atomic import write_text
from cephalo.image_io import write_image
from cephalo.inference.inputs import InputImage
from cephalo.inference.predict import ImageResult

CHECKS_NAME = "checks.csv"  # with a calibrated model: every landmark's expected error and whether to check it


def write_checks_csv(path: Path, rows: list[list]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image", "landmark", "x", "y", "expected_error_mm", "check"])
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


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


def overlay_file(path: Path, original: np.ndarray, landmarks: np.ndarray, names: tuple[str, ...],
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
