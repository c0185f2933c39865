"""Landmarks drawn on a cephalogram, readable from a 500 px thumbnail to a 2000 x 2400 original."""

from __future__ import annotations

import cv2
import numpy as np

PREDICTED = (40, 40, 255)  # BGR red
TRUTH = (60, 220, 60)  # green
ERROR = (0, 215, 255)  # yellow
CHECK = (0, 176, 255)  # amber: a point flagged for checking
LABEL_TEXT = (255, 255, 255)
LABEL_SHADE = 0.3  # the box behind a label keeps this share of the image's brightness: dark, anatomy still faintly seen


def _box_overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> int:
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def _point_box_distance(p: tuple[int, int], b: tuple[int, int, int, int]) -> float:
    dx, dy = max(b[0] - p[0], 0, p[0] - b[2]), max(b[1] - p[1], 0, p[1] - b[3])
    return float(np.hypot(dx, dy))


def _label_cost(box, own: tuple[int, int], dots: list[tuple[int, int]], taken: list) -> float:
    """Area of ``box`` already covered (dots, earlier labels), plus a full box for every other dot that is not
    clearly farther from the label than its own dot (less than twice as far: the label could be read as its)."""
    own_distance = _point_box_distance(own, box)
    misleading = sum(1 for d in dots if d != own and _point_box_distance(d, box) < 2 * own_distance)
    area = (box[2] - box[0]) * (box[3] - box[1])
    return sum(_box_overlap(box, t) for t in taken) + misleading * area


def draw_landmarks(image: np.ndarray, predicted: np.ndarray, names: tuple[str, ...] | list[str],
                   truth: np.ndarray | None = None, label: bool = True,
                   flagged: set[str] | None = None) -> np.ndarray:
    """A BGR copy of ``image`` (``(H, W)`` grey or ``(H, W, 3)`` BGR uint8) with the landmarks drawn.

    ``predicted`` and ``truth`` are ``(K, 2)`` original pixel coordinates (a NaN truth row is a landmark without
    ground truth). Predictions are red dots labelled with their names in white on a darkened box (legible on
    bright bone); each label goes to the free side of its dot, so neighbours (incisor tips, chin points) do not
    cover each other. Ground truth, when given, is a green ring joined to its prediction by a yellow error line.
    Sizes scale with the image so that labels stay legible on large X-rays. Landmarks named in ``flagged`` (points
    to check) get a thick amber ring.
    """
    canvas = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image.copy()
    height, width = canvas.shape[:2]
    unit = max(height, width) / 1000.0
    radius, thick = max(2, round(4 * unit)), max(1, round(1.5 * unit))
    font, font_scale = cv2.FONT_HERSHEY_SIMPLEX, max(0.35, 0.5 * unit)
    predicted = np.asarray(predicted, np.float64)

    def at(p) -> tuple[int, int]:
        return round(float(p[0])), round(float(p[1]))

    def finite(p) -> bool:
        return bool(np.isfinite(np.asarray(p, np.float64)).all())

    if truth is not None:
        for p, t in zip(predicted, np.asarray(truth, np.float64)):
            if finite(p) and finite(t):
                cv2.line(canvas, at(t), at(p), ERROR, thick, cv2.LINE_AA)
                cv2.circle(canvas, at(t), radius + thick, TRUTH, thick, cv2.LINE_AA)

    if label:
        # the dots are obstacles too; labels are placed greedily, each on the candidate side covering least
        dots = [at(p) for p in predicted if finite(p)]
        taken = [(x - radius, y - radius, x + radius, y + radius) for x, y in dots]
        pad, gap = max(1, round(2 * unit)), radius + max(1, round(2 * unit))
        for p, name in zip(predicted, names):
            if not finite(p):
                continue
            x, y = at(p)
            (tw, th), base = cv2.getTextSize(str(name), font, font_scale, thick)
            bw, bh = tw + 2 * pad, th + base + 2 * pad
            candidates = [(x + gap, y - gap - bh), (x + gap, y + gap), (x - gap - bw, y - gap - bh),
                          (x - gap - bw, y + gap), (x + gap, y - bh // 2), (x - gap - bw, y - bh // 2)]
            boxes = []
            for bx, by in candidates:  # kept inside the image
                bx, by = min(max(bx, 0), max(0, width - bw)), min(max(by, 0), max(0, height - bh))
                boxes.append((bx, by, bx + bw, by + bh))
            box = min(boxes, key=lambda b: _label_cost(b, (x, y), dots, taken))  # first of the cheapest
            taken.append(box)
            x0, y0, x1, y1 = box
            roi = canvas[y0:y1, x0:x1]
            roi[:] = (roi.astype(np.float32) * LABEL_SHADE).astype(np.uint8)
            cv2.putText(canvas, str(name), (x0 + pad, y1 - pad - base), font, font_scale, LABEL_TEXT, thick, cv2.LINE_AA)

    for p, name in zip(predicted, names):  # dots last: nothing covers where a landmark is
        if finite(p):
            if flagged and name in flagged:
                cv2.circle(canvas, at(p), 3 * radius, CHECK, 2 * thick, cv2.LINE_AA)
            cv2.circle(canvas, at(p), radius, PREDICTED, -1, cv2.LINE_AA)
    return canvas
