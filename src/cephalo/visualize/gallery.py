"""A gallery picture: one scored image cropped to its landmarks, predictions against ground truth, a title band on
top (OpenCV only). The report's worst-image gallery (which images, file names) is built from it one layer up, in
the evaluation package."""

from __future__ import annotations

import cv2
import numpy as np

from cephalo.visualize.overlay import draw_landmarks

GALLERY_MAX_SIDE = 960  # px, longest side of a gallery image
OUTSIDE_GREY = 70  # canvas beyond the image's border, where a prediction fell outside it
GALLERY_MIN_SIDE = 480  # px, smaller images are enlarged to this, so that labels and title fit


def gallery_image(image: np.ndarray, predicted: np.ndarray, truth: np.ndarray, names: tuple[str, ...] | list[str],
                  title: str, max_side: int = GALLERY_MAX_SIDE, min_side: int = GALLERY_MIN_SIDE,
                  margin: float = 0.1) -> np.ndarray:
    """A picture of one scored image: BGR uint8, ``title`` in a band on top.

    ``image`` (``(H, W)`` original grey uint8) is cropped to the landmarks (``predicted`` and ``truth``, ``(K, 2)``
    original pixels) plus ``margin`` x its longest side (grey canvas beyond the image where a prediction fell
    outside it), scaled to at most ``max_side`` (small crops up to ``min_side``) and drawn with
    :func:`draw_landmarks`. Coordinates follow the crop and the resize (``x -> (x + 0.5) * s - 0.5``) and are
    drawn on the scaled image, so lines and labels stay sharp instead of being averaged away by the downscale.
    """
    predicted, truth = np.asarray(predicted, np.float64), np.asarray(truth, np.float64)
    pad = margin * max(image.shape[:2])
    crop, origin = _crop_around(image, np.concatenate([predicted, truth]), pad)
    predicted, truth = predicted - origin, truth - origin
    scale = _page_scale(crop.shape[:2], max_side, min_side)
    if scale != 1.0:
        crop, factor = _resize(crop, scale)
        predicted = (predicted + 0.5) * factor - 0.5
        truth = (truth + 0.5) * factor - 0.5
    canvas = draw_landmarks(crop, predicted, names, truth)
    return _with_title(canvas, title)


def _crop_around(image: np.ndarray, points: np.ndarray, pad: float) -> tuple[np.ndarray, np.ndarray]:
    """The box around ``points`` (``(P, 2)`` x, y) plus ``pad`` px, cut from ``image`` ``(H, W)``.

    Returns the crop and its top-left corner ``(x0, y0)`` in ``image`` pixels (negative where the box starts
    beyond the image). The box may reach past the image (up to half its size) so that predictions outside it stay
    visible; the part beyond is ``OUTSIDE_GREY``.
    """
    h, w = image.shape[:2]
    x0, y0 = (int(np.clip(np.floor(points[:, i].min() - pad), -(n // 2), n - 1)) for i, n in ((0, w), (1, h)))
    x1, y1 = (int(np.clip(np.ceil(points[:, i].max() + pad) + 1, x + 2, n + n // 2))
              for i, n, x in ((0, w, x0), (1, h, y0)))
    crop = np.full((y1 - y0, x1 - x0), OUTSIDE_GREY, np.uint8)
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if ix1 > ix0 and iy1 > iy0:
        crop[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] = image[iy0:iy1, ix0:ix1]
    return crop, np.array([x0, y0])


def _page_scale(shape: tuple[int, int], max_side: int, min_side: int) -> float:
    """The factor that brings the longest side of ``shape`` ``(H, W)`` down to ``max_side``, or up to ``min_side``."""
    longest = max(shape)
    return min(1.0, max_side / longest) if longest >= min_side else min_side / longest


def _resize(image: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """``image`` resized by ``scale``; returns it and the exact ``(x, y)`` factors (sizes are rounded)."""
    h, w = image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    return resized, np.array([size[0] / w, size[1] / h])


def _with_title(canvas: np.ndarray, title: str) -> np.ndarray:
    """``canvas`` under a dark band holding ``title``: shrunk to fit, else wrapped at its triple spaces."""
    width = canvas.shape[1]
    font = cv2.FONT_HERSHEY_SIMPLEX
    scale = max(0.45, min(0.8, width / 1000.0))
    while scale > 0.4 and cv2.getTextSize(title, font, scale, 1)[0][0] > width - 20:
        scale -= 0.05
    thick = 1 if scale < 0.6 else 2
    lines: list[str] = []
    for part in title.split("   "):
        if lines and cv2.getTextSize(lines[-1] + "   " + part, font, scale, thick)[0][0] <= width - 20:
            lines[-1] += "   " + part
        else:
            lines.append(part)
    (_, text_h), base = cv2.getTextSize("Ag", font, scale, thick)
    step = text_h + base + 6
    band = np.full((len(lines) * step + 10, width, 3), 40, np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(band, line, (10, 8 + text_h + i * step), font, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return np.vstack([band, canvas])
