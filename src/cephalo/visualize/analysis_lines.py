"""The lines of a cephalometric analysis on an overlay: S-N, Frankfort horizontal, the mandibular and palatal
planes, the facial line N-Pog, the A-B line and the incisor axes, each where its two landmarks exist.

:func:`analysis_lines` is the geometry (which lines, where, and which cannot be drawn and why);
:func:`cephalo.visualize.overlay.draw_overlay` draws them and places their labels with the landmarks' own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ANALYSIS_LINES = (  # (from, to, label, BGR colour)
    ("S", "N", "S-N", (255, 170, 60)),
    ("Po", "Or", "FH", (60, 200, 255)),
    ("Go", "Me", "MP", (200, 120, 255)),
    ("PNS", "ANS", "PP", (120, 255, 160)),
    ("N", "Pog", "N-Pog", (255, 255, 120)),
    ("A", "B", "A-B", (170, 170, 255)),
    ("UIA", "UIT", "U1", (255, 140, 200)),
    ("LIA", "LIT", "L1", (255, 140, 200)),
)


@dataclass(frozen=True)
class Line:
    label: str
    start: tuple[float, float]  # extended past both landmarks
    end: tuple[float, float]
    colour: tuple[int, int, int]


def analysis_lines(landmarks: np.ndarray, names, extend: float = 0.15) -> tuple[list[Line], list[str]]:
    """``landmarks (K, 2)`` original pixels named ``names`` -> the lines to draw (each ``extend`` of its length
    past both landmarks, so the angles between lines show) and, for each line that cannot be drawn, why
    (``"U1: the landmark set has no UIA"``)."""
    index = {n: k for k, n in enumerate(names)}
    lines, missing = [], []
    for start, end, label, colour in ANALYSIS_LINES:
        absent = [n for n in (start, end) if n not in index]
        if absent:
            missing.append(f"{label}: the landmark set has no {', '.join(absent)}")
            continue
        a, b = np.asarray(landmarks[index[start]], np.float64), np.asarray(landmarks[index[end]], np.float64)
        if not (np.isfinite(a).all() and np.isfinite(b).all()):
            missing.append(f"{label}: {start} or {end} is missing on this image")
            continue
        d = (b - a) * extend
        p, q = a - d, b + d
        lines.append(Line(label, (float(p[0]), float(p[1])), (float(q[0]), float(q[1])), colour))
    return lines, missing
