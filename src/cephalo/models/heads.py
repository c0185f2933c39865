"""Heatmap heads: backbone feature maps -> K landmark heatmaps at stride 4, 2 or 1.

- ``HRNetHead`` (HRNetV2 / HRNet-pose style): branches 2-4 bilinearly upsampled to stride 4, concatenated,
  1x1 conv + BN + ReLU, then a 1x1 conv to K heatmaps.
- ``SimpleBaselineHead`` (Xiao et al. 2018) for ResNet: three 4x4 stride-2 deconvolutions (256 ch, BN, ReLU)
  from stride 32 to stride 4, then a 1x1 conv to K heatmaps.

``hrnet_head`` and ``simple_baseline_head`` build one for a given backbone: they are what a model is registered
with as its ``head`` (``registry.register_model``).

``head_stride`` 2 or 1 adds one or two "bilinear x2 + 3x3 conv + BN + ReLU" stages before the final 1x1 conv, so
heatmaps come out at half or full input resolution (the CL-Detection 2023 winner predicted full-resolution
heatmaps at 1024²). Those stages are narrow (``upsample_channels``, 64 then 32 by default) because their maps
are 4x and 16x larger than the stride-4 ones. Bilinear resizing uses ``align_corners=False``: pixel ``j`` at
stride ``s`` is centred on input coordinate ``j*s + (s-1)/2``, the codec's convention.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from cephalo.models.layers import batch_norm, checkpoint_call, conv_bn_relu, init_weights

HEAD_STRIDES = (4, 2, 1)


class Upsample2x(nn.Module):
    """Bilinear x2 then 3x3 conv + BN + ReLU: (B, in_ch, h, w) -> (B, out_ch, 2h, 2w)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.block = conv_bn_relu(in_ch, out_ch, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.block(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))


class _HeatmapHead(nn.Module):
    """Shared tail: ``trunk`` (head-specific, to stride 4) -> upsampling stages -> final 1x1 conv to K maps."""

    def __init__(self, trunk_channels: int, num_landmarks: int, head_stride: int,
                 upsample_channels: tuple[int, ...]):
        super().__init__()
        if head_stride not in HEAD_STRIDES:
            raise ValueError(f"head_stride must be one of {HEAD_STRIDES}, got {head_stride!r}")
        num_up = {4: 0, 2: 1, 1: 2}[head_stride]
        if len(upsample_channels) < num_up:
            raise ValueError(f"head_stride={head_stride} needs {num_up} upsample_channels, got {upsample_channels}")
        stages, ch = [], trunk_channels
        for out_ch in upsample_channels[:num_up]:
            stages.append(Upsample2x(ch, out_ch))
            ch = out_ch
        self.upsample = nn.ModuleList(stages)
        self.final = nn.Conv2d(ch, num_landmarks, 1)
        self.stride = head_stride
        self.grad_checkpointing = False

    def _init(self) -> None:
        init_weights(self)
        nn.init.normal_(self.final.weight, std=0.001)  # initial heatmaps ~0, as in HRNet/SimpleBaseline
        nn.init.zeros_(self.final.bias)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def _tail(self, x: Tensor, ckpt: bool) -> Tensor:
        for stage in self.upsample:
            x = checkpoint_call(stage, stage, x) if ckpt else stage(x)
        return self.final(x)

    def _checkpointing(self) -> bool:
        return self.grad_checkpointing and self.training and torch.is_grad_enabled()


class HRNetHead(_HeatmapHead):
    """``forward([y_0 .. y_3])`` (HRNet branches at strides 4..32, ``in_channels`` channels)
    -> heatmaps (B, K, H/head_stride, W/head_stride)."""

    def __init__(self, in_channels: tuple[int, ...], num_landmarks: int, head_stride: int = 4,
                 upsample_channels: tuple[int, ...] = (64, 32)):
        total = sum(in_channels)
        super().__init__(total, num_landmarks, head_stride, upsample_channels)
        self.fuse = conv_bn_relu(total, total, 1)
        self._init()

    def _fuse(self, *features: Tensor) -> Tensor:
        size = features[0].shape[-2:]
        up = [F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in features[1:]]
        return self.fuse(torch.cat([features[0], *up], dim=1))  # (B, sum(in_channels), H/4, W/4)

    def forward(self, features: list[Tensor]) -> Tensor:
        ckpt = self._checkpointing()
        # checkpointing keeps the four branch maps, not the 4x larger concatenation and its BN/ReLU outputs
        x = checkpoint_call(self.fuse, self._fuse, *features) if ckpt else self._fuse(*features)
        return self._tail(x, ckpt)


class SimpleBaselineHead(_HeatmapHead):
    """``forward([..., c5])`` (the stride-32 map (B, in_channels, H/32, W/32) is used)
    -> heatmaps (B, K, H/head_stride, W/head_stride)."""

    def __init__(self, in_channels: int, num_landmarks: int, head_stride: int = 4, deconv_channels: int = 256,
                 upsample_channels: tuple[int, ...] = (64, 32)):
        super().__init__(deconv_channels, num_landmarks, head_stride, upsample_channels)
        layers, ch = [], in_channels
        for _ in range(3):  # stride 32 -> 16 -> 8 -> 4; 4x4 kernel, padding 1: output exactly 2x the input
            deconv = nn.ConvTranspose2d(ch, deconv_channels, 4, stride=2, padding=1, bias=False)
            layers.append(nn.Sequential(deconv, batch_norm(deconv_channels), nn.ReLU(inplace=True)))
            ch = deconv_channels
        self.deconv = nn.ModuleList(layers)
        self._init()

    def forward(self, features: list[Tensor]) -> Tensor:
        ckpt = self._checkpointing()
        x = features[-1]
        for layer in self.deconv:
            x = checkpoint_call(layer, layer, x) if ckpt else layer(x)
        return self._tail(x, ckpt)


def hrnet_head(backbone: nn.Module, num_landmarks: int, head_stride: int) -> HRNetHead:
    """An ``HRNetHead`` fusing every one of ``backbone``'s feature maps (``backbone.out_channels``)."""
    return HRNetHead(backbone.out_channels, num_landmarks, head_stride)


def simple_baseline_head(backbone: nn.Module, num_landmarks: int, head_stride: int) -> SimpleBaselineHead:
    """A ``SimpleBaselineHead`` on ``backbone``'s last (stride-32) feature map."""
    return SimpleBaselineHead(backbone.out_channels[-1], num_landmarks, head_stride)
