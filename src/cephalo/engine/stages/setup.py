"""Setup of every training stage, in one fixed order; each stage (:mod:`~cephalo.engine.stages.global_stage`,
:mod:`~cephalo.engine.stages.local_stage`) calls these three in turn and builds its own data in between:

:func:`runtime` (processes -> device + memory cap -> precision -> seed) -> the stage's data ->
the stage's model -> :func:`place_model` (gradient checkpointing -> sync BN -> device -> channels_last) ->
[global: the measured micro-batch] -> the stage's loaders -> :func:`build_parts` (optimizer + schedule -> EMA ->
compile (model and EMA copy) -> DDP)."""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from cephalo.device import resolve_device
from cephalo.engine.config import TrainConfig
from cephalo.engine.runtime.compile import compile_model
from cephalo.engine.runtime.distributed import Dist, init_distributed
from cephalo.engine.runtime.gpu_memory import apply_vram_budget
from cephalo.engine.step.ema import ModelEma
from cephalo.engine.step.parts import Parts
from cephalo.engine.step.schedule import build_scheduler
from cephalo.precision import Precision, resolve_precision


@dataclass(frozen=True)
class Runtime:
    """Where a stage runs: this process's place among the processes, its device and its precision."""

    dist: Dist
    device: torch.device
    precision: Precision

    def main_first(self, work):
        """``work()`` on rank 0 first, then on the others (which then find its caches ready)."""
        if self.dist.enabled and not self.dist.is_main:
            dist.barrier()
        result = work()
        if self.dist.enabled and self.dist.is_main:
            dist.barrier()
        return result


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed every generator; ``deterministic`` also forbids non-deterministic kernels (repeatable on CPU, and on
    CUDA as far as cuDNN allows) at some speed cost. Otherwise cuDNN may pick the fastest convolution per shape."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by deterministic cuBLAS
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases and normalisation weights (1-D tensors): decaying them only hurts."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def runtime(config: TrainConfig, notes: list[str]) -> Runtime:
    """Join the processes (``torchrun``; a no-op when already joined or alone), pick the device, cap its memory
    (``--vram_budget_gb``), resolve the precision and seed every generator."""
    info, rank_device = init_distributed(config.device)
    device = rank_device or resolve_device(config.device)
    if config.vram_budget_gb:
        notes.append(apply_vram_budget(device, config.vram_budget_gb))
    precision = resolve_precision(device, config.mixed_precision, config.amp_dtype)
    seed_everything(config.seed, config.deterministic)
    return Runtime(info, device, precision)


def place_model(config: TrainConfig, model: nn.Module, rt: Runtime, notes: list[str]) -> nn.Module:
    """The stage's model as it will train: gradient checkpointing, sync BN, on the device, channels_last."""
    if config.gradient_checkpointing:
        model.set_grad_checkpointing(True)
    if config.sync_bn and rt.dist.enabled and rt.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # BatchNorm statistics over every rank's batch
    elif config.sync_bn:
        notes.append("--sync_bn ignored: it needs several processes on CUDA GPUs; BatchNorm stays per process")
    model.to(rt.device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def build_parts(config: TrainConfig, model: nn.Module, rt: Runtime, batches_per_epoch: int,
                notes: list[str]) -> Parts:
    """Optimizer, warm-up + cosine schedule over the stage's updates, EMA, compile and DDP around ``model`` (placed
    by :func:`place_model`); ``batches_per_epoch``: micro-batches of one rank's epoch."""
    fused = config.fused_optimizer and rt.device.type == "cuda"
    optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=config.lr, fused=fused,
                                  foreach=None if fused else True)
    notes.append(f"optimizer: AdamW, {'fused' if fused else 'foreach'} implementation"
                 + (" (fused needs CUDA)" if config.fused_optimizer and not fused else ""))
    updates_per_epoch = math.ceil(batches_per_epoch / config.gradient_accumulation_steps)
    total_updates = updates_per_epoch * config.epochs
    if config.max_updates:
        total_updates = min(total_updates, config.max_updates)
    warmup = round(config.warmup_epochs * updates_per_epoch)
    scheduler = build_scheduler(optimizer, total_updates, warmup, config.min_lr_ratio)
    ema = ModelEma(model, config.ema_decay) if config.use_ema else None  # of the plain model, never the wrapper
    forward_model = compile_model(model, rt.device, notes, config.compile_mode) if config.use_compile else model
    eval_forward = forward_model  # validation: the EMA weights when there are, compiled separately
    if ema is not None:
        eval_forward = compile_model(ema.module, rt.device, [], config.compile_mode) if config.use_compile else ema.module
    if rt.dist.enabled:  # wrap last: compile sees the plain model, DDP averages the gradients of the compiled one
        forward_model = nn.parallel.DistributedDataParallel(
            forward_model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)
    return Parts(rt.dist, rt.device, rt.precision, model, forward_model, eval_forward, optimizer, scheduler,
                 rt.precision.grad_scaler(), ema, updates_per_epoch, warmup)
