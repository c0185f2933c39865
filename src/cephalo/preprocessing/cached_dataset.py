"""The training-time dataset: reads letterboxed images from the cache, never the originals."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from cephalo.datasets.record import LandmarkRecord
from cephalo.preprocessing.cache import CacheEntry
from cephalo.preprocessing.letterbox import to_original


class CachedLandmarkDataset(Dataset):
    """Samples of letterboxed images with their landmarks in letterboxed pixel coordinates.

    Each item is ``(image, landmarks, index)``: ``image`` ``(1, H, W)`` uint8, ``landmarks`` ``(K, 2)`` float32,
    ``index`` the position in :attr:`records`. Workers do no more than read an array: normalisation, heatmap
    targets and augmentation happen in batch on the training device. Everything held here pickles, so workers
    start under Windows' spawn method too.
    """

    def __init__(self, records: list[LandmarkRecord], entries: list[CacheEntry]):
        if len(records) != len(entries):
            raise ValueError(f"{len(records)} records but {len(entries)} cache entries")
        if not records:
            raise ValueError("the dataset is empty: no usable records")
        names = {r.landmark_names for r in records}
        if len(names) != 1:
            raise ValueError("records disagree on landmark names; one dataset must use one landmark set")
        self.records = list(records)
        self.entries = list(entries)
        self.landmark_names = records[0].landmark_names
        self.image_size = entries[0].target_size
        self.landmarks = np.stack(
            [e.letterbox.forward(r.landmarks) for r, e in zip(records, entries)]
        ).astype(np.float32)  # (N, K, 2) in letterboxed pixels, computed once
        self.spacing_mm = np.array([r.spacing_mm for r in records], dtype=np.float64)
        # (N,) mm of anatomy per letterboxed pixel: what a target of a physical size is converted with
        self.mm_per_letterbox_px = self.spacing_mm / np.array([e.letterbox.ratio for e in entries])

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        image = torch.from_numpy(self.entries[index].load())[None]
        return image, torch.from_numpy(self.landmarks[index]), index

    def to_original(self, indices: np.ndarray | list[int], landmarks: np.ndarray) -> np.ndarray:
        """Map letterboxed ``landmarks (N, K, 2)`` of samples ``indices`` back to original pixels ``(N, K, 2)``."""
        return to_original(landmarks, [self.entries[i].letterbox for i in indices])
