"""The training step and validation."""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from cephalo.device import synchronize
from cephalo.engine.augment import augment
from cephalo.engine.data import micro_batch_weights
from cephalo.engine.distributed import all_gather
from cephalo.engine.monitor import memory_text
from cephalo.engine.oom import OutOfMemoryStop, release_memory, remedies, shrink
from cephalo.engine.prefetch import DevicePrefetcher
from cephalo.engine.setup import Training
from cephalo.metrics import radial_errors_mm, summarize
from cephalo.preprocessing.normalize import to_model_input


class NonFiniteError(RuntimeError):
    """Too many updates in a row had non-finite loss or gradients; nothing non-finite was saved."""


@dataclass
class Progress:
    """Where a run is, saved in every checkpoint so that a resumed run continues at the same micro-batch."""

    epoch: int = 0  # epochs completed
    batch: int = 0  # micro-batches this rank did in the current epoch
    samples: int = 0  # samples of the epoch's order done by all ranks together (where a resumed epoch goes on)
    updates: int = 0  # optimizer updates done
    skipped_updates: int = 0  # updates skipped because gradients were not finite
    bad_in_a_row: int = 0
    micro_batch: int = 0  # images per forward pass after an out-of-memory recovery; 0: the loader's batch
    oom_checkpointing: bool = False  # gradient checkpointing switched on by an out-of-memory recovery
    seen: int = 0  # training images of the current epoch so far
    loss_sum: torch.Tensor = field(default_factory=lambda: torch.zeros(()))  # on the device: no per-step sync

    def state_dict(self) -> dict:
        return {**{k: v for k, v in vars(self).items() if k != "loss_sum"}, "loss_sum": float(self.loss_sum)}

    @classmethod
    def from_state_dict(cls, state: dict, device: torch.device) -> "Progress":
        return cls(**{**state, "loss_sum": torch.tensor(state["loss_sum"], device=device)})


