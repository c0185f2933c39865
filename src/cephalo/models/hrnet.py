"""HRNet backbone (HRNetV2 trunk) with timm's parameter names, without the classification parts.

Layout (Sun et al. 2019; timm's ``hrnet_w18_small_v2`` / ``hrnet_w18`` / ``w32`` / ``w48``)::

    stem     conv1 3x3/2, bn1, conv2 3x3/2, bn2                     -> (B, 64, H/4, W/4)
    layer1   Bottleneck blocks                                       -> (B, 256, H/4, W/4)
    transition1, stage2  2 branches  (C, 2C)         at strides 4, 8
    transition2, stage3  3 branches  (C, 2C, 4C)     at strides 4, 8, 16
    transition3, stage4  4 branches  (C, 2C, 4C, 8C) at strides 4, 8, 16, 32

Each stage is a sequence of ``HRModule``s: BasicBlocks per branch, then every branch receives the sum of all
branches resampled to its resolution. ``HRNetBackbone(...).state_dict()`` names equal timm's; timm's
``incre_modules``, ``downsamp_modules``, ``final_layer`` and ``classifier`` (the ImageNet head) are not built.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from cephalo.models.heads import hrnet_head
from cephalo.models.layers import (
    BasicBlock,
    Bottleneck,
    batch_norm,
    checkpoint_call,
    conv_bn,
    conv_bn_relu,
    init_weights,
)
from cephalo.models.registry import register_alias, register_model

# width C, Bottleneck blocks in layer1, HRModules in stages 2-4, BasicBlocks per branch (timm's configs)
HRNET_CONFIGS = {
    "hrnet_w18_small": dict(width=18, layer1_blocks=2, stage_modules=(1, 3, 2), branch_blocks=2),
    "hrnet_w18": dict(width=18, layer1_blocks=4, stage_modules=(1, 4, 3), branch_blocks=4),
    "hrnet_w32": dict(width=32, layer1_blocks=4, stage_modules=(1, 4, 3), branch_blocks=4),
    "hrnet_w48": dict(width=48, layer1_blocks=4, stage_modules=(1, 4, 3), branch_blocks=4),
}


class HRModule(nn.Module):
    """Parallel branches then multi-resolution fusion.

    ``forward([x_0 .. x_{n-1}])`` with ``x_i (B, channels[i], H / 2**i, W / 2**i)`` returns a list of the same
    shapes. ``fuse_layers[i][j]`` brings branch j to branch i: a 1x1 conv + BN then nearest upsampling when j is
    coarser, ``i - j`` strided 3x3 convs when j is finer, identity when ``i == j`` (timm's layout and names).
    """

    def __init__(self, channels: tuple[int, ...], num_blocks: int):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(*[BasicBlock(c, c) for _ in range(num_blocks)]) for c in channels)
        n = len(channels)
        self.fuse_layers = nn.ModuleList()
        for i in range(n):
            row = nn.ModuleList()
            for j in range(n):
                if j > i:
                    # timm puts an nn.Upsample at index 2; it has no parameters, so forward() resizes instead
                    row.append(conv_bn(channels[j], channels[i], 1))
                elif j == i:
                    row.append(nn.Identity())
                else:
                    steps = [conv_bn_relu(channels[j], channels[j], 3, stride=2) for _ in range(i - j - 1)]
                    steps.append(conv_bn(channels[j], channels[i], 3, stride=2))  # no ReLU before the sum
                    row.append(nn.Sequential(*steps))
            self.fuse_layers.append(row)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        out = []
        for i, row in enumerate(self.fuse_layers):
            y = xs[i]
            for j, fuse in enumerate(row):
                if j > i:
                    # resize to the exact target size (= timm's x2**(j-i) nearest when H, W are multiples of 32)
                    y = y + F.interpolate(fuse(xs[j]), size=xs[i].shape[-2:], mode="nearest")
                elif j < i:
                    y = y + fuse(xs[j])
            out.append(F.relu(y))  # not in place: y may be the input of a checkpointed call
        return out


def _transition(in_channels: tuple[int, ...], out_channels: tuple[int, ...]) -> nn.ModuleList:
    """Existing branches: 3x3 conv + BN + ReLU where the width changes, else identity. The new branch:
    strided 3x3 conv(s) from the coarsest existing branch (timm's ``_make_transition_layer``)."""
    layers = nn.ModuleList()
    for i, c_out in enumerate(out_channels):
        if i < len(in_channels):
            c_in = in_channels[i]
            layers.append(conv_bn_relu(c_in, c_out, 3) if c_in != c_out else nn.Identity())
        else:
            c_in = in_channels[-1]
            steps = [conv_bn_relu(c_in, c_out if k == i - len(in_channels) else c_in, 3, stride=2)
                     for k in range(i + 1 - len(in_channels))]
            layers.append(nn.Sequential(*steps))
    return layers


def _run_module(module: nn.Module):
    """Wrap a list-to-list module as tensors-to-tuple, the form activation checkpointing takes."""
    return lambda *xs: tuple(module(list(xs)))


class HRNetBackbone(nn.Module):
    """HRNet trunk: ``forward(x (B, in_chans, H, W)) -> [y_0, y_1, y_2, y_3]``, ``y_i (B, C * 2**i, H/s, W/s)``
    at strides ``s`` = 4, 8, 16, 32 (``out_channels``, ``out_strides``). H and W should be multiples of 32."""

    def __init__(self, width: int = 32, layer1_blocks: int = 4, stage_modules: tuple[int, int, int] = (1, 4, 3),
                 branch_blocks: int = 4, in_chans: int = 1, stem_width: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, stem_width, 3, 2, 1, bias=False)
        self.bn1 = batch_norm(stem_width)
        self.conv2 = nn.Conv2d(stem_width, stem_width, 3, 2, 1, bias=False)
        self.bn2 = batch_norm(stem_width)
        blocks = [Bottleneck(stem_width, 64)] + [Bottleneck(256, 64) for _ in range(layer1_blocks - 1)]
        self.layer1 = nn.Sequential(*blocks)

        channels: tuple[int, ...] = (64 * Bottleneck.expansion,)
        for stage, num_modules in zip((2, 3, 4), stage_modules):
            branch_channels = tuple(width * 2**i for i in range(stage))
            self.add_module(f"transition{stage - 1}", _transition(channels, branch_channels))
            modules = [HRModule(branch_channels, branch_blocks) for _ in range(num_modules)]
            self.add_module(f"stage{stage}", nn.Sequential(*modules))
            channels = branch_channels
        self.out_channels = channels
        self.out_strides = (4, 8, 16, 32)
        self.grad_checkpointing = False
        init_weights(self)

    @classmethod
    def from_name(cls, name: str, in_chans: int = 1) -> "HRNetBackbone":
        if name not in HRNET_CONFIGS:
            raise ValueError(f"unknown HRNet {name!r}; known: {', '.join(HRNET_CONFIGS)}")
        return cls(**HRNET_CONFIGS[name], in_chans=in_chans)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def _stem(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(self.bn2(self.conv2(x)), inplace=True)

    def forward(self, x: Tensor) -> list[Tensor]:
        # Checkpointed segments: the stem (its 64-channel stride-2 maps are the largest of the net), each layer1
        # block and each HRModule. Only segment inputs are kept; transitions are cheap and run normally.
        ckpt = self.grad_checkpointing and self.training and torch.is_grad_enabled()
        x = checkpoint_call((self.bn1, self.bn2), self._stem, x) if ckpt else self._stem(x)
        for block in self.layer1:
            x = checkpoint_call(block, block, x) if ckpt else block(x)

        xs = [x]
        for transition, stage in ((self.transition1, self.stage2), (self.transition2, self.stage3),
                                  (self.transition3, self.stage4)):
            # a new (coarser) branch comes from the coarsest existing one, the others pass through or adapt width
            xs = [t(xs[i] if i < len(xs) else xs[-1]) for i, t in enumerate(transition)]
            for module in stage:
                xs = list(checkpoint_call(module, _run_module(module), *xs)) if ckpt else module(xs)
        return xs


def _register(name: str, **kwargs) -> None:
    """Register ``HRNET_CONFIGS[name]`` with the HRNet head (``kwargs``: ``timm_name``, ``lighter``)."""
    register_model(name, backbone=partial(HRNetBackbone.from_name, name), head=hrnet_head, **kwargs)


# lightest first (the order of the --model choices); ``lighter`` is what the out-of-memory advice suggests
_register("hrnet_w18_small", timm_name="hrnet_w18_small_v2")
_register("hrnet_w18", lighter="hrnet_w18_small")
_register("hrnet_w32", lighter="hrnet_w18")
_register("hrnet_w48", lighter="hrnet_w32")
register_alias("hrnet", "hrnet_w32")  # HRNetV2's usual width
