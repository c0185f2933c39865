"""Landmark heatmap models: a timm-compatible backbone plus a heatmap head, built by ``create_model``.

    model = create_model("hrnet_w32", num_landmarks=19, head_stride=4, pretrained="hrnet_w32.safetensors")
    heatmaps = model(images)  # (B, 1, H, W) -> (B, 19, H/4, W/4)

``model.backbone`` has timm's parameter names (ImageNet weights load by name, see ``load_pretrained``);
``model.head`` is the heatmap head. H and W should be multiples of 32. The names and how each is built come from
the registry (``registry.py``), filled by the architecture modules imported below.
"""

from __future__ import annotations

from pathlib import Path

import torch.nn as nn
from torch import Tensor

# Importing an architecture module registers its models, in this order (the order of MODEL_NAMES): a new
# backbone module gets one import line here and nothing else.
from cephalo.models import hrnet, resnet  # noqa: F401
from cephalo.models.heads import HEAD_STRIDES, HRNetHead, SimpleBaselineHead
from cephalo.models.hrnet import HRNetBackbone
from cephalo.models.hub import resolve_pretrained
from cephalo.models.pretrained import LoadReport, load_pretrained, read_checkpoint
from cephalo.models.registry import (
    ModelSpec,
    get_model_spec,
    lighter_models,
    model_names,
    register_alias,
    register_model,
    timm_names,
)
from cephalo.models.resnet import ResNetBackbone

# Snapshots of the registry once the modules above have registered: the --model choices, the next lighter network
# of each (the out-of-memory advice: W18 instead of W32, ResNet-50 instead of ResNet-101) and timm's names where
# they differ from ours (for finding the ImageNet weights).
MODEL_NAMES = model_names()
LIGHTER_MODEL = lighter_models()
TIMM_NAMES = timm_names()


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
    """Build the registered model ``name`` (one of ``MODEL_NAMES``; ``hrnet`` is ``hrnet_w32``) predicting
    ``num_landmarks`` heatmaps at ``head_stride`` 4, 2 or 1; ``pretrained`` is an optional timm-format checkpoint
    loaded into the backbone."""
    spec = get_model_spec(name)  # raises for an unknown name, listing the registered ones
    if num_landmarks < 1:
        raise ValueError(f"num_landmarks must be >= 1, got {num_landmarks}")
    if head_stride not in HEAD_STRIDES:
        raise ValueError(f"head_stride must be one of {HEAD_STRIDES}, got {head_stride!r}")
    backbone = spec.backbone(in_chans=in_chans)
    head = spec.head(backbone, num_landmarks, head_stride)
    model = HeatmapModel(backbone, head, num_landmarks, head_stride)
    if pretrained is not None:
        load_pretrained(model, resolve_pretrained(pretrained))
    return model


__all__ = [
    "MODEL_NAMES", "LIGHTER_MODEL", "TIMM_NAMES", "HeatmapModel", "create_model",
    "ModelSpec", "register_model", "register_alias", "get_model_spec",
    "HRNetBackbone", "ResNetBackbone", "HRNetHead", "SimpleBaselineHead", "LoadReport", "load_pretrained",
    "read_checkpoint",
]
