"""The originals at the local stage's patch scale, as the local stage trains and validates on them: memory-mapped
from the :class:`~cephalo.preprocessing.cache.PatchScaleCache` (decoded and resampled once), their landmarks in
the resampled pixels, and the mapping back to each original's pixels."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from cephalo.console import progress_bar
from cephalo.preprocessing.cache import PatchScaleCache
from cephalo.preprocessing.rescale import Rescale, stack_padded


@dataclass(frozen=True)
class ScaledImages:
    """Originals at the patch scale, memory-mapped from the :class:`PatchScaleCache`; a batch is stacked (padded
    right and bottom with 0, which leaves pixel coordinates unchanged) when it is asked for."""

    arrays: tuple[np.ndarray, ...]  # (h_i, w_i) uint8 each
    spacing_mm: Tensor  # (N,) float32: each resampled image's mm per pixel
    landmarks: Tensor  # (N, K, 2) float32: the truth in resampled pixels
    rescales: tuple[Rescale, ...]

    def __len__(self) -> int:
        return len(self.arrays)

    def __getstate__(self) -> dict:
        """Memory-mapped arrays pickle as their file (worker processes, Windows' spawn), not as their pixels."""
        arrays = [("file", a.filename) if isinstance(a, np.memmap) and a.filename else ("array", a)
                  for a in self.arrays]
        return {**self.__dict__, "arrays": arrays}

    def __setstate__(self, state: dict) -> None:
        arrays = tuple(np.load(a, mmap_mode="r") if kind == "file" else a for kind, a in state["arrays"])
        self.__dict__.update({**state, "arrays": arrays})

    def images(self, rows) -> Tensor:
        """``(len(rows), 1, H, W)`` uint8: the images ``rows`` (a tensor, slice or list of indices)."""
        picked = range(len(self.arrays))[rows] if isinstance(rows, slice) else [int(i) for i in rows]
        return stack_padded([torch.from_numpy(np.array(self.arrays[i])) for i in picked])

    @classmethod
    def read(cls, records, cache: PatchScaleCache, progress: bool) -> tuple[ScaledImages, float | None]:
        """Each record's image at ``cache``'s scale (decoded and resampled once, into the cache); also the seconds
        per image that decoding took (None: all were cached)."""
        arrays, rescales, decoded, seconds = [], [], 0, 0.0
        for record in progress_bar(records, desc="patch scale", unit="img", enabled=progress):
            start = time.perf_counter()
            array, rescale, built = cache.load(record)
            arrays.append(array)
            rescales.append(rescale)
            decoded += built
            seconds += (time.perf_counter() - start) if built else 0.0
        landmarks = np.stack([s.forward(r.landmarks) for s, r in zip(rescales, records)])
        return cls(tuple(arrays), torch.tensor([s.actual_mm_per_px for s in rescales], dtype=torch.float32),
                   torch.tensor(landmarks, dtype=torch.float32), tuple(rescales)), seconds / decoded if decoded else None

    def to_scaled(self, points: np.ndarray) -> Tensor:
        """Original pixels ``(N, K, 2)`` -> resampled pixels."""
        return torch.tensor(np.stack([s.forward(p) for s, p in zip(self.rescales, points)]), dtype=torch.float32)

    def to_original(self, points: Tensor) -> np.ndarray:
        return np.stack([s.inverse(p) for s, p in zip(self.rescales, points.double().cpu().numpy())])
