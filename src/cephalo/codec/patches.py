"""Patches: square crops of an image at a physical scale, centred on points, cut in batch with ``grid_sample``.

The local (refinement) stage looks at a small patch of the original image around each landmark's rough position.
A patch is ``P x P`` pixels of ``mm_per_px`` millimetres each, whatever the image's own spacing, so one model works
on images of devices with different pixel spacings. Coordinates follow :mod:`cephalo.codec.heatmap` (the centre of
the top-left pixel at ``(0, 0)``, x right, y down). With ``ratio = mm_per_px / image_mm_per_px`` (image pixels per
patch pixel), a patch centred on the image point ``c`` has its pixel ``u`` at the image point::

    x = c + (u - (P - 1) / 2) * ratio        u = (P - 1) / 2 + (x - c) / ratio

so the centre ``c`` is the patch's centre ``((P - 1) / 2, (P - 1) / 2)``. Sampling is bilinear with
``align_corners=False``, whose normalised coordinate ``(2 x + 1) / W - 1`` is exactly this pixel-centre convention;
outside the image reads 0 (black, as the letterbox padding). Cut from an image already resampled near the patch
scale (``ratio`` about 1, :mod:`cephalo.preprocessing.rescale`), bilinear sampling does not alias.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from cephalo.device import no_autocast


@dataclass(frozen=True)
class PatchGeometry:
    """``size`` ``P`` pixels a side at ``mm_per_px`` millimetres per pixel."""

    size: int
    mm_per_px: float

    def __post_init__(self) -> None:
        if int(self.size) != self.size or self.size < 2:
            raise ValueError(f"patch size must be an integer >= 2, got {self.size!r}")
        if not self.mm_per_px > 0:
            raise ValueError(f"patch mm_per_px must be positive, got {self.mm_per_px!r}")

    @property
    def centre(self) -> float:
        """Patch coordinate of the point a patch is centred on, in x and in y."""
        return (self.size - 1) / 2

    def ratio(self, image_mm_per_px: Tensor) -> Tensor:
        """Image pixels per patch pixel, ``(B,)`` -> ``(B, 1, 1)`` (broadcasts over ``(B, K, 2)`` points)."""
        return (self.mm_per_px / torch.as_tensor(image_mm_per_px, dtype=torch.float32)).reshape(-1, 1, 1)

    def to_patch(self, points: Tensor, centres: Tensor, image_mm_per_px: Tensor) -> Tensor:
        """Image points ``(B, K, 2)`` -> coordinates in the patches centred on ``centres (B, K, 2)``."""
        ratio = self.ratio(image_mm_per_px).to(points.device)
        return self.centre + (points - centres) / ratio

    def to_image(self, patch_points: Tensor, centres: Tensor, image_mm_per_px: Tensor) -> Tensor:
        """Patch coordinates ``(B, K, 2)`` -> image points; the exact inverse of :meth:`to_patch`."""
        ratio = self.ratio(image_mm_per_px).to(patch_points.device)
        return centres + (patch_points - self.centre) * ratio

    def cut(self, images: Tensor, centres: Tensor, image_mm_per_px: Tensor) -> Tensor:
        """The ``K`` patches of each image: ``images (B, C, H, W)`` float, ``centres (B, K, 2)`` image pixels,
        ``image_mm_per_px (B,)`` -> ``(B, K, C, P, P)`` in the images' dtype, on their device.

        One ``grid_sample`` per batch: each image is sampled on the ``K`` grids of its patches stacked as one
        ``(K * P, P)`` grid, so no image is copied ``K`` times. Images of different sizes are padded (with 0) to
        one tensor by the caller; points are in each image's own pixels, which padding on the right and bottom
        leaves unchanged.
        """
        b, c, h, w = images.shape
        k, p = centres.shape[1], self.size
        with no_autocast(images.device):
            offsets = (torch.arange(p, device=images.device, dtype=torch.float32) - self.centre)  # (P,)
            ratio = self.ratio(image_mm_per_px).to(images.device)  # (B, 1, 1)
            centres = centres.to(images.device, torch.float32)
            xs = centres[..., :1] + offsets * ratio  # (B, K, P) image x of each patch column
            ys = centres[..., 1:] + offsets * ratio  # (B, K, P) image y of each patch row
            gx = ((2 * xs + 1) / w - 1)[:, :, None, :].expand(b, k, p, p)
            gy = ((2 * ys + 1) / h - 1)[:, :, :, None].expand(b, k, p, p)
            grid = torch.stack((gx, gy), -1).reshape(b, k * p, p, 2)
            patches = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="zeros",
                                    align_corners=False)  # (B, C, K * P, P)
        return patches.reshape(b, c, k, p, p).transpose(1, 2).to(images.dtype)


def own_heatmaps(heatmaps: Tensor, num_landmarks: int) -> Tensor:
    """A local model's output for the patches of ``B`` images, ``(B * K, K, h, w)`` (patch ``i * K + k`` is image
    ``i``'s patch of landmark ``k``) -> ``(B, K, h, w)``: each patch's map of its own landmark, the only one it
    is trained on and read for (the other ``K - 1`` channels carry no target)."""
    n, k, h, w = heatmaps.shape
    if k != num_landmarks or n % k:
        raise ValueError(f"expected (B * {num_landmarks}, {num_landmarks}, h, w) heatmaps, got {tuple(heatmaps.shape)}")
    return heatmaps.reshape(n // k, k, k, h, w).diagonal(dim1=1, dim2=2).permute(0, 3, 1, 2)
