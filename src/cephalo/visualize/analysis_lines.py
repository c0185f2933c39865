"""The lines of a cephalometric analysis drawn on an overlay: S-N, Frankfort horizontal, the mandibular and palatal
planes, the facial line N-Pog, the A-B line and the incisor axes, each where its two landmarks exist."""

from __future__ import annotations

import cv2
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


def draw_analysis_lines(canvas: np.ndarray, landmarks: np.ndarray, names, extend: float = 0.15) -> np.ndarray:
    """Draw the lines on the BGR ``canvas`` (in place; returned) from ``landmarks (K, 2)`` original pixels named
    ``names``; each line runs ``extend`` of its length past both landmarks, so the angles between lines show."""
    index = {n: k for k, n in enumerate(names)}
    unit = max(canvas.shape[:2]) / 1000.0
    thick, font_scale = max(1, round(1.2 * unit)), max(0.35, 0.45 * unit)
    for start, end, label, colour in ANALYSIS_LINES:
        if start not in index or end not in index:
            continue
        a, b = np.asarray(landmarks[index[start]], np.float64), np.asarray(landmarks[index[end]], np.float64)
        if not (np.isfinite(a).all() and np.isfinite(b).all()):
            continue
        d = (b - a) * extend
        p, q = a - d, b + d
        cv2.line(canvas, (round(p[0]), round(p[1])), (round(q[0]), round(q[1])), colour, thick, cv2.LINE_AA)
        cv2.putText(canvas, label, (round(q[0]) + 4, round(q[1])), cv2.FONT_HERSHEY_SIMPLEX, font_scale, colour,
                    thick, cv2.LINE_AA)
    return canvas
