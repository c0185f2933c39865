"""Building blocks shared by the backbones and the heads: conv/BN helpers, timm's weight init, the residual blocks
and activation checkpointing that keeps BatchNorm running stats right.

``BasicBlock``/``Bottleneck`` carry timm's parameter names (conv1/bn1/.../downsample.0/.1), which its ResNet and
HRNet blocks share, so both backbones are built from them.
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
