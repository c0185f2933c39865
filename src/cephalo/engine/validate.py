"""Validation: loss and MRE / SD / SDR in mm on the validation set, in each image's original pixel frame, with
every rank's share gathered."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cephalo.console import progress_bar
from cephalo.engine.distributed import all_gather
from cephalo.engine.loss import heatmap_loss
from cephalo.engine.oom import OutOfMemoryStop, release_memory, remedies
from cephalo.engine.prefetch import DevicePrefetcher
from cephalo.engine.progress import Progress
from cephalo.engine.setup import Training
from cephalo.metrics import radial_errors_mm, summarize
from cephalo.preprocessing.normalize import to_model_input


@torch.no_grad()
def validate(t: Training, p: Progress, model: nn.Module) -> dict:
    """``val_loss``, ``val_mre_mm``, ``val_sd_mm``, ``val_sdr_<t>mm`` and ``val_errors_mm (N, K)`` of ``model``."""
    model.eval()
    loss_sum = torch.zeros((), device=t.device)
    predicted, indices = [], []
    batches = DevicePrefetcher(t.val_loader, t.device, t.config.non_blocking)
    for images, landmarks, index in progress_bar(batches, desc="validate", unit="batch", enabled=t.config.progress):
        heatmaps = forward_in_parts(t, p, model, to_model_input(images, t.device, t.config.channels_last))
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


def forward_in_parts(t: Training, p: Progress, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Heatmaps of ``x (B, 1, H, W)``, in parts of ``p.val_micro_batch`` images once a whole batch ran out of GPU
    memory (after training's micro-batch went down, a validation batch can be too big too). In eval mode the parts
    give the same heatmaps as the whole batch."""
    while True:
        part = p.val_micro_batch or len(x)
        try:
            with t.precision.autocast():
                return torch.cat([model(chunk) for chunk in x.split(part)])
        except torch.OutOfMemoryError:
            if part == 1:
                raise OutOfMemoryStop(remedies(t.config)) from None
        release_memory(t.device)  # outside the handler: the failed forward's tensors are free now
        p.val_micro_batch = part // 2
        print(f"out of GPU memory in validation: {p.val_micro_batch} images per forward pass from now on")
