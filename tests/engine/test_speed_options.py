"""Speed options take effect: channels_last through the step, the optimizer implementation, compile mode."""

import dataclasses

import pytest
import torch
from torch import nn

from cephalo.engine.stages.global_stage import GlobalStage
from cephalo.engine.step.loop import train_one_epoch
from cephalo.engine.step.progress import Progress
from tests.helpers import TinyHeatmapNet


class LayoutRecorder(TinyHeatmapNet):
    """Records whether the first convolution's output (8 channels, so the layout is visible) is channels_last."""

    def __init__(self):
        super().__init__()
        self.layouts = []

    def forward(self, x):
        self.layouts.append(self.net[0](x).is_contiguous(memory_format=torch.channels_last))
        return super().forward(x)


@pytest.mark.parametrize("channels_last", [False, True])
def test_channels_last_reaches_the_weights_and_every_batch(tiny_config, channels_last):  # noqa: F811
    model = LayoutRecorder()
    t = GlobalStage(dataclasses.replace(tiny_config, channels_last=channels_last, max_updates=2), model)
    conv = t.parts.raw_model.net[2].weight  # (8, 8, 3, 3)
    assert conv.is_contiguous(memory_format=torch.channels_last) == channels_last
    train_one_epoch(t, Progress(), after_update=lambda p: p.updates >= 2)
    assert len(model.layouts) == 2 and all(layout == channels_last for layout in model.layouts)


def test_fused_optimizer_on_cpu_uses_foreach_and_says_so(tiny_config):
    t = GlobalStage(dataclasses.replace(tiny_config, fused_optimizer=True), TinyHeatmapNet())
    assert t.parts.optimizer.defaults["foreach"] and not t.parts.optimizer.defaults["fused"]
    assert "optimizer: AdamW, foreach implementation (fused needs CUDA)" in t.notes


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fused_optimizer_on_cuda(tiny_config):
    t = GlobalStage(dataclasses.replace(tiny_config, fused_optimizer=True, device="cuda"), TinyHeatmapNet())
    assert t.parts.optimizer.defaults["fused"] and "optimizer: AdamW, fused implementation" in t.notes
    train_one_epoch(t, Progress(loss_sum=torch.zeros((), device=t.parts.device)), after_update=lambda p: p.updates >= 1)


def test_model_without_ema_validates_with_the_forward_model(tiny_config):
    t = GlobalStage(tiny_config, TinyHeatmapNet())
    assert t.parts.eval_forward is t.parts.raw_model
    with_ema = GlobalStage(dataclasses.replace(tiny_config, use_ema=True), TinyHeatmapNet())
    assert with_ema.parts.eval_forward is with_ema.parts.ema.module and isinstance(with_ema.parts.eval_forward, nn.Module)
