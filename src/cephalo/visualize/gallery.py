"""The worst-image gallery of ``cephalo evaluate --report``: one scored image cropped to its landmarks, predictions
against ground truth, a title band on top (OpenCV only), written as ``worst_<k>_<case>.jpg``."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from cephalo.image_io import ImageReadError, read_grey, write_image
from cephalo.visualize.overlay import draw_landmarks

if TYPE_CHECKING:  # write_gallery only reads their attributes; no import of the evaluation package at run time
    from cephalo.datasets.record import LandmarkRecord
    from cephalo.evaluation.evaluate import Evaluation

GALLERY_MAX_SIDE = 960  # px, longest side of a gallery image
OUTSIDE_GREY = 70  # canvas beyond the image's border, where a prediction fell outside it
GALLERY_MIN_SIDE = 480  # px, smaller images are enlarged to this, so that labels and title fit
GALLERY_FILE = re.compile(r"worst_\d+_.*\.jpg$")  # the names write_gallery gives


def gallery_image(image: np.ndarray, predicted: np.ndarray, truth: np.ndarray, names, title: str,
                  max_side: int = GALLERY_MAX_SIDE, min_side: int = GALLERY_MIN_SIDE,
                  margin: float = 0.1) -> np.ndarray:
    """A picture of one scored image: BGR uint8, ``title`` in a band on top.

    ``image`` (original grey) is cropped to the landmarks (predicted and true) plus ``margin`` x its longest side
    (grey canvas beyond the image where a prediction fell outside it), scaled to at most ``max_side`` (small
    crops up to ``min_side``) and drawn with :func:`draw_landmarks`. Coordinates follow the crop and the resize
    (``x -> (x + 0.5) * s - 0.5``) and are drawn on the scaled image, so lines and labels stay sharp instead of
    being averaged away by the downscale.
    """
    predicted, truth = np.asarray(predicted, np.float64), np.asarray(truth, np.float64)
    h, w = image.shape[:2]
    points = np.concatenate([predicted, truth])
    pad = margin * max(h, w)
    # the box may reach past the image (up to half its size) so that predictions outside it stay visible
    x0, y0 = (int(np.clip(np.floor(points[:, i].min() - pad), -(n // 2), n - 1)) for i, n in ((0, w), (1, h)))
    x1, y1 = (int(np.clip(np.ceil(points[:, i].max() + pad) + 1, x + 2, n + n // 2))
              for i, n, x in ((0, w, x0), (1, h, y0)))
    crop = np.full((y1 - y0, x1 - x0), OUTSIDE_GREY, np.uint8)
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if ix1 > ix0 and iy1 > iy0:
        crop[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] = image[iy0:iy1, ix0:ix1]
    image = crop
    predicted, truth = predicted - [x0, y0], truth - [x0, y0]
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w)) if max(h, w) >= min_side else min_side / max(h, w)
    if scale != 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
        factor = np.array([size[0] / w, size[1] / h])
        predicted = (predicted + 0.5) * factor - 0.5
        truth = (truth + 0.5) * factor - 0.5
    canvas = draw_landmarks(image, predicted, names, truth)
    return _with_title(canvas, title)


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


def _safe_name(case_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", case_id).strip("._") or "image"


def write_gallery(out_dir: Path, worst: list[tuple[str, float]], evaluation: Evaluation,
                  records: list[LandmarkRecord], warn: Callable[[str], None]) -> list[tuple[Path, str, float, str]]:
    """``worst_<k>_<case>.jpg`` for each of ``worst``; returns ``(path, case_id, mre, caption detail)``."""
    row_of = {records[i].case_id: row for row, i in enumerate(evaluation.record_indices)}
    written = []
    for k, (case, mre) in enumerate(worst, start=1):
        row = row_of[case]
        record = records[int(evaluation.record_indices[row])]
        errors = evaluation.errors_mm[row]
        j = int(errors.argmax())
        detail = f"max {errors[j]:.2f} mm at {record.landmark_names[j]}"
        try:
            image = read_grey(record.image_path)
        except ImageReadError as e:
            warn(f"gallery: {e}; image #{k} left out")
            continue
        picture = gallery_image(image, evaluation.predicted[row], evaluation.target[row], record.landmark_names,
                                f"#{k}  {case}   MRE {mre:.2f} mm   ({detail})")
        path = out_dir / f"worst_{k}_{_safe_name(record.image_path.stem)}.jpg"  # k keeps equal stems apart
        write_image(path, picture)
        written.append((path, case, mre, detail))
    return written
