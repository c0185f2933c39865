"""How wrong each predicted landmark is likely to be: an error calibration stored with the model.

The expected radial error (mm) of landmark k with heatmap peak p is ``exp(a_k + b * p)``: a per-landmark level
(some landmarks are harder) and one slope on the peak, least squares on log errors. Which signal to use was
decided by 5-fold nested CV on ISBI (``benchmarks/uncertainty_cv.md``: the calibrated peak catches about half of
the worst 5 % of errors when 15 % of points are flagged; the spread of test-time views, the heatmap's width and a
shape model add nothing, and cost more). It must be fitted on predictions of images the model(s) did not train or
select on -- out-of-fold predictions of a cross-validation -- never on a run's own validation split, which
flatters it (``cephalo calibrate``).

Points whose expected error exceeds ``threshold_mm`` are flagged for checking; the threshold is chosen on the
calibration points so that ``flag_share`` of them are flagged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

SIGNAL = "peak"
LOG_FLOOR_MM = 0.01  # errors are fitted as log(error + this): an exact hit has no log


@dataclass(frozen=True)
class ErrorCalibration:
    landmark_names: tuple[str, ...]
    levels: tuple[float, ...]  # a_k
    slope: float  # b
    threshold_mm: float
    flag_share: float
    points: int  # how many (image, landmark) points it was fitted on
    source: str  # where those came from, in words
    signal: str = SIGNAL

    def expected_error_mm(self, peak: np.ndarray) -> np.ndarray:
        """``peak`` ``(..., K)`` heatmap maxima -> ``(..., K)`` expected radial errors in mm."""
        return np.exp(np.asarray(self.levels) + self.slope * np.asarray(peak, np.float64))

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(landmark_names=list(self.landmark_names), levels=list(self.levels))
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ErrorCalibration:
        return cls(**{**d, "landmark_names": tuple(d["landmark_names"]), "levels": tuple(d["levels"])})


def fit_calibration(peak: np.ndarray, error_mm: np.ndarray, names: tuple[str, ...], source: str,
                    flag_share: float = 0.15) -> ErrorCalibration:
    """Fit on ``peak`` and actual ``error_mm`` ``(N, K)`` of N images' K landmarks named ``names``."""
    peak, error_mm = np.asarray(peak, np.float64), np.asarray(error_mm, np.float64)
    n, k = error_mm.shape
    if peak.shape != (n, k) or len(names) != k:
        raise ValueError(f"peaks {peak.shape}, errors {error_mm.shape} and {len(names)} names do not match")
    if n < 5:
        raise ValueError(f"{n} image(s): a calibration needs the predictions of at least 5 images (better: every "
                         "image of a cross-validation)")
    keep = np.isfinite(peak) & np.isfinite(error_mm)
    design = np.concatenate([np.tile(np.eye(k), (n, 1)), peak.reshape(-1, 1)], axis=1)[keep.reshape(-1)]
    target = np.log(error_mm.reshape(-1)[keep.reshape(-1)] + LOG_FLOOR_MM)
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    calibration = ErrorCalibration(tuple(names), tuple(float(c) for c in coef[:k]), float(coef[k]), 0.0, flag_share,
                                   int(keep.sum()), source)
    expected = calibration.expected_error_mm(peak)[keep]
    threshold = float(np.quantile(expected, 1 - flag_share))
    return ErrorCalibration(**{**calibration.__dict__, "threshold_mm": threshold})
