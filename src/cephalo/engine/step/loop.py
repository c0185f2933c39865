"""The training step and the epoch loop around it, for any stage (:class:`~cephalo.engine.step.stage.TrainingStage`).

One update: for each micro-batch of the accumulation group, :func:`forward_backward` (the stage's loss: augment and
targets on the device, forward; then the weighted backward), then :func:`optimizer_update` (finiteness check, step,
schedule, EMA). Out of GPU memory, the group is redone in smaller micro-batches (:mod:`cephalo.engine.step.oom`); what an
epoch reports is :mod:`cephalo.engine.step.stats`.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from typing import Callable

import torch
from torch import nn

from cephalo.console import progress_bar
from cephalo.engine.runtime.finite import all_finite
from cephalo.engine.runtime.host_sync import intended_sync
from cephalo.engine.runtime.prefetch import DevicePrefetcher
from cephalo.engine.step.data import micro_batch_weights
from cephalo.engine.step.oom import OutOfMemoryStop, recover_from_oom, remedies
from cephalo.engine.step.parts import Parts
from cephalo.engine.step.progress import Progress
from cephalo.engine.step.stage import Batch, Group, TrainingStage
from cephalo.engine.step.stats import count_update, show_update


def forward_backward(stage: TrainingStage, model: nn.Module, batch: Batch, weight: float, sync: bool,
                     augment: bool = True) -> torch.Tensor:
    """One micro-batch: the stage's loss through ``model``, its ``weight``-ed backward; returns the loss ``()``.
    ``sync``: the last micro-batch of an accumulation group, where DDP averages the gradients."""
    ddp = isinstance(model, nn.parallel.DistributedDataParallel)
    with model.no_sync() if ddp and not sync else nullcontext():
        loss = stage.loss(model, batch, augment)
        stage.parts.scaler.scale(loss * weight).backward()
    return loss.detach()


def accumulate(stage: TrainingStage, p: Progress, group: Group, sync: bool, model: nn.Module | None = None,
               augment: bool = True) -> torch.Tensor | None:
    """Gradients of ``group`` summed into ``.grad``, in micro-batches of at most ``p.micro_batch`` samples, through
    ``model`` (default: the stage's training forward); returns the loss summed over samples, or None when the GPU
    ran out of memory (the gradients are then partial)."""
    model = stage.parts.model if model is None else model
    micro = p.micro_batch or stage.config.batch_size
    parts = [(piece, weight * len(piece[0]) / len(batch[0])) for batch, weight in group
             for piece in zip(*(t.split(micro) for t in batch))]
    total = torch.zeros((), device=stage.parts.device)
    try:
        for j, (piece, weight) in enumerate(parts):
            last = sync and j == len(parts) - 1
            total += forward_backward(stage, model, piece, weight, last, augment) * len(piece[0])
    except torch.OutOfMemoryError:
        if isinstance(model, nn.parallel.DistributedDataParallel):  # the other ranks wait in the all-reduce
            raise OutOfMemoryStop(remedies(stage.config, stage.label)) from None
        return None  # outside the handler the traceback, and with it the step's activations, are released
    return total


def optimizer_update(parts: Parts) -> bool:
    """Apply the accumulated gradients; skip the update (and say False) if any gradient is not finite.
    The finiteness check is the update's one host sync (GradScaler's fp16 step makes the same one)."""
    parts.scaler.unscale_(parts.optimizer)
    finite = all_finite([p.grad for p in parts.raw_model.parameters() if p.grad is not None])
    if finite:
        with intended_sync("GradScaler step"):  # fp16: the scaler reads its own inf check (no-op otherwise)
            parts.scaler.step(parts.optimizer)
    parts.scaler.update()  # fp16: lowers the loss scale after an overflow
    parts.optimizer.zero_grad(set_to_none=True)
    if finite:
        parts.scheduler.step()
        if parts.ema is not None:
            parts.ema.update(parts.raw_model)
    return finite


def train_one_epoch(stage: TrainingStage, p: Progress, after_update: Callable[[Progress], bool]) -> bool:
    """Continue epoch ``p.epoch`` after its first ``p.samples`` samples; returns False if stopped before its end.

    Each loss is weighted by its share of the accumulation group's samples, so an update equals one big batch.
    ``after_update(p)`` runs after every update and says whether to stop (a signal, ``--max_updates``, the time
    budget's plan); the recovery checkpoint is written there.
    """
    c, parts = stage.config, stage.parts
    stage.train_mode(p)
    stage.sampler.set_epoch(p.epoch, skip=p.samples)
    # weights of the batches still to do: a run stops only after an update, so groups stay aligned
    weights = micro_batch_weights(len(stage.sampler), c.batch_size, c.gradient_accumulation_steps)
    start, seen_at_start = time.perf_counter(), p.seen
    bar = progress_bar(DevicePrefetcher(stage.loader, parts.device, c.non_blocking), unit="batch",
                       desc=f"{stage.label}epoch {p.epoch + 1}/{stage.planned_epochs(p)}", initial=p.batch,
                       total=p.batch + len(weights), enabled=c.progress)
    group: Group = []  # kept until the update: redone after an out-of-memory error
    group_loss = torch.zeros((), device=parts.device)
    for i, batch in enumerate(bar):
        tensors, size = batch[:-1], len(batch[-1])  # the last item: the samples' indices
        update_now = (i + 1) % c.gradient_accumulation_steps == 0 or i + 1 == len(weights)
        group.append((tensors, weights[i]))
        loss = accumulate(stage, p, group[-1:], sync=update_now)
        while loss is None:  # out of memory: gradients of the group dropped, the group redone in smaller parts
            bar.write(recover_from_oom(stage.config, parts, p, stage.label))
            group_loss = torch.zeros((), device=parts.device)
            loss = accumulate(stage, p, group, sync=update_now)
        group_loss += loss
        p.seen, p.batch = p.seen + size, p.batch + 1
        p.samples += size * parts.dist.world_size
        if not update_now:
            continue
        p.loss_sum += group_loss
        group, group_loss = [], torch.zeros((), device=parts.device)
        count_update(c, p, optimizer_update(parts), bar, stage.label)
        show_update(c, parts, p, bar, start, seen_at_start)
        if after_update(p):
            bar.close()
            return False
    bar.close()
    return True
