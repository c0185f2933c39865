"""The live objects one stage trains with (:class:`Parts`), built by :func:`cephalo.engine.stages.setup.build_parts`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cephalo.engine.runtime.distributed import Dist
from cephalo.engine.step.ema import ModelEma
from cephalo.precision import Precision


@dataclass(frozen=True)
class Parts:
    """The live objects one stage trains with, built once by :func:`build_parts` and never reassigned (what changes
    while training is in :mod:`cephalo.engine.step.progress`). ``model`` is what runs forward in training (maybe
    compiled, maybe DDP); ``raw_model`` the plain module whose ``state_dict`` is saved and which the EMA follows;
    ``eval_forward`` what validation runs (the (compiled) EMA copy, else the (compiled) model)."""

    dist: Dist
    device: torch.device
    precision: Precision
    raw_model: nn.Module
    model: nn.Module
    eval_forward: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    ema: ModelEma | None
    updates_per_epoch: int
    warmup_updates: int
