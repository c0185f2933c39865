"""The local (refinement) stage's training maths: patches of the original around jittered landmark positions, one
forward pass for all ``B * K`` patches of a batch, each patch supervised on its own landmark's heatmap only (the
stage at work, in validation and prediction, is :mod:`cephalo.artifact.refine`).

The jitter is what the global stage really gets wrong: error vectors ``(N, K, 2)`` in mm measured on images the
global model did not train on (its validation images), drawn per landmark; errors on its own training images are
too small to teach a correction.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cephalo.codec import HeatmapCodec
from cephalo.codec.patches import PatchGeometry, own_heatmaps
from cephalo.engine.step.augment import AugmentConfig, augment
from cephalo.engine.step.loss import heatmap_loss
from cephalo.precision import Precision
from cephalo.preprocessing.normalize import to_model_input


def draw_jitter(errors_mm: Tensor, batch: int, generator: torch.Generator | None = None,
                extra_mm: float = 0.0) -> Tensor:
    """``batch`` draws of real global errors, each landmark's from its own column, plus Gaussian noise of
    ``extra_mm``: ``(N, K, 2)`` -> ``(B, K, 2)`` mm. Non-finite errors (a landmark the global stage was not scored
    on) count as 0."""
    n, k, _ = errors_mm.shape
    rows = torch.randint(n, (batch, k), generator=generator, device=errors_mm.device)
    drawn = torch.nan_to_num(errors_mm[rows, torch.arange(k, device=errors_mm.device)], nan=0.0, posinf=0.0,
                             neginf=0.0)  # (B, K, 2)
    if extra_mm:
        drawn = drawn + torch.randn(drawn.shape, generator=generator, device=errors_mm.device) * extra_mm
    return drawn


def local_inputs(images: Tensor, spacing_mm: Tensor, landmarks: Tensor, jitter_mm: Tensor, geometry: PatchGeometry,
                 device: torch.device, augment_cfg: AugmentConfig | None = None, channels_last: bool = False,
                 generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Network input and target positions of the patches of a batch.

    Args:
        images: ``(B, 1, H, W)`` grey (uint8 or float 0-255) at about the patch scale, padded to one size.
        spacing_mm: ``(B,)`` each image's mm per pixel. ``landmarks``: ``(B, K, 2)`` true positions in its pixels.
        jitter_mm: ``(B, K, 2)`` where the rough positions (the patch centres) are, relative to the truth.
    Returns:
        ``x (B * K, C, P, P)`` normalised (augmented when ``augment_cfg``; ``C`` 2 with the geometry's context
        channel), ``points (B * K, 1, 2)``: where each patch's landmark is, in its (fine) pixels (may lie outside:
        the loss masks it).
    """
    b, k, _ = landmarks.shape
    images, landmarks = images.to(device), landmarks.to(device)
    spacing_mm, jitter_mm = spacing_mm.to(device, torch.float32), jitter_mm.to(device)
    centres = landmarks + jitter_mm / spacing_mm.view(b, 1, 1)
    patches = geometry.cut(images.float(), centres, spacing_mm).flatten(0, 1)  # (B * K, C, P, P), 0-255
    points = geometry.to_patch(landmarks, centres, spacing_mm).reshape(b * k, 1, 2)
    x = to_model_input(patches, device, channels_last)
    if augment_cfg is not None:
        x, points = augment(x, points, augment_cfg, generator, geometry.channel_scales)
    return x, points


def local_loss(model: nn.Module, codec: HeatmapCodec, precision: Precision, x: Tensor, points: Tensor,
               num_landmarks: int) -> Tensor:
    """Heatmap MSE of each patch's own landmark (``x (B * K, C, P, P)``, ``points (B * K, 1, 2)``) -> ``()``."""
    target = codec.encode(points).reshape(-1, num_landmarks, *codec.heatmap_size)  # (B, K, h, w)
    with precision.autocast():
        heatmaps = model(x)  # (B * K, K, h, w)
    own = own_heatmaps(heatmaps, num_landmarks)
    return heatmap_loss(own, target, codec.inside(points).reshape(-1, num_landmarks))
