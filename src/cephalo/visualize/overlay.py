"""Landmarks drawn on a cephalogram, readable from a 500 px thumbnail to a 2000 x 2400 original.

:func:`draw_overlay` draws the analysis lines (optional), the ground truth (green rings joined to their
predictions by yellow error lines), the points to check (amber rings) and the predicted landmarks (red dots),
places every label -- the landmarks' and the lines' -- with :func:`cephalo.visualize.labels.place_labels` (never
over another label, a dot or a ring; a leader line where a label had to move away), and adds a title strip with
a legend, the lines that could not be drawn and why, and optionally a panel of values.
"""

from __future__ import annotations

import cv2
import numpy as np

from cephalo.visualize.analysis_lines import analysis_lines
from cephalo.visualize.labels import place_labels

PREDICTED = (40, 40, 255)  # BGR red
TRUTH = (60, 220, 60)  # green
ERROR = (0, 215, 255)  # yellow
CHECK = (0, 176, 255)  # amber: a point flagged for checking
LABEL_TEXT = (255, 255, 255)
LABEL_SHADE = 0.3  # the box behind a label keeps this share of the image's brightness: dark, anatomy still faintly seen
STRIP = (32, 32, 32)


class _Style:
    """Sizes that scale with the image, so that labels stay legible on large X-rays."""

    def __init__(self, shape):
        unit = max(shape[:2]) / 1000.0
        self.radius, self.thick = max(2, round(4 * unit)), max(1, round(1.5 * unit))
        self.font, self.font_scale = cv2.FONT_HERSHEY_SIMPLEX, max(0.35, 0.5 * unit)
        self.pad, self.gap = max(1, round(2 * unit)), max(2, round(4 * unit)) + max(1, round(2 * unit))

    def box_size(self, text: str) -> tuple[int, int, int]:
        (tw, th), base = cv2.getTextSize(text, self.font, self.font_scale, self.thick)
        return tw + 2 * self.pad, th + base + 2 * self.pad, base


def label_layout(predicted: np.ndarray, names, truth: np.ndarray | None, image_shape, lines=(),
                 flagged: set[str] | None = None) -> list[tuple[str, tuple[float, float], tuple[int, int, int, int],
                                                                 bool]]:
    """Where each label of :func:`draw_overlay` goes: ``(text, anchor, box, leader)`` for every finite landmark
    and every line (anchored at its end)."""
    style = _Style(image_shape)
    finite = [bool(np.isfinite(p).all()) for p in predicted]
    dots = [(float(p[0]), float(p[1])) for p, ok in zip(predicted, finite) if ok]
    r = style.radius
    obstacles = [(round(x) - r, round(y) - r, round(x) + r + 1, round(y) + r + 1) for x, y in dots]
    ring = r + 2 * style.thick
    if truth is not None:
        obstacles += [(round(t[0]) - ring, round(t[1]) - ring, round(t[0]) + ring + 1, round(t[1]) + ring + 1)
                      for t in np.asarray(truth, np.float64) if np.isfinite(t).all()]
    big = 3 * r + 2 * style.thick
    obstacles += [(round(p[0]) - big, round(p[1]) - big, round(p[0]) + big + 1, round(p[1]) + big + 1)
                  for p, n, ok in zip(predicted, names, finite) if ok and flagged and n in flagged]
    texts = [str(n) for n, ok in zip(names, finite) if ok] + [line.label for line in lines]
    anchors = dots + [line.end for line in lines]
    sizes = [style.box_size(t)[:2] for t in texts]
    placed = place_labels(anchors, sizes, obstacles, image_shape[:2], style.gap)
    return [(t, a, box, leader) for t, a, (box, leader) in zip(texts, anchors, placed)]


