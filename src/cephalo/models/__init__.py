"""Landmark heatmap models: a timm-compatible backbone plus a heatmap head, built by ``create_model``.

    model = create_model("hrnet_w32", num_landmarks=19, head_stride=4, pretrained="hrnet_w32.safetensors")
    heatmaps = model(images)  # (B, 1, H, W) -> (B, 19, H/4, W/4)

``model.backbone`` has timm's parameter names (ImageNet weights load by name, see ``load_pretrained``);
``model.head`` is the heatmap head. H and W should be multiples of 32.
"""

from __future__ import annotations

from pathlib import Path

import torch.nn as nn
from torch import Tensor

from cephalo.models.heads import HEAD_STRIDES, HRNetHead, SimpleBaselineHead
from cephalo.models.hrnet import HRNET_CONFIGS, HRNetBackbone
from cephalo.models.pretrained import LoadReport, load_pretrained, read_checkpoint
from cephalo.models.resnet import ResNetBackbone

MODEL_NAMES = ("hrnet", "hrnet_w18_small", "hrnet_w18", "hrnet_w32", "hrnet_w48", "resnet50", "resnet101")
_ALIASES = {"hrnet": "hrnet_w32"}
# The next lighter network of each (the user's note: W18 instead of W32, ResNet-50 instead of ResNet-101)
LIGHTER_MODEL = {"hrnet": "hrnet_w18", "hrnet_w32": "hrnet_w18", "hrnet_w48": "hrnet_w32",
                 "hrnet_w18": "hrnet_w18_small", "resnet101": "resnet50"}
TIMM_NAMES = {"hrnet_w18_small": "hrnet_w18_small_v2"}  # our name -> timm's, for finding its weights


class HeatmapModel(nn.Module):
    """``forward(x (B, in_chans, H, W)) -> heatmaps (B, num_landmarks, H / stride, W / stride)``."""

    def __init__(self, backbone: nn.Module, head: nn.Module, num_landmarks: int, stride: int):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.num_landmarks = num_landmarks
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute activations in backward instead of keeping them (only in training mode with grad enabled):
        ~5x less activation memory for ~1.2-1.4x the step time (benchmarks/model_memory.md)."""
        self.backbone.set_grad_checkpointing(enable)
        self.head.set_grad_checkpointing(enable)


def create_model(name: str, num_landmarks: int, in_chans: int = 1, head_stride: int = 4,
                 pretrained: str | Path | None = None) -> HeatmapModel:
    """Build ``name`` (one of ``MODEL_NAMES``; ``hrnet`` is ``hrnet_w32``) predicting ``num_landmarks`` heatmaps at
    ``head_stride`` 4, 2 or 1; ``pretrained`` is an optional timm-format checkpoint loaded into the backbone."""
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    if num_landmarks < 1:
        raise ValueError(f"num_landmarks must be >= 1, got {num_landmarks}")
    if head_stride not in HEAD_STRIDES:
        raise ValueError(f"head_stride must be one of {HEAD_STRIDES}, got {head_stride!r}")
    name = _ALIASES.get(name, name)
    if name in HRNET_CONFIGS:
        backbone = HRNetBackbone.from_name(name, in_chans=in_chans)
        head = HRNetHead(backbone.out_channels, num_landmarks, head_stride)
    else:
        backbone = ResNetBackbone(depth=int(name.removeprefix("resnet")), in_chans=in_chans)
        head = SimpleBaselineHead(backbone.out_channels[-1], num_landmarks, head_stride)
    model = HeatmapModel(backbone, head, num_landmarks, head_stride)
    if pretrained is not None:
        load_pretrained(model, pretrained)
    return model


__all__ = [
    "MODEL_NAMES", "TIMM_NAMES", "HeatmapModel", "create_model", "HRNetBackbone", "ResNetBackbone", "HRNetHead",
    "SimpleBaselineHead", "LoadReport", "load_pretrained", "read_checkpoint",
]
