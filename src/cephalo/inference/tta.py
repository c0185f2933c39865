"""Test-time augmentation: predict several slightly moved views of each image and average the landmarks in the
original image's coordinates.

The global stage sees each letterboxed image as :class:`View` s, each a scale about the image centre and a shift,
``T(p) = c + scale * (p - c) + shift`` with ``c`` the centre in pixel coordinates (centre of the top-left pixel at
``(0, 0)``, as in the codec); a landmark decoded at ``q`` in a view is at ``T^-1(q)`` in the letterbox. A shift of
half a heatmap pixel moves the landmark between the heatmap's pixel centres, which is where its quantisation and the
network's stride show. The local stage starts from the rough position moved by ``local_offsets_mm``. No flips: a
lateral cephalogram is not mirror-symmetric, and its landmarks would change names. Whether each part helps is
measured by cross-validation (``benchmarks/tta_cv.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class View:
    """``T(p) = c + scale * (p - c) + shift``, ``shift = (dx, dy)`` in letterbox pixels."""

    scale: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)

    def warp(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 1, H, W)`` uint8 letterboxed images -> the same images as this view sees them (uint8; outside the
        image is 0, the letterbox's own padding)."""
        if self.scale == 1.0 and self.shift == (0.0, 0.0):
            return images
        b, _, h, w = images.shape
        # affine_grid maps output to input in normalised coordinates, where the image centre is 0 and a pixel is 2 / W
        theta = torch.tensor([[1 / self.scale, 0.0, -2 * self.shift[0] / w / self.scale],
                              [0.0, 1 / self.scale, -2 * self.shift[1] / h / self.scale]], device=images.device)
        grid = F.affine_grid(theta.expand(b, 2, 3), [b, 1, h, w], align_corners=False)
        warped = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return warped.round_().clamp_(0, 255).to(torch.uint8)

    def unwarp(self, points: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Points ``(..., 2)`` found in this view -> the letterbox's pixels; ``size`` ``(H, W)``."""
        if self.scale == 1.0 and self.shift == (0.0, 0.0):
            return points
        (cx, cy), (dx, dy) = ((size[1] - 1) / 2, (size[0] - 1) / 2), self.shift  # Python numbers: no host copy
        return torch.stack([cx + (points[..., 0] - dx - cx) / self.scale,
                            cy + (points[..., 1] - dy - cy) / self.scale], dim=-1)


@dataclass(frozen=True)
class TestTimeAugmentation:
    """The views of the global stage and the start offsets of the local stage (``(n, 2)`` mm, identity included)."""

    __test__ = False  # not a pytest test class, despite its name

    views: tuple[View, ...]
    local_offsets_mm: tuple[tuple[float, float], ...] = ((0.0, 0.0),)
    reduce: str = "mean"  # or "median": how the views' landmarks are combined, per coordinate

    def combine(self, points: torch.Tensor) -> torch.Tensor:
        """``(V, ..., 2)`` landmarks of the views -> ``(..., 2)``."""
        return points.mean(0) if self.reduce == "mean" else points.median(0).values

    @classmethod
    def standard(cls, stride: int, shift_heatmap_px: float = 0.5, scales: tuple[float, ...] = (),
                 local_offset_mm: float = 0.0, reduce: str = "mean") -> TestTimeAugmentation:
        """The identity, four shifts of ``shift_heatmap_px`` heatmap pixels (left, right, up, down), the ``scales``;
        the local stage starts from the rough position and, with ``local_offset_mm``, four moved by that much."""
        d = shift_heatmap_px * stride
        views = [View()] + [View(shift=s) for s in (((d, 0.0), (-d, 0.0), (0.0, d), (0.0, -d)) if d else ())]
        views += [View(scale=s) for s in scales]
        m = local_offset_mm
        offsets = ((0.0, 0.0),) + (((m, 0.0), (-m, 0.0), (0.0, m), (0.0, -m)) if m else ())
        return cls(tuple(views), offsets, reduce)


NO_TTA = TestTimeAugmentation((View(),))  # one identity view and one start: combining them returns them unchanged
