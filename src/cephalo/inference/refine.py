"""Refinement at inference: a local model corrects rough landmark positions from patches of the original image."""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import Tensor, nn

from cephalo.codec import HeatmapCodec
from cephalo.codec.patches import PatchGeometry, own_heatmaps
from cephalo.preprocessing.normalize import to_model_input


@torch.no_grad()
def refine_landmarks(model: nn.Module, codec: HeatmapCodec, geometry: PatchGeometry, images: Tensor,
                     spacing_mm: Tensor, rough: Tensor, autocast=nullcontext, channels_last: bool = False
                     ) -> tuple[Tensor, Tensor]:
    """``images (B, 1, H, W)`` grey at about the patch scale, ``spacing_mm (B,)``, ``rough (B, K, 2)`` in their
    pixels -> refined landmarks ``(B, K, 2)`` in the same pixels and each own heatmap's peak ``(B, K)``."""
    device = next(model.parameters()).device
    k = rough.shape[1]
    rough, spacing_mm = rough.to(device, torch.float32), spacing_mm.to(device, torch.float32)
    patches = geometry.cut(images.to(device).float(), rough, spacing_mm).flatten(0, 1)  # (B * K, 1, P, P)
    with autocast():
        heatmaps = model(to_model_input(patches, device, channels_last))  # (B * K, K, h, w)
    found, confidence = codec.decode(own_heatmaps(heatmaps.float(), k))  # (B, K, 2) patch pixels
    return geometry.to_image(found, rough, spacing_mm), confidence
