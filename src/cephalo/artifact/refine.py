"""The local (refinement) stage at work, for every model that runs it: validation in training, the PyTorch and the
ONNX predictors. Patches cut at rough positions, the local model's own heatmaps decoded, the positions corrected."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import torch
from torch import Tensor, nn

from cephalo.codec import HeatmapCodec
from cephalo.codec.patches import PatchGeometry, own_heatmaps
from cephalo.preprocessing.normalize import to_model_input


@torch.no_grad()
def refine_with(local_heatmaps: Callable[[Tensor], Tensor], codec: HeatmapCodec, geometry: PatchGeometry,
                images: Tensor, spacing_mm: Tensor, rough: Tensor) -> tuple[Tensor, Tensor]:
    """Refinement by any local model: ``local_heatmaps`` maps patches ``(B * K, C, P, P)`` of grey values 0-255
    to heatmaps ``(B * K, K, h, w)`` (a PyTorch model, an ONNX session). ``images (B, 1, H, W)`` at about the
    patch scale, ``spacing_mm (B,)``, ``rough (B, K, 2)`` in their pixels -> refined landmarks ``(B, K, 2)`` in
    the same pixels and each own heatmap's peak ``(B, K)``, on ``images``' device."""
    device, k = images.device, rough.shape[1]
    rough, spacing_mm = rough.to(device, torch.float32), spacing_mm.to(device, torch.float32)
    patches = geometry.cut(images.float(), rough, spacing_mm).flatten(0, 1)  # (B * K, C, P, P)
    found, confidence = codec.decode(own_heatmaps(local_heatmaps(patches).float(), k))  # (B, K, 2) patch pixels
    return geometry.to_image(found, rough, spacing_mm), confidence


@torch.no_grad()
def refine_landmarks(model: nn.Module, codec: HeatmapCodec, geometry: PatchGeometry, images: Tensor,
                     spacing_mm: Tensor, rough: Tensor, autocast=nullcontext, channels_last: bool = False
                     ) -> tuple[Tensor, Tensor]:
    """:func:`refine_with` a PyTorch local model, on its device (normalised as in training)."""
    device = next(model.parameters()).device

    def heatmaps(patches: Tensor) -> Tensor:
        with autocast():
            return model(to_model_input(patches, device, channels_last))

    return refine_with(heatmaps, codec, geometry, images.to(device), spacing_mm, rough)
