"""The training step and validation."""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from cephalo.engine.data import micro_batch_weights
from cephalo.preprocessing.normalize import to_model_input
from cephalo.engine.monitor import memory_text
from cephalo.engine.setup import Training
from cephalo.evaluation.metrics import radial_errors_mm, summarize


def heatmap_loss(predicted: torch.Tensor, target: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """MSE per heatmap ``(B, K, h, w)``, averaged over landmarks inside the image (``visible (B, K)``)."""
    per_landmark = F.mse_loss(predicted.float(), target, reduction="none").mean(dim=(-2, -1))  # (B, K)
    weight = visible.to(per_landmark.dtype)
    return (per_landmark * weight).sum() / weight.sum().clamp_min(1.0)


def train_one_epoch(t: Training, epoch: int, updates_done: int) -> dict:
    """One pass over the training set; returns the mean loss, the updates done so far, and throughput.

    Gradients of ``gradient_accumulation_steps`` micro-batches are summed (each loss weighted by its share of the
    group's samples) before one optimizer, scheduler and EMA update. The loss stays on the device: the host waits
    for it only every ``log_every`` updates.
    """
    c = t.config
    t.raw_model.train()
    t.train_sampler.set_epoch(epoch)
    weights = micro_batch_weights(len(t.train_set), c.batch_size, c.gradient_accumulation_steps)
    loss_sum = torch.zeros((), device=t.device)
    seen, start = 0, time.perf_counter()
    bar = tqdm(t.train_loader, desc=f"epoch {epoch + 1}/{c.epochs}", disable=not c.progress, leave=False,
               unit="batch", dynamic_ncols=True)
    for i, (images, landmarks, _) in enumerate(bar):
        x = to_model_input(images, t.device, c.channels_last)
        landmarks = landmarks.to(t.device, non_blocking=True)
        target = t.codec.encode(landmarks)  # (B, K, h, w) rendered on the device
        with t.precision.autocast():
            heatmaps = t.model(x)
        loss = heatmap_loss(heatmaps, target, t.codec.inside(landmarks))
        t.scaler.scale(loss * weights[i]).backward()
        loss_sum += loss.detach() * images.shape[0]
        seen += images.shape[0]

        if (i + 1) % c.gradient_accumulation_steps == 0 or i + 1 == len(t.train_loader):
            t.scaler.step(t.optimizer)
            t.scaler.update()
            t.optimizer.zero_grad(set_to_none=True)
            t.scheduler.step()
            if t.ema is not None:
                t.ema.update(t.raw_model)
            updates_done += 1
            if c.progress and updates_done % c.log_every == 0:  # the only host sync of the step
                rate = seen / (time.perf_counter() - start)
                bar.set_postfix_str(f"loss {loss_sum.item() / seen:.3g}  lr {t.scheduler.get_last_lr()[0]:.2e}  "
                                    f"{rate:.1f} img/s  {memory_text(t.device)}", refresh=False)
            if c.max_updates and updates_done >= c.max_updates:
                break
    bar.close()
    seconds = time.perf_counter() - start
    return {"train_loss": loss_sum.item() / max(seen, 1), "updates": updates_done, "images_per_s": seen / seconds,
            "train_seconds": seconds, "lr": t.scheduler.get_last_lr()[0]}


@torch.no_grad()
def validate(t: Training, model: nn.Module) -> dict:
    """Loss and MRE / SD / SDR in mm on the validation set, in each image's original pixel frame."""
    model.eval()
    loss_sum = torch.zeros((), device=t.device)
    predicted, indices = [], []
    for images, landmarks, index in tqdm(t.val_loader, desc="validate", disable=not t.config.progress, leave=False):
        x = to_model_input(images, t.device, t.config.channels_last)
        landmarks = landmarks.to(t.device, non_blocking=True)
        with t.precision.autocast():
            heatmaps = model(x)
        loss_sum += heatmap_loss(heatmaps, t.codec.encode(landmarks), t.codec.inside(landmarks)) * images.shape[0]
        predicted.append(t.codec.decode(heatmaps)[0])  # (B, K, 2) letterboxed pixels
        indices.append(index)
    indices = torch.cat(indices).numpy()
    letterboxed = torch.cat(predicted).cpu().numpy().astype(np.float64)
    original = t.val_set.to_original(indices, letterboxed)
    truth = np.stack([t.val_set.records[i].landmarks for i in indices])
    errors = radial_errors_mm(original, truth, t.val_set.spacing_mm[indices])
    summary = summarize(errors)
    return {"val_loss": loss_sum.item() / len(indices), "val_mre_mm": summary["mre_mm"], "val_sd_mm": summary["sd_mm"],
            **{f"val_sdr_{k}": v for k, v in summary["sdr"].items()}, "val_errors_mm": errors}
