"""The worst-image gallery of ``cephalo evaluate --report``: ``worst_<k>_<case>.jpg``, one picture
(:func:`cephalo.visualize.gallery.gallery_image`) for each of the images with the highest MRE."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from cephalo.datasets.record import LandmarkRecord
from cephalo.evaluation.evaluate import Evaluation
from cephalo.image_io import ImageReadError, read_grey, write_image
from cephalo.visualize.gallery import gallery_image

GALLERY_FILE = re.compile(r"worst_\d+_.*\.jpg$")  # the names write_gallery gives


class GalleryImage(NamedTuple):
    """One written gallery picture, as the report page captions it."""

    path: Path
    case_id: str
    mre_mm: float
    detail: str  # "max <e> mm at <landmark>"


def write_gallery(out_dir: Path, worst: list[tuple[str, float]], evaluation: Evaluation,
                  records: list[LandmarkRecord], warn: Callable[[str], None]) -> list[GalleryImage]:
    """``worst_<k>_<case>.jpg`` for each ``(case_id, mre_mm)`` of ``worst``, ``k`` from 1 in that order.

    An image that cannot be read is left out with a ``warn``; the others keep their ``k``.
    """
    row_of = {records[i].case_id: row for row, i in enumerate(evaluation.record_indices)}
    written = []
    for k, (case, mre) in enumerate(worst, start=1):
        row = row_of[case]
        record = records[int(evaluation.record_indices[row])]
        detail = _worst_landmark(evaluation.errors_mm[row], record.landmark_names)
        try:
            image = read_grey(record.image_path)
        except ImageReadError as e:
            warn(f"gallery: {e}; image #{k} left out")
            continue
        picture = gallery_image(image, evaluation.predicted[row], evaluation.target[row], record.landmark_names,
                                f"#{k}  {case}   MRE {mre:.2f} mm   ({detail})")
        path = out_dir / f"worst_{k}_{_safe_name(record.image_path.stem)}.jpg"  # k keeps equal stems apart
        write_image(path, picture)
        written.append(GalleryImage(path, case, mre, detail))
    return written


def _worst_landmark(errors_mm: np.ndarray, names: tuple[str, ...]) -> str:
    """``max <e> mm at <name>`` for one image's ``(K,)`` errors."""
    j = int(errors_mm.argmax())
    return f"max {errors_mm[j]:.2f} mm at {names[j]}"


def _safe_name(case_id: str) -> str:
    """``case_id`` as a file name part: runs of other characters than letters, digits, ``._-`` become ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", case_id).strip("._") or "image"
