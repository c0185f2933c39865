"""One record type for every dataset source."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True, eq=False)
class LandmarkRecord:
    """One annotated cephalogram.

    Attributes:
        image_path: the original image file.
        landmarks: ``(K, 2)`` float64, ``(x, y)`` in original pixel coordinates (x right, y down, the centre of
            the top-left pixel at ``(0, 0)``).
        spacing_mm: isotropic pixel spacing of the original image, mm per pixel.
        landmark_names: ``K`` names, in the dataset's canonical order.
        case_id: identifier unique within the dataset (the file stem for most sources).
        split: the split this record belongs to (``train``, ``valid``, ``test``, ...).
        cvm_stage: cervical vertebral maturation stage 1..6 (Aariz), else ``None``.
    """

    image_path: Path
    landmarks: np.ndarray
    spacing_mm: float
    landmark_names: tuple[str, ...]
    case_id: str
    split: str = ""
    cvm_stage: int | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        shape = np.shape(self.landmarks)
        if shape != (len(self.landmark_names), 2):
            raise ValueError(
                f"{self.image_path}: landmarks have shape {shape}, expected ({len(self.landmark_names)}, 2)"
            )

    @property
    def num_landmarks(self) -> int:
        return len(self.landmark_names)
