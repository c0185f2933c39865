"""Everything a training run needs, built in one fixed order:
processes -> device (+ memory cap) -> data -> model -> sync BN -> channels_last -> micro-batch measured -> loaders
-> optimizer + schedule -> EMA -> compile (model and EMA copy) -> DDP."""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from cephalo.codec import HeatmapCodec
from cephalo.device import resolve_device
from cephalo.engine.augment import AugmentConfig
from cephalo.engine.compile import compile_model
from cephalo.engine.config import TrainConfig
from cephalo.engine.data import EpochSampler, build_datasets, build_loader
from cephalo.engine.distributed import Dist, init_distributed
from cephalo.engine.ema import ModelEma
from cephalo.engine.gpu_memory import apply_vram_budget, auto_micro_batch
from cephalo.engine.precision import Precision, resolve_precision
from cephalo.engine.schedule import build_scheduler
from cephalo.models import create_model
from cephalo.preprocessing.cached_dataset import CachedLandmarkDataset


@dataclass(frozen=True)
class Training:
    """The live objects of a run, built once by :func:`build_training` and never reassigned (what changes while
    training is in :mod:`cephalo.engine.progress`). ``model`` is what runs forward (maybe compiled, maybe DDP);
    ``raw_model`` is the plain module whose ``state_dict`` is saved and which the EMA follows."""

    config: TrainConfig
    dist: Dist
    device: torch.device
    precision: Precision
    codec: HeatmapCodec
    train_set: CachedLandmarkDataset
    val_set: CachedLandmarkDataset
    train_sampler: EpochSampler
    train_loader: DataLoader
    val_loader: DataLoader
    raw_model: nn.Module
    model: nn.Module
    eval_forward: nn.Module  # what validation runs: the (compiled) EMA copy, else the (compiled) model
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    ema: ModelEma | None
    augment: AugmentConfig | None
    updates_per_epoch: int
    data_note: str  # which splits train and validate, and their sizes
    notes: tuple[str, ...]  # what setup chose or ignored, one line each (printed at the start)


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


def build_training(config: TrainConfig, model: nn.Module | None = None) -> Training:
    """Build the run; ``model`` replaces the one ``config.model`` names (tests use tiny ones)."""
    notes: list[str] = []
    info, rank_device = init_distributed(config.device)
    device = rank_device or resolve_device(config.device)
    precision = resolve_precision(device, config.mixed_precision, config.amp_dtype)
    seed_everything(config.seed, config.deterministic)

    if info.enabled and not info.is_main:
        dist.barrier()  # rank 0 reads, checks and caches the data first; the others then find the cache ready
    train_set, val_set, data_note = build_datasets(config)
    if info.enabled and info.is_main:
        dist.barrier()
    if config.vram_budget_gb:
        notes.append(apply_vram_budget(device, config.vram_budget_gb))

    if model is None:
        model = create_model(config.model, len(train_set.landmark_names), in_chans=1,
                             head_stride=config.head_stride, pretrained=config.pretrained)
    if config.gradient_checkpointing:
        model.set_grad_checkpointing(True)
    if config.sync_bn and info.enabled and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # BatchNorm statistics over every rank's batch
    elif config.sync_bn:
        notes.append("--sync_bn ignored: it needs several processes on CUDA GPUs; BatchNorm stays per process")
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    if config.auto_micro_batch:  # measured on the model as it will train, before the loaders take the batch size
        config, note = auto_micro_batch(config, model, device, precision, info)
        notes.append(note)

    codec = HeatmapCodec(config.image_size, stride=config.head_stride, sigma=config.sigma)
    sampler = EpochSampler(len(train_set), config.seed, rank=info.rank, world_size=info.world_size)
    train_loader = build_loader(train_set, config.batch_size, sampler, config, device)
    val_sampler = EpochSampler(len(val_set), 0, shuffle=False, rank=info.rank, world_size=info.world_size)
    val_loader = build_loader(val_set, config.batch_size, val_sampler, config, device)

    fused = config.fused_optimizer and device.type == "cuda"
    optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=config.lr, fused=fused,
                                  foreach=None if fused else True)
    notes.append(f"optimizer: AdamW, {'fused' if fused else 'foreach'} implementation"
                 + (" (fused needs CUDA)" if config.fused_optimizer and not fused else ""))
    updates_per_epoch = math.ceil(len(train_loader) / config.gradient_accumulation_steps)
    total_updates = updates_per_epoch * config.epochs
    if config.max_updates:
        total_updates = min(total_updates, config.max_updates)
    scheduler = build_scheduler(optimizer, total_updates, round(config.warmup_epochs * updates_per_epoch),
                                config.min_lr_ratio)
    ema = ModelEma(model, config.ema_decay) if config.use_ema else None  # of the plain model, never the wrapper
    forward_model = compile_model(model, device, notes, config.compile_mode) if config.use_compile else model
    eval_forward = forward_model  # validation: the EMA weights when there are, compiled separately
    if ema is not None:
        eval_forward = compile_model(ema.module, device, [], config.compile_mode) if config.use_compile else ema.module
    if info.enabled:  # wrap last: compile sees the plain model, DDP averages the gradients of the compiled one
        forward_model = nn.parallel.DistributedDataParallel(
            forward_model, device_ids=[device.index] if device.type == "cuda" else None)
    return Training(config, info, device, precision, codec, train_set, val_set, sampler, train_loader, val_loader,
                    model, forward_model, eval_forward, optimizer, scheduler, precision.grad_scaler(), ema,
                    None if config.augmentation == "none" else AugmentConfig.for_level(config.augmentation),
                    updates_per_epoch, data_note, tuple(notes))
