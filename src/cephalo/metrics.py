"""Cephalometric accuracy: radial error in mm, MRE, SD and SDR, pooled over (image, landmark) instances.

Errors are measured in each image's original pixel frame and converted to mm with that image's own spacing,
as in the ISBI 2015, Aariz and CL-Detection 2023 protocols.
"""

from __future__ import annotations

import numpy as np

SDR_THRESHOLDS_MM = (2.0, 2.5, 3.0, 4.0)


def radial_errors_mm(predicted: np.ndarray, target: np.ndarray, spacing_mm: np.ndarray) -> np.ndarray:
    """Euclidean errors in mm.

    Args:
        predicted, target: ``(N, K, 2)`` original pixel coordinates.
        spacing_mm: ``(N,)`` mm per pixel of each image.
    Returns:
        ``(N, K)`` errors in mm.
    """
    predicted, target = np.asarray(predicted, np.float64), np.asarray(target, np.float64)
    spacing_mm = np.asarray(spacing_mm, np.float64)
    if predicted.shape != target.shape or predicted.ndim != 3 or predicted.shape[-1] != 2:
        raise ValueError(f"predicted {predicted.shape} and target {target.shape} must both be (N, K, 2)")
    if spacing_mm.shape != (predicted.shape[0],):
        raise ValueError(f"spacing_mm must be ({predicted.shape[0]},), got {spacing_mm.shape}")
    return np.linalg.norm(predicted - target, axis=-1) * spacing_mm[:, None]


def summarize(errors_mm: np.ndarray, thresholds_mm: tuple[float, ...] = SDR_THRESHOLDS_MM) -> dict:
    """MRE, SD (population, over all instances), SDR (%) at each threshold and the count, of errors of any shape."""
    e = np.asarray(errors_mm, np.float64).reshape(-1)
    if e.size == 0:
        raise ValueError("no errors to summarise")
    return {
        "mre_mm": float(e.mean()),
        "sd_mm": float(e.std()),
        "sdr": {f"{t:g}mm": float((e <= t).mean() * 100.0) for t in thresholds_mm},
        "count": int(e.size),
    }


def landmark_report(
    errors_mm: np.ndarray, landmark_names: tuple[str, ...] | list[str], thresholds_mm: tuple[float, ...] = SDR_THRESHOLDS_MM
) -> dict:
    """Overall and per-landmark summaries of ``errors_mm (N, K)``."""
    errors_mm = np.asarray(errors_mm, np.float64)
    if errors_mm.ndim != 2 or errors_mm.shape[1] != len(landmark_names):
        raise ValueError(f"errors {errors_mm.shape} do not match {len(landmark_names)} landmark names")
    return {
        "overall": summarize(errors_mm, thresholds_mm),
        "per_landmark": {n: summarize(errors_mm[:, k], thresholds_mm) for k, n in enumerate(landmark_names)},
    }


def sdr_labels(report: dict) -> list[str]:
    """The SDR threshold labels of a :func:`landmark_report` (``"2mm"``, ``"2.5mm"``, ...)."""
    return list(report["overall"]["sdr"])


def report_rows(report: dict) -> list[tuple[str, dict]]:
    """``(name, summary)`` per landmark in dataset order, then ``("overall", ...)``."""
    return list(report["per_landmark"].items()) + [("overall", report["overall"])]


def format_report(report: dict) -> str:
    """A plain-text per-landmark table (mm and %), overall last."""
    thresholds = sdr_labels(report)
    header = f"{'landmark':<10} {'MRE':>7} {'SD':>7} " + " ".join(f"{'SDR' + t:>10}" for t in thresholds)
    lines = [header, "-" * len(header)]

    def row(name: str, s: dict) -> str:
        return f"{name:<10} {s['mre_mm']:7.3f} {s['sd_mm']:7.3f} " + " ".join(f"{s['sdr'][t]:9.2f}%" for t in thresholds)

    lines += [row(name, s) for name, s in report["per_landmark"].items()]
    lines += ["-" * len(header), row("overall", report["overall"])]
    return "\n".join(lines)
