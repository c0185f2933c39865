"""Letterbox: resize keeping the aspect ratio, pad to the target size, and map coordinates exactly both ways.

Coordinates are continuous pixel coordinates with the centre of the top-left pixel at ``(0, 0)``. A resize by
``scale`` maps a pixel centre ``x`` to ``(x + 0.5) * scale - 0.5``: the convention ``cv2.resize`` follows, so
landmarks stay on the anatomy they mark after resizing.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor


@dataclass(frozen=True)
class Letterbox:
    """The mapping between an original image of ``source_size`` and its letterboxed ``target_size`` version.

    Sizes are ``(height, width)``. The resized content is centred; the rest is padded with zeros.
    """

    source_size: tuple[int, int]
    target_size: tuple[int, int]

    def __post_init__(self) -> None:
        if min(self.source_size) <= 0 or min(self.target_size) <= 0:
            raise ValueError(f"sizes must be positive, got source {self.source_size} target {self.target_size}")

    @property
    def resized_size(self) -> tuple[int, int]:
        """``(height, width)`` of the image content inside the target, before padding."""
        (h, w), (th, tw) = self.source_size, self.target_size
        ratio = min(th / h, tw / w)
        return min(th, max(1, round(h * ratio))), min(tw, max(1, round(w * ratio)))

    @property
    def ratio(self) -> float:
        """The resize factor the letterbox aims at (the same on both axes; :attr:`scale` is what rounding the size
        to whole pixels makes of it)."""
        (h, w), (th, tw) = self.source_size, self.target_size
        return min(th / h, tw / w)

    @property
    def scale(self) -> tuple[float, float]:
        """Per-axis scale ``(sx, sy)``: exactly what the resize does, so rounding of the size is accounted for."""
        (h, w), (rh, rw) = self.source_size, self.resized_size
        return rw / w, rh / h

    @property
    def pad(self) -> tuple[int, int]:
        """Left and top padding ``(pad_x, pad_y)`` in target pixels."""
        (th, tw), (rh, rw) = self.target_size, self.resized_size
        return (tw - rw) // 2, (th - rh) // 2

    def _params(self, like: ArrayLike):
        sx, sy = self.scale
        px, py = self.pad
        if isinstance(like, torch.Tensor):
            dtype = like.dtype if like.is_floating_point() else torch.float64
            return (torch.tensor([sx, sy], dtype=dtype, device=like.device),
                    torch.tensor([px, py], dtype=dtype, device=like.device))
        return np.array([sx, sy]), np.array([px, py], dtype=np.float64)

    def forward(self, points: ArrayLike) -> ArrayLike:
        """Original pixel coordinates ``(..., 2)`` -> letterboxed coordinates ``(..., 2)``."""
        scale, pad = self._params(points)
        return (points + 0.5) * scale - 0.5 + pad

    def inverse(self, points: ArrayLike) -> ArrayLike:
        """Letterboxed coordinates ``(..., 2)`` -> original pixel coordinates ``(..., 2)``."""
        scale, pad = self._params(points)
        return (points - pad + 0.5) / scale - 0.5

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Letterbox an ``(H, W)`` uint8 image to ``target_size``.

        Downscaling uses area interpolation (no aliasing of fine bone edges), upscaling bilinear.
        """
        if image.shape[:2] != tuple(self.source_size):
            raise ValueError(f"image is {image.shape[:2]}, this letterbox was made for {self.source_size}")
        (rh, rw), (th, tw), (px, py) = self.resized_size, self.target_size, self.pad
        interpolation = cv2.INTER_AREA if rh < image.shape[0] else cv2.INTER_LINEAR
        resized = cv2.resize(image, (rw, rh), interpolation=interpolation)
        out = np.zeros((th, tw) + image.shape[2:], dtype=image.dtype)
        out[py : py + rh, px : px + rw] = resized
        return out


def to_original(landmarks: np.ndarray, letterboxes: list[Letterbox]) -> np.ndarray:
    """Letterboxed ``(N, K, 2)`` -> original pixels ``(N, K, 2)`` float64, one letterbox per image."""
    return np.stack([lb.inverse(np.asarray(p, np.float64)) for lb, p in zip(letterboxes, landmarks)])