def draw_overlay(image: np.ndarray, predicted: np.ndarray, names, truth: np.ndarray | None = None,
                 flagged: set[str] | None = None, lines: bool = False, label: bool = True, title: str | None = None,
                 values: list[str] | None = None) -> np.ndarray:
    """A BGR copy of ``image`` (``(H, W)`` grey or ``(H, W, 3)`` BGR uint8) with ``predicted`` ``(K, 2)`` original
    pixels named ``names`` drawn (a NaN row is skipped), ``truth`` ``(K, 2)`` as rings (NaN: none), ``flagged``
    landmarks ringed in amber, the analysis lines with ``lines``; with ``title`` a strip above the image (title,
    legend, lines not drawn and why) and with ``values`` a panel of text lines on the right."""
    canvas = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image.copy()
    style = _Style(canvas.shape)
    predicted = np.asarray(predicted, np.float64)
    drawn, missing = analysis_lines(predicted, names) if lines else ([], [])

    def at(p) -> tuple[int, int]:
        return round(float(p[0])), round(float(p[1]))

    for line in drawn:
        cv2.line(canvas, at(line.start), at(line.end), line.colour, style.thick, cv2.LINE_AA)
    if truth is not None:
        for p, t in zip(predicted, np.asarray(truth, np.float64)):
            if np.isfinite(p).all() and np.isfinite(t).all():
                cv2.line(canvas, at(t), at(p), ERROR, style.thick, cv2.LINE_AA)
                cv2.circle(canvas, at(t), style.radius + style.thick, TRUTH, style.thick, cv2.LINE_AA)
    if label:
        colours = {line.label: line.colour for line in drawn}
        for text, anchor, (x0, y0, x1, y1), leader in label_layout(predicted, names, truth, canvas.shape, drawn,
                                                                    flagged):
            colour = colours.get(text, LABEL_TEXT) if text not in names else LABEL_TEXT
            if leader:  # from the point to the nearest point of its label
                near = (min(max(round(anchor[0]), x0), x1 - 1), min(max(round(anchor[1]), y0), y1 - 1))
                cv2.line(canvas, at(anchor), near, (200, 200, 200), max(1, style.thick // 2), cv2.LINE_AA)
            roi = canvas[y0:y1, x0:x1]
            roi[:] = (roi.astype(np.float32) * LABEL_SHADE).astype(np.uint8)
            _, _, base = style.box_size(text)
            cv2.putText(canvas, text, (x0 + style.pad, y1 - style.pad - base), style.font, style.font_scale,
                        colour, style.thick, cv2.LINE_AA)
    for p, name in zip(predicted, names):  # dots last: nothing covers where a landmark is
        if np.isfinite(p).all():
            if flagged and name in flagged:
                cv2.circle(canvas, at(p), 3 * style.radius, CHECK, 2 * style.thick, cv2.LINE_AA)
            cv2.circle(canvas, at(p), style.radius, PREDICTED, -1, cv2.LINE_AA)
    if values:
        canvas = _panel(canvas, values, style)
    if title is not None:
        canvas = _title_strip(canvas, title, truth is not None, bool(flagged), missing, style)
    return canvas


def draw_landmarks(image: np.ndarray, predicted: np.ndarray, names, truth: np.ndarray | None = None,
                   label: bool = True, flagged: set[str] | None = None) -> np.ndarray:
    """:func:`draw_overlay` without lines, title or panel (gallery crops, report pictures)."""
    return draw_overlay(image, predicted, names, truth=truth, flagged=flagged, label=label)


def _text_rows(canvas_width: int, rows: list[list[tuple[str, tuple[int, int, int]]]], style: _Style) -> np.ndarray:
    """A dark strip holding ``rows`` of coloured text pieces."""
    line_h = style.box_size("Ag")[1] + style.pad
    strip = np.full((line_h * len(rows) + 2 * style.pad, canvas_width, 3), STRIP, np.uint8)
    for r, pieces in enumerate(rows):
        x = 2 * style.pad
        y = style.pad + line_h * (r + 1) - style.pad - 2
        for text, colour in pieces:
            cv2.putText(strip, text, (x, y), style.font, style.font_scale, colour, style.thick, cv2.LINE_AA)
            x += style.box_size(text)[0] + 3 * style.pad
    return strip


def _title_strip(canvas, title, truth, flagged, missing, style) -> np.ndarray:
    legend = [(title, (255, 255, 255)), ("* predicted", PREDICTED)]
    if truth:
        legend.append(("o ground truth, - error", TRUTH))
    if flagged:
        legend.append(("O point to check", CHECK))
    rows = [legend] + ([[("not drawn: " + "; ".join(missing), (190, 190, 190))]] if missing else [])
    return np.concatenate([_text_rows(canvas.shape[1], rows, style), canvas])


def _panel(canvas, values, style) -> np.ndarray:
    width = max(style.box_size(v)[0] for v in values) + 4 * style.pad
    line_h = style.box_size("Ag")[1] + style.pad
    panel = np.full((canvas.shape[0], width, 3), STRIP, np.uint8)
    for r, text in enumerate(values):
        y = style.pad + line_h * (r + 1)
        if y > canvas.shape[0]:
            break
        cv2.putText(panel, text, (2 * style.pad, y), style.font, style.font_scale, LABEL_TEXT, style.thick,
                    cv2.LINE_AA)
    return np.concatenate([canvas, panel], axis=1)
