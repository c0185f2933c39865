"""Exponential moving average of the weights, updated once per optimizer update."""

from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEma:
    """A frozen copy of ``model`` whose weights follow ``ema = decay_t * ema + (1 - decay_t) * weights``.

    ``decay_t = min(decay, (1 + t) / (10 + t))`` at update ``t``: early updates move the average fast, so the EMA
    is useful from the first epochs instead of being stuck near the random init. Buffers (BatchNorm statistics)
    are copied, not averaged. Lives on the model's device; one fused ``_foreach_lerp_`` and one ``_foreach_copy_``
    per update, no Python loop over tensors.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        decay = self.current_decay()
        ema_params = [p for p in self.module.parameters() if p.dtype.is_floating_point]
        params = [p.detach() for p in model.parameters() if p.dtype.is_floating_point]
        torch._foreach_lerp_(ema_params, params, 1.0 - decay)
        ema_buffers = list(self.module.buffers())
        if ema_buffers:  # BatchNorm statistics and counters; a model without BatchNorm has none
            torch._foreach_copy_(ema_buffers, [b.detach() for b in model.buffers()])
        self.updates += 1

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates, self.decay = state["updates"], state["decay"]
