"""Turning cached uint8 images into network input: the one normalisation training and inference share."""

from __future__ import annotations

import torch

# Grey input normalisation: the mean and std of ImageNet's three channels, averaged. Pretrained RGB stems are
# adapted to grey by summing over channels, which matches inputs normalised like this.
GREY_MEAN, GREY_STD = 0.449, 0.226


def to_model_input(images: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """``(B, 1, H, W)`` uint8 -> normalised float32 on ``device`` (copied as uint8: 4x fewer bytes to move)."""
    x = images.to(device, non_blocking=True).float().div_(255.0).sub_(GREY_MEAN).div_(GREY_STD)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
