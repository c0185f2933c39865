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

Context. A patch small enough to be precise may not show what a low-contrast landmark is recognised by (the
mandible's angle for gonion, the ear rod for porion). With ``context = f`` each patch gets a second channel of the
same ``P x P`` pixels and the same centre at ``f`` times coarser pixels, so ``f`` times the field of view: it is
cut from the image box-averaged over ``f x f`` blocks (so it does not alias either), whose pixel ``j`` is centred on
image point ``f j + (f - 1) / 2``. Patch coordinates are always the fine channel's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from cephalo.device import no_autocast


@dataclass(frozen=True)
class PatchGeometry:
    """``size`` ``P`` pixels a side at ``mm_per_px`` millimetres per pixel; ``context`` ``f >= 2`` adds a channel
    at ``f * mm_per_px`` (0: none)."""

    size: int
    mm_per_px: float
    context: int = 0

    def __post_init__(self) -> None:
        if int(self.size) != self.size or self.size < 2:
            raise ValueError(f"patch size must be an integer >= 2, got {self.size!r}")
        if not self.mm_per_px > 0:
            raise ValueError(f"patch mm_per_px must be positive, got {self.mm_per_px!r}")
        if int(self.context) != self.context or self.context == 1 or self.context < 0:
            raise ValueError(f"patch context must be 0 (none) or an integer >= 2, got {self.context!r}")

    @property
    def channel_scales(self) -> tuple[float, ...]:
        """Each channel's pixel in the fine channel's pixels: ``(1,)``, or ``(1, f)`` with context."""
        return (1.0, float(self.context)) if self.context else (1.0,)

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
        ``image_mm_per_px (B,)`` -> ``(B, K, C, P, P)`` in the images' dtype, on their device; with context
        ``(B, K, 2 C, P, P)``, the ``C`` context channels after the fine ones.

        One ``grid_sample`` per batch (and scale): each image is sampled on the ``K`` grids of its patches stacked
        as one ``(K * P, P)`` grid, so no image is copied ``K`` times. Images of different sizes are padded (with 0)
        to one tensor by the caller; points are in each image's own pixels, which padding on the right and bottom
        leaves unchanged.
        """
        with no_autocast(images.device):
            ratio = self.ratio(image_mm_per_px).to(images.device)  # (B, 1, 1)
            centres = centres.to(images.device, torch.float32)
            patches = self._sample(images.float(), centres, ratio)
            if self.context:
                f = self.context
                # the pooled image's pixels are f image pixels, the context patch's f patch pixels: the same ratio
                pooled = F.avg_pool2d(images.float(), f)  # (B, C, H // f, W // f), block means
                patches = torch.cat((patches, self._sample(pooled, (centres - (f - 1) / 2) / f, ratio)), 2)
        return patches.to(images.dtype)

    def _sample(self, images: Tensor, centres: Tensor, ratio: Tensor) -> Tensor:
        """``images (B, C, H, W)`` float32 -> ``(B, K, C, P, P)``: patches centred on ``centres (B, K, 2)`` (image
        pixels), ``ratio (B, 1, 1)`` image pixels per patch pixel."""
        b, c, h, w = images.shape
        k, p = centres.shape[1], self.size
        offsets = (torch.arange(p, device=images.device, dtype=torch.float32) - self.centre)  # (P,)
        xs = centres[..., :1] + offsets * ratio  # (B, K, P) image x of each patch column
        ys = centres[..., 1:] + offsets * ratio  # (B, K, P) image y of each patch row
        gx = ((2 * xs + 1) / w - 1)[:, :, None, :].expand(b, k, p, p)
        gy = ((2 * ys + 1) / h - 1)[:, :, :, None].expand(b, k, p, p)
        grid = torch.stack((gx, gy), -1).reshape(b, k * p, p, 2)
        patches = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros",
                                align_corners=False)  # (B, C, K * P, P)
        return patches.reshape(b, c, k, p, p).transpose(1, 2)


def own_heatmaps(heatmaps: Tensor, num_landmarks: int) -> Tensor:
    """A local model's output for the patches of ``B`` images, ``(B * K, K, h, w)`` (patch ``i * K + k`` is image
    ``i``'s patch of landmark ``k``) -> ``(B, K, h, w)``: each patch's map of its own landmark, the only one it
    is trained on and read for (the other ``K - 1`` channels carry no target)."""
    n, k, h, w = heatmaps.shape
    if k != num_landmarks or n % k:
        raise ValueError(f"expected (B * {num_landmarks}, {num_landmarks}, h, w) heatmaps, got {tuple(heatmaps.shape)}")
    return heatmaps.reshape(n // k, k, k, h, w).diagonal(dim1=1, dim2=2).permute(0, 3, 1, 2)
