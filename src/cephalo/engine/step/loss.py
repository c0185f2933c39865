"""The training loss: mean squared error between predicted and target heatmaps, over the landmarks that are
inside the (augmented) image."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def heatmap_loss(predicted: torch.Tensor, target: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """MSE per heatmap ``(B, K, h, w)``, averaged over landmarks inside the image (``visible (B, K)``), in float32."""
    per_landmark = F.mse_loss(predicted.float(), target, reduction="none").mean(dim=(-2, -1))  # (B, K)
    weight = visible.to(per_landmark.dtype)
    return (per_landmark * weight).sum() / weight.sum().clamp_min(1.0)
