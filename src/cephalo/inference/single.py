"""One image in, its landmarks out: the Python API's prediction (``cephalo.predict_image``).

    predictor = cephalo.load_predictor("runs/isbi/best.pt")      # or an .onnx from cephalo export
    result = cephalo.predict_image(predictor, "scan.dcm")         # a path (PNG, JPEG, BMP, TIFF, DICOM) or an array
    result.landmarks["S"], result.landmarks_mm["S"], result.expected_error_mm

The same model, letterbox, decoding, local stage and test-time augmentation as ``cephalo predict`` (it is the same
batch code with one image); the spacing is the given one, else a DICOM header's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cephalo.dicom import header_spacing_mm
from cephalo.image_io import read_grey, to_grey_uint8
from cephalo.inference.predict import collate_images, image_sample
from cephalo.inference.predictor import Predictor


@dataclass(frozen=True)
class Prediction:
    """One image's landmarks: ``points`` ``(K, 2)`` original pixels (x, y) in ``names`` order; ``confidence``
    ``(K,)`` heatmap peaks; ``expected_error_mm`` ``(K,)`` where the model is calibrated (``cephalo calibrate``);
    ``spacing_mm`` None where unknown."""

    names: tuple[str, ...]
    points: np.ndarray
    confidence: np.ndarray
    spacing_mm: float | None
    expected_error_mm: np.ndarray | None = None

    @property
    def landmarks(self) -> dict[str, tuple[float, float]]:
        """Name -> (x, y) in the image's pixels."""
        return {n: (float(x), float(y)) for n, (x, y) in zip(self.names, self.points)}

    @property
    def landmarks_mm(self) -> dict[str, tuple[float, float]] | None:
        """Name -> (x, y) in mm from the image's top-left corner; None without a spacing."""
        if self.spacing_mm is None:
            return None
        return {n: (float(x) * self.spacing_mm, float(y) * self.spacing_mm) for n, (x, y) in zip(self.names,
                                                                                              self.points)}


def predict_image(predictor: Predictor, image: str | Path | np.ndarray, spacing_mm: float | None = None) -> Prediction:
    """Predict one image: a file path (read as ``cephalo predict`` reads it) or an ``(H, W)`` / ``(H, W, 3)`` array
    (grey, or BGR as OpenCV gives it; 8 or 16 bit). ``spacing_mm``: mm per pixel (else a DICOM header's, else
    unknown; a local stage then assumes its training images' median)."""
    if isinstance(image, (str, Path)):
        spacing_mm = spacing_mm if spacing_mm is not None else header_spacing_mm(image)
        pixels = read_grey(image)
    else:
        pixels = to_grey_uint8(np.asarray(image))
    local = getattr(predictor, "local_spec", None)
    sample = image_sample(pixels, 0, predictor.image_size, patch_mm=getattr(predictor, "patch_mm", None),
                          spacing_mm=spacing_mm or (local.default_spacing_mm if local is not None else None))
    batch = collate_images([sample])
    if batch["scaled"] is not None:
        points, confidence = predictor.predict(batch["images"], batch["letterboxes"], batch["scaled"])
    else:
        points, confidence = predictor.predict(batch["images"], batch["letterboxes"])
    calibration = getattr(predictor, "calibration", None)
    expected = None if calibration is None else calibration.expected_error_mm(confidence[0])
    return Prediction(tuple(predictor.landmark_names), np.asarray(points[0], np.float64),
                      np.asarray(confidence[0], np.float64), spacing_mm, expected)
