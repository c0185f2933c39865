"""ResNet-50/101 backbone with timm's parameter names, registered with a SimpleBaseline heatmap head.

``ResNetBackbone(depth=50).state_dict()`` has exactly timm's ``resnet50`` names minus ``fc``.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from cephalo.models.heads import simple_baseline_head
from cephalo.models.layers import Bottleneck, batch_norm, checkpoint_call, init_weights
from cephalo.models.registry import register_model

RESNET_DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


class ResNetBackbone(nn.Module):
    """ResNet-50/101 without the classifier.

    ``forward(x (B, in_chans, H, W)) -> [c2, c3, c4, c5]``, feature maps at strides 4, 8, 16, 32 with
    ``out_channels`` (256, 512, 1024, 2048) channels. H and W should be multiples of 32.
    """

    def __init__(self, depth: int = 50, in_chans: int = 1):
        super().__init__()
        if depth not in RESNET_DEPTHS:
            raise ValueError(f"ResNet depth must be one of {sorted(RESNET_DEPTHS)}, got {depth!r}")
        self.conv1 = nn.Conv2d(in_chans, 64, 7, 2, 3, bias=False)
        self.bn1 = batch_norm(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_ch, channels = 64, []
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), RESNET_DEPTHS[depth])):
            stride = 1 if i == 0 else 2
            layer = [Bottleneck(in_ch, planes, stride)]
            in_ch = planes * Bottleneck.expansion
            layer += [Bottleneck(in_ch, planes) for _ in range(blocks - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*layer))
            channels.append(in_ch)
        self.out_channels = tuple(channels)
        self.out_strides = (4, 8, 16, 32)
        self.grad_checkpointing = False
        init_weights(self)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def _stem(self, x: Tensor) -> Tensor:
        return self.maxpool(F.relu(self.bn1(self.conv1(x)), inplace=True))

    def forward(self, x: Tensor) -> list[Tensor]:
        # Checkpoint the stem and every bottleneck: then only block inputs stay alive between forward and backward.
        ckpt = self.grad_checkpointing and self.training and torch.is_grad_enabled()
        x = checkpoint_call(self.bn1, self._stem, x) if ckpt else self._stem(x)
        features = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in layer:
                x = checkpoint_call(block, block, x) if ckpt else block(x)
            features.append(x)
        return features


register_model("resnet50", backbone=partial(ResNetBackbone, depth=50), head=simple_baseline_head)
register_model("resnet101", backbone=partial(ResNetBackbone, depth=101), head=simple_baseline_head,
               lighter="resnet50")
