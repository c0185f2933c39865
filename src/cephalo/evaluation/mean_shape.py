"""The mean-shape baseline: every image gets the training set's mean landmark layout.

It needs no model, so it is the floor any trained detector must clear by far, and it exercises the whole path
records -> letterbox -> original coordinates -> metrics.
"""

from __future__ import annotations

import numpy as np

from cephalo.datasets.record import LandmarkRecord
from cephalo.preprocessing.cache import CacheEntry


def fit_mean_shape(records: list[LandmarkRecord], entries: list[CacheEntry]) -> np.ndarray:
    """Mean landmarks ``(K, 2)`` in letterboxed pixels over the training records."""
    return np.mean([e.letterbox.forward(r.landmarks) for r, e in zip(records, entries)], axis=0)


def predict_mean_shape(mean_shape: np.ndarray, entries: list[CacheEntry]) -> np.ndarray:
    """The mean shape mapped into each image's original pixels: ``(N, K, 2)``."""
    return np.stack([e.letterbox.inverse(mean_shape) for e in entries])