def heatmap_loss(predicted: torch.Tensor, target: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """MSE per heatmap ``(B, K, h, w)``, averaged over landmarks inside the image (``visible (B, K)``)."""
    per_landmark = F.mse_loss(predicted.float(), target, reduction="none").mean(dim=(-2, -1))  # (B, K)
    weight = visible.to(per_landmark.dtype)
    return (per_landmark * weight).sum() / weight.sum().clamp_min(1.0)


def optimizer_update(t: Training) -> bool:
    """Apply the accumulated gradients; skip the update (and say False) if any gradient is not finite.

    The finiteness check is the one host sync per update (GradScaler's fp16 step makes the same one).
    """
    t.scaler.unscale_(t.optimizer)
    grads = [p.grad for p in t.raw_model.parameters() if p.grad is not None]
    finite = bool(torch.stack(torch._foreach_norm(grads)).isfinite().all())
    if finite:
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

    Gradients of ``gradient_accumulation_steps`` loader batches are summed (each loss weighted by its share of the
    group's samples) before one update; with several ranks DDP averages them at the last micro-batch of the group
    only (``no_sync`` before). Out of GPU memory, the group is redone in smaller micro-batches (engine/oom.py).
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
    batches = DevicePrefetcher(t.train_loader, t.device, c.non_blocking)
    bar = tqdm(batches, desc=f"epoch {p.epoch + 1}/{c.epochs}", disable=not c.progress, leave=False,
               unit="batch", dynamic_ncols=True, initial=p.batch, total=p.batch + len(weights))
    group: list[tuple[torch.Tensor, torch.Tensor, float]] = []  # kept until the update: redone after an OOM
    group_loss = torch.zeros((), device=t.device)
    for i, (images, landmarks, _) in enumerate(bar):
        update_now = (i + 1) % c.gradient_accumulation_steps == 0 or i + 1 == len(weights)
        group.append((images, landmarks, weights[i]))
        loss = accumulate(t, p, group[-1:], sync=update_now)
        while loss is None:  # out of memory: gradients of the group are dropped, the group redone in smaller parts
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


def count_update(t: Training, p: Progress, applied: bool, bar: tqdm) -> None:
    """Count an update, or a skipped one (non-finite); too many skipped in a row stop the run."""
    if applied:
        p.updates, p.bad_in_a_row = p.updates + 1, 0
        return
    p.skipped_updates, p.bad_in_a_row = p.skipped_updates + 1, p.bad_in_a_row + 1
    bar.write(f"warning: non-finite loss or gradients, update skipped ({p.bad_in_a_row} in a row)")
    if p.bad_in_a_row >= t.config.max_bad_updates:
        raise NonFiniteError(f"{p.bad_in_a_row} updates in a row had non-finite loss or gradients; "
                             "stopped without saving them. Lower --lr, or use --amp_dtype bf16 "
                             "or no --mixed_precision, then --resume from the last checkpoint.")


def show_update(t: Training, p: Progress, bar: tqdm, start: float, seen_at_start: int) -> None:
    """Time the first (compiling) update apart, and refresh the progress bar every ``--log_every`` updates: the
    only host syncs of the loop besides the finiteness check."""
    c = t.config
    if c.use_compile and t.compile_seconds is None:
        synchronize(t.device)
        t.compile_seconds, t.compile_images = time.perf_counter() - start, p.seen - seen_at_start
    if c.progress and p.updates % c.log_every == 0:
        rate = (p.seen - seen_at_start) / (time.perf_counter() - start)
        bar.set_postfix_str(f"loss {p.loss_sum.item() / p.seen:.3g}  lr {t.scheduler.get_last_lr()[0]:.2e}  "
                            f"{rate:.1f} img/s  {memory_text(t.device)}", refresh=False)


def accumulate(t: Training, p: Progress, batches: list[tuple[torch.Tensor, torch.Tensor, float]],
               sync: bool) -> torch.Tensor | None:
    """Forward and backward of ``batches`` (images ``(B, 1, H, W)`` uint8 and landmarks ``(B, K, 2)`` on the device,
    loss weight) in micro-batches of at most ``p.micro_batch`` images, gradients summed into ``.grad``.

    Returns the loss summed over images, or None if the GPU ran out of memory (the gradients are then partial).
    ``sync``: the last micro-batch of these ends an accumulation group (DDP averages gradients there).
    """
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


def forward_backward(t: Training, images: torch.Tensor, landmarks: torch.Tensor, weight: float,
                     sync: bool) -> torch.Tensor:
    """One micro-batch: augment and render targets on the device, forward, weighted backward; returns its loss."""
    x = to_model_input(images, t.device, t.config.channels_last)
    if t.augment is not None:  # on the device, in batch; landmarks move with the image
        x, landmarks = augment(x, landmarks, t.augment)
    target = t.codec.encode(landmarks)  # (B, K, h, w)
    with t.model.no_sync() if t.dist.enabled and not sync else nullcontext():
        with t.precision.autocast():
            heatmaps = t.model(x)
        loss = heatmap_loss(heatmaps, target, t.codec.inside(landmarks))
        t.scaler.scale(loss * weight).backward()
    return loss.detach()


def recover_from_oom(t: Training, p: Progress) -> str:
    """Drop the partial gradients, free the failed step's memory and pick smaller settings (or stop)."""
    t.optimizer.zero_grad(set_to_none=True)
    release_memory(t.device)
    can_checkpoint = hasattr(t.raw_model, "set_grad_checkpointing")
    micro, checkpointing, message = shrink(t.config, p.micro_batch or t.config.batch_size,
                                           p.oom_checkpointing or t.config.gradient_checkpointing, can_checkpoint)
    if checkpointing and not p.oom_checkpointing and not t.config.gradient_checkpointing:
        t.raw_model.set_grad_checkpointing(True)
        p.oom_checkpointing = True
    p.micro_batch = micro
    return message


def epoch_stats(p: Progress, t: Training, seconds: float, images: int) -> dict:
    """The finished epoch's mean loss (over all ranks) and throughput; resets the epoch counters of ``p``.

    With ``--use_compile`` the first update (compilation) is reported as ``compile_seconds``, not as speed.
    """
    compiled = {}
    if t.compile_images:
        if images > t.compile_images:  # an epoch of one update has nothing else to measure
            seconds, images = seconds - t.compile_seconds, images - t.compile_images
        compiled, t.compile_images = {"compile_seconds": t.compile_seconds}, 0
    loss_sum, seen = 0.0, 0
    for rank_loss, rank_seen in all_gather((p.loss_sum.item(), p.seen), t.dist):
        loss_sum, seen = loss_sum + rank_loss, seen + rank_seen
    stats = {"epoch": p.epoch + 1, "train_loss": loss_sum / max(seen, 1), "updates": p.updates,
             "skipped_updates": p.skipped_updates, "images_per_s": images * t.dist.world_size / max(seconds, 1e-9),
             "train_seconds": seconds, "lr": t.scheduler.get_last_lr()[0], **compiled}
    p.epoch, p.batch, p.samples, p.seen = p.epoch + 1, 0, 0, 0
    p.loss_sum = torch.zeros((), device=t.device)
    return stats


def forward_in_parts(t: Training, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Inference on ``x (B, 1, H, W)``, in parts of ``t.val_micro_batch`` images once a whole batch ran out of GPU
    memory (after training's micro-batch went down, a validation batch can be too big too). In eval mode the parts
    give the same heatmaps as the whole batch."""
    while True:
        part = t.val_micro_batch or len(x)
        try:
            with t.precision.autocast():
                return torch.cat([model(chunk) for chunk in x.split(part)])
        except torch.OutOfMemoryError:
            if part == 1:
                raise OutOfMemoryStop(remedies(t.config)) from None
        release_memory(t.device)  # outside the handler: the failed forward's tensors are free now
        t.val_micro_batch = part // 2
        print(f"out of GPU memory in validation: {t.val_micro_batch} images per forward pass from now on")


@torch.no_grad()
def validate(t: Training, model: nn.Module) -> dict:
    """Loss and MRE / SD / SDR in mm on the validation set, in each image's original pixel frame."""
    model.eval()
    loss_sum = torch.zeros((), device=t.device)
    predicted, indices = [], []
    batches = DevicePrefetcher(t.val_loader, t.device, t.config.non_blocking)
    for images, landmarks, index in tqdm(batches, desc="validate", disable=not t.config.progress, leave=False):
        heatmaps = forward_in_parts(t, model, to_model_input(images, t.device, t.config.channels_last))
        loss_sum += heatmap_loss(heatmaps, t.codec.encode(landmarks), t.codec.inside(landmarks)) * images.shape[0]
        predicted.append(t.codec.decode(heatmaps)[0])  # (B, K, 2) letterboxed pixels
        indices.append(index)
    # every rank validated its share: gather them, and drop the repeats that padded the shares to equal size
    shares = all_gather((torch.cat(indices).numpy(), torch.cat(predicted).cpu().numpy(), loss_sum.item()), t.dist)
    indices, first = np.unique(np.concatenate([s[0] for s in shares]), return_index=True)
    letterboxed = np.concatenate([s[1] for s in shares]).astype(np.float64)[first]
    val_loss = sum(s[2] for s in shares) / sum(len(s[0]) for s in shares)
    original = t.val_set.to_original(indices, letterboxed)
    truth = np.stack([t.val_set.records[i].landmarks for i in indices])
    errors = radial_errors_mm(original, truth, t.val_set.spacing_mm[indices])
    summary = summarize(errors)
    return {"val_loss": val_loss, "val_mre_mm": summary["mre_mm"], "val_sd_mm": summary["sd_mm"],
            **{f"val_sdr_{k}": v for k, v in summary["sdr"].items()}, "val_errors_mm": errors}
