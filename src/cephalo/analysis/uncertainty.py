"""Which readings of one image could change within its landmarks' expected errors.

Each landmark is moved at random, isotropically, with the spread its expected radial error implies (for a 2-D
Gaussian the mean radial error is sigma * sqrt(pi / 2)); the measurements are taken again on every draw, and a
reading -- an ISBI 2015 class, or a value's verdict against its clinical norm -- is named when more than
``share`` of the draws give another one than the landmarks as placed. Seeded: the same image gives the same list.
"""

from __future__ import annotations

import numpy as np

from cephalo.analysis.analyze import analyze

DRAWS, SHARE = 256, 0.25


def unstable_readings(landmarks: np.ndarray, names, spacing_mm: float | None, expected_error_mm: np.ndarray,
                      draws: int = DRAWS, share: float = SHARE, seed: int = 0) -> list[str]:
    """``landmarks`` ``(K, 2)`` original pixels, ``expected_error_mm`` ``(K,)`` -> readings that flip, as
    ``"ANB: ISBI class"`` / ``"SN_MP: vs norm"``, in table order. Without a spacing the errors cannot be put in
    pixels: nothing is named."""
    if spacing_mm is None or not np.isfinite(spacing_mm):
        return []
    landmarks = np.asarray(landmarks, np.float64)
    sigma_px = np.asarray(expected_error_mm, np.float64) / np.sqrt(np.pi / 2) / spacing_mm
    rng = np.random.default_rng(seed)
    moved = landmarks[None] + rng.standard_normal((draws, *landmarks.shape)) * sigma_px[None, :, None]
    placed = analyze(landmarks[None], names, [spacing_mm])
    drawn = analyze(moved, names, [spacing_mm] * draws)
    flips = []
    for m in placed.measurements:
        value = placed.values[m.name][0]
        if m.within is None or not np.isfinite(value):
            continue
        low, high = m.within
        values = drawn.values[m.name]
        side = np.where(values < low, -1, np.where(values > high, 1, 0))  # a NaN draw reads as within
        now = -1 if value < low else 1 if value > high else 0
        if np.mean(side != now) > share:
            flips.append(f"{m.name}: vs norm")
    for name, classes in placed.classes.items():
        if classes[0] and np.mean(drawn.classes[name] != classes[0]) > share:
            flips.append(f"{name}: ISBI class")
    return flips
