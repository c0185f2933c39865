"""ResNet-50/101 backbone with timm's parameter names, and the pieces HRNet and the heads share with it.

The residual blocks, weight init and activation checkpointing live here because HRNet is built from the same
``BasicBlock``/``Bottleneck`` (timm's HRNet blocks have the same names: conv1/bn1/.../downsample.0/.1).
``ResNetBackbone(depth=50).state_dict()`` has exactly timm's ``resnet50`` names minus ``fc``.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

BN_MOMENTUM = 0.1  # timm: nn.BatchNorm2d defaults for ResNet, _BN_MOMENTUM = 0.1 for HRNet; eps 1e-5 in both
BN_EPS = 1e-5


def batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def conv_bn(in_ch: int, out_ch: int, kernel_size: int, stride: int = 1) -> nn.Sequential:
    """Conv (no bias: BN follows) + BN, named ``.0``/``.1`` as timm's downsample and transition layers."""
    conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding=kernel_size // 2, bias=False)
    return nn.Sequential(conv, batch_norm(out_ch))


def conv_bn_relu(in_ch: int, out_ch: int, kernel_size: int, stride: int = 1) -> nn.Sequential:
    """Conv + BN + ReLU, named ``.0``/``.1``/``.2`` (timm's transition and fuse steps)."""
    return nn.Sequential(*conv_bn(in_ch, out_ch, kernel_size, stride), nn.ReLU(inplace=True))


def init_weights(module: nn.Module) -> None:
    """Kaiming-normal (fan_out, ReLU) convs and BN weight 1 / bias 0, as timm initialises ResNet and HRNet."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


@contextmanager
def _keep_bn_running_stats(owners: tuple[nn.Module, ...]):
    """Restore BN running stats after a recomputation, so checkpointing updates them once per step, not twice."""
    saved = [(m, m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
             for owner in owners for m in owner.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, mean, var, count in saved:
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(count)


def _contexts(owners: tuple[nn.Module, ...]):
    return nullcontext(), _keep_bn_running_stats(owners)  # (forward, recomputation in backward)


def checkpoint_call(owner: nn.Module | tuple[nn.Module, ...], fn, *tensors: Tensor):
    """``fn(*tensors)`` with activation checkpointing: only the input tensors are kept for backward, and all
    ``fn`` computes inside is recomputed there. ``owner`` is the module(s) holding every BatchNorm ``fn`` uses.
    ``fn`` takes and returns tensors (or a tuple of them), so HRNet's branch lists go in as ``*tensors``.
    """
    if torch.compiler.is_compiling():
        # torch.compile traces the checkpoint into its graph, where the recomputation does not replay buffer
        # updates; a custom context_fn would only cause graph breaks there
        return checkpoint(fn, *tensors, use_reentrant=False)
    owners = (owner,) if isinstance(owner, nn.Module) else tuple(owner)
    return checkpoint(fn, *tensors, use_reentrant=False, context_fn=partial(_contexts, owners))


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual: (B, in_ch, H, W) -> (B, planes, H/stride, W/stride)."""

    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, planes, 3, stride, 1, bias=False)
        self.bn1 = batch_norm(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = batch_norm(planes)
        needs_projection = stride != 1 or in_ch != planes
        self.downsample = conv_bn(in_ch, planes, 1, stride) if needs_projection else None

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut, inplace=True)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (carries the stride, as torchvision/timm "ResNet v1.5") -> 1x1 x4 with a residual:
    (B, in_ch, H, W) -> (B, 4 * planes, H/stride, W/stride)."""

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int = 1):
        super().__init__()
        out_ch = planes * self.expansion
        self.conv1 = nn.Conv2d(in_ch, planes, 1, bias=False)
        self.bn1 = batch_norm(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = batch_norm(planes)
        self.conv3 = nn.Conv2d(planes, out_ch, 1, bias=False)
        self.bn3 = batch_norm(out_ch)
        needs_projection = stride != 1 or in_ch != out_ch
        self.downsample = conv_bn(in_ch, out_ch, 1, stride) if needs_projection else None

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = F.relu(self.bn2(self.conv2(out)), inplace=True)
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut, inplace=True)


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
