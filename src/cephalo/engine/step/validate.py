"""What every stage's validation shares: the ranks' shares of the validation images gathered into one set, forward
passes that go on in smaller parts once a whole batch ran out of GPU memory, and the metrics of radial errors."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cephalo.engine.runtime.distributed import Dist, all_gather
from cephalo.engine.step.oom import OutOfMemoryStop, release_memory, remedies
from cephalo.engine.step.progress import Progress
from cephalo.metrics import summarize


def gather_shares(indices: np.ndarray, rows: np.ndarray, loss_sum: float, info: Dist
                  ) -> tuple[np.ndarray, np.ndarray, float]:
    """Every rank's validation share in one: ``indices (n,)`` of the validation images, their ``rows (n, ...)`` and
    loss summed over them -> all indices (sorted, each once: the repeats that padded the shares to one size are
    dropped), their rows, and the mean loss."""
    shares = all_gather((indices, rows, loss_sum), info)
    unique, first = np.unique(np.concatenate([s[0] for s in shares]), return_index=True)
    values = np.concatenate([s[1] for s in shares])[first]
    return unique, values, sum(s[2] for s in shares) / sum(len(s[0]) for s in shares)


def error_metrics(errors_mm: np.ndarray) -> dict:
    """``val_mre_mm``, ``val_sd_mm``, ``val_sdr_<t>mm`` of radial errors ``(N, K)`` in mm."""
    summary = summarize(errors_mm)
    return {"val_mre_mm": summary["mre_mm"], "val_sd_mm": summary["sd_mm"],
            **{f"val_sdr_{k}": v for k, v in summary["sdr"].items()}}


def forward_in_parts(stage, p: Progress, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)`` under the stage's autocast, in parts of ``p.val_micro_batch`` inputs once a whole batch ran out
    of GPU memory (after training's micro-batch went down, a validation batch can be too big too). In eval mode the
    parts give the same outputs as the whole batch."""
    while True:
        part = p.val_micro_batch or len(x)
        try:
            with stage.parts.precision.autocast():
                return torch.cat([model(chunk) for chunk in x.split(part)])
        except torch.OutOfMemoryError:
            if part == 1:
                raise OutOfMemoryStop(remedies(stage.config, stage.label)) from None
        release_memory(stage.parts.device)  # outside the handler: the failed forward's tensors are free now
        p.val_micro_batch = part // 2
        kind = "patches" if stage.label else "images"
        print(f"out of GPU memory in {stage.label}validation: {p.val_micro_batch} {kind} per forward pass from now on")
