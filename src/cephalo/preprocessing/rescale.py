"""An original image resampled to a physical scale (mm per pixel): where the local stage cuts its patches.

Resizing by ``(fx, fy)`` maps a pixel centre ``x`` to ``(x + 0.5) * fx - 0.5`` (the ``cv2.resize`` convention, as
in :mod:`cephalo.preprocessing.letterbox`). Shrinking uses area averaging (no aliasing), enlarging bilinear.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch


@dataclass(frozen=True)
class Rescale:
    """The mapping between an original of ``source_size`` ``(H, W)`` at ``spacing_mm`` and its version at
    ``mm_per_px``; the size is rounded, so :attr:`scale` is what the resize really does per axis."""

    source_size: tuple[int, int]
    spacing_mm: float
    mm_per_px: float

    @property
    def size(self) -> tuple[int, int]:
        factor = self.spacing_mm / self.mm_per_px
        return max(1, round(self.source_size[0] * factor)), max(1, round(self.source_size[1] * factor))

    @property
    def scale(self) -> tuple[float, float]:
        (h, w), (rh, rw) = self.source_size, self.size
        return rw / w, rh / h

    @property
    def actual_mm_per_px(self) -> float:
        """The resampled image's spacing (mean of the axes: rounding the size leaves them within 1 / size)."""
        sx, sy = self.scale
        return self.spacing_mm * 2 / (sx + sy)

    def forward(self, points: np.ndarray) -> np.ndarray:
        """Original pixels ``(..., 2)`` -> resampled pixels."""
        return (np.asarray(points, np.float64) + 0.5) * np.array(self.scale) - 0.5

    def inverse(self, points: np.ndarray) -> np.ndarray:
        """Resampled pixels ``(..., 2)`` -> original pixels; the exact inverse of :meth:`forward`."""
        return (np.asarray(points, np.float64) + 0.5) / np.array(self.scale) - 0.5

    def apply(self, image: np.ndarray) -> np.ndarray:
        """``(H, W)`` uint8 original -> the resampled ``(h, w)`` uint8 image."""
        if tuple(image.shape[:2]) != tuple(self.source_size):
            raise ValueError(f"image is {image.shape[:2]}, the mapping was made for {self.source_size}")
        h, w = self.size
        shrink = h * w < image.shape[0] * image.shape[1]
        return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def stack_padded(images: list[torch.Tensor]) -> torch.Tensor:
    """``(h_i, w_i)`` images -> one ``(B, 1, H, W)`` tensor, each padded with 0 on the right and bottom, which leaves
    its pixel coordinates unchanged."""
    h, w = max(i.shape[-2] for i in images), max(i.shape[-1] for i in images)
    batch = torch.zeros(len(images), 1, h, w, dtype=images[0].dtype)
    for k, image in enumerate(images):
        batch[k, 0, : image.shape[-2], : image.shape[-1]] = image
    return batch
