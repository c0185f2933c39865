"""The training step and the epoch loop around it.

One update: for each micro-batch of the accumulation group, :func:`forward_backward` (augment and render targets on
the device, forward, weighted loss, backward), then :func:`optimizer_update` (finiteness check, step, schedule,
EMA). Out of GPU memory, the group is redone in smaller micro-batches (:mod:`cephalo.engine.oom`); what an epoch
reports is :mod:`cephalo.engine.stats`, validation :mod:`cephalo.engine.validate`.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from typing import Callable

import torch

from cephalo.console import progress_bar
from cephalo.engine.augment import augment
from cephalo.engine.data import micro_batch_weights
from cephalo.engine.finite import all_finite
from cephalo.engine.host_sync import intended_sync
from cephalo.engine.loss import heatmap_loss
from cephalo.engine.oom import OutOfMemoryStop, recover_from_oom, remedies
from cephalo.engine.prefetch import DevicePrefetcher
from cephalo.engine.progress import Progress
from cephalo.engine.setup import Training
from cephalo.engine.stats import count_update, show_update
from cephalo.preprocessing.normalize import to_model_input

Batch = tuple[torch.Tensor, torch.Tensor, float]  # images (B, 1, H, W) uint8, landmarks (B, K, 2), loss weight


def forward_backward(t: Training, images: torch.Tensor, landmarks: torch.Tensor, weight: float,
                     sync: bool) -> torch.Tensor:
    """One micro-batch on the device: augment, targets, forward, ``weight``-ed backward; returns its loss ``()``.
    ``sync``: the last micro-batch of an accumulation group, where DDP averages the gradients."""
    x = to_model_input(images, t.device, t.config.channels_last)
    if t.augment is not None:  # in batch; landmarks move with the image
        x, landmarks = augment(x, landmarks, t.augment)
    target = t.codec.encode(landmarks)  # (B, K, h, w)
    with t.model.no_sync() if t.dist.enabled and not sync else nullcontext():
        with t.precision.autocast():
            heatmaps = t.model(x)
        loss = heatmap_loss(heatmaps, target, t.codec.inside(landmarks))
        t.scaler.scale(loss * weight).backward()
    return loss.detach()


def accumulate(t: Training, p: Progress, batches: list[Batch], sync: bool) -> torch.Tensor | None:
    """Gradients of ``batches`` summed into ``.grad``, in micro-batches of at most ``p.micro_batch`` images; returns
    the loss summed over images, or None when the GPU ran out of memory (the gradients are then partial)."""
    micro = p.micro_batch or t.config.batch_size
    parts = [(x, lm, weight * len(x) / len(images)) for images, landmarks, weight in batches
             for x, lm in zip(images.split(micro), landmarks.split(micro))]
    total = torch.zeros((), device=t.device)
    try:
        for j, (images, landmarks, weight) in enumerate(parts):
            total += forward_backward(t, images, landmarks, weight, sync and j == len(parts) - 1) * len(images)
    except torch.OutOfMemoryError:
        if t.dist.enabled:  # the other ranks wait in the gradient all-reduce: the step cannot be redone alone
            raise OutOfMemoryStop(remedies(t.config)) from None
        return None  # outside the handler the traceback, and with it the step's activations, are released
    return total


def optimizer_update(t: Training) -> bool:
    """Apply the accumulated gradients; skip the update (and say False) if any gradient is not finite.
    The finiteness check is the update's one host sync (GradScaler's fp16 step makes the same one)."""
    t.scaler.unscale_(t.optimizer)
    finite = all_finite([p.grad for p in t.raw_model.parameters() if p.grad is not None])
    if finite:
        with intended_sync("GradScaler step"):  # fp16: the scaler reads its own inf check (no-op otherwise)
            t.scaler.step(t.optimizer)
    t.scaler.update()  # fp16: lowers the loss scale after an overflow
    t.optimizer.zero_grad(set_to_none=True)
    if finite:
        t.scheduler.step()
        if t.ema is not None:
            t.ema.update(t.raw_model)
    return finite


def train_one_epoch(t: Training, p: Progress, after_update: Callable[[Progress], bool]) -> bool:
    """Continue epoch ``p.epoch`` after its first ``p.samples`` samples; returns False if stopped before its end.

    Each loss is weighted by its share of the accumulation group's samples, so an update equals one big batch.
    ``after_update(p)`` runs after every update and says whether to stop (a signal, ``--max_updates``); the
    recovery checkpoint is written there.
    """
    c = t.config
    t.raw_model.train()
    if p.oom_checkpointing:  # switched on by an earlier out-of-memory recovery of this run
        t.raw_model.set_grad_checkpointing(True)
    t.train_sampler.set_epoch(p.epoch, skip=p.samples)
    # weights of the batches still to do: a run stops only after an update, so groups stay aligned
    weights = micro_batch_weights(len(t.train_sampler), c.batch_size, c.gradient_accumulation_steps)
    start, seen_at_start = time.perf_counter(), p.seen
    epochs = -(-p.planned_updates // t.updates_per_epoch) if p.planned_updates else "?" if c.time_budget else c.epochs
    bar = progress_bar(DevicePrefetcher(t.train_loader, t.device, c.non_blocking), desc=f"epoch {p.epoch + 1}/"
                       f"{epochs}", unit="batch", initial=p.batch, total=p.batch + len(weights), enabled=c.progress)
    group: list[Batch] = []  # kept until the update: redone after an out-of-memory error
    group_loss = torch.zeros((), device=t.device)
    for i, (images, landmarks, _) in enumerate(bar):
        update_now = (i + 1) % c.gradient_accumulation_steps == 0 or i + 1 == len(weights)
        group.append((images, landmarks, weights[i]))
        loss = accumulate(t, p, group[-1:], sync=update_now)
        while loss is None:  # out of memory: gradients of the group dropped, the group redone in smaller parts
            bar.write(recover_from_oom(t, p))
            group_loss = torch.zeros((), device=t.device)
            loss = accumulate(t, p, group, sync=update_now)
        group_loss += loss
        p.seen, p.batch = p.seen + images.shape[0], p.batch + 1
        p.samples += images.shape[0] * t.dist.world_size
        if not update_now:
            continue
        p.loss_sum += group_loss
        group, group_loss = [], torch.zeros((), device=t.device)
        count_update(t, p, optimizer_update(t), bar)
        show_update(t, p, bar, start, seen_at_start)
        if after_update(p):
            bar.close()
            return False
    bar.close()
    return True
