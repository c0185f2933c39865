"""GPU memory: ``--vram_budget_gb`` (a smaller card emulated on a larger one) and ``--auto_micro_batch`` (the
largest micro-batch that fits, found by measuring real steps rather than from a table)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import nn

from cephalo.engine.config import TrainConfig
from cephalo.engine.runtime.distributed import Dist, all_gather
from cephalo.precision import Precision

MARGIN = 0.15  # of the budget, for what the probe does not see: fragmentation, the loader's pinned batches, targets


def apply_vram_budget(device: torch.device, budget_gb: float) -> str:
    """Cap this process's share of the GPU (the caching allocator refuses beyond it); returns a line for the log.

    The CUDA context (a few hundred MB) and other programs are outside the cap, so a run that fits an 8 GiB budget
    on a large GPU needs that much more on a real 8 GB card: the margin of ``--auto_micro_batch`` is for that.
    """
    if device.type != "cuda":
        return f"--vram_budget_gb {budget_gb:g} ignored: it caps GPU memory and this run is on {device}"
    total = torch.cuda.get_device_properties(device).total_memory
    if budget_gb * 2**30 >= total:
        return f"--vram_budget_gb {budget_gb:g}: this GPU has {total / 2**30:.1f} GiB, so nothing is capped"
    torch.cuda.set_per_process_memory_fraction(budget_gb * 2**30 / total, device)
    return f"GPU memory capped at {budget_gb:g} GiB of this GPU's {total / 2**30:.1f} GiB (--vram_budget_gb)"


def pick_micro_batch(per_update: int, step_peak: Callable[[int], int | None], budget_bytes: int,
                     margin: float = MARGIN) -> tuple[int, list[tuple[int, int | None]]]:
    """The largest divisor of ``per_update`` (tried from 1 up) whose measured step peak, in bytes, stays within
    ``budget_bytes * (1 - margin)``; ``step_peak(b)`` is None when micro-batch ``b`` ran out of memory. Returns the
    choice (1 if nothing fits: out-of-memory recovery takes over) and what was measured."""
    limit, best, measured = budget_bytes * (1 - margin), 1, []
    for batch in (d for d in range(1, per_update + 1) if per_update % d == 0):
        peak = step_peak(batch)
        measured.append((batch, peak))
        if peak is None or peak > limit:
            break
        best = batch
    return best, measured


def cuda_step_peak(model: nn.Module, config: TrainConfig, device: torch.device, precision: Precision,
                   extra_bytes: int) -> Callable[[int], int | None]:
    """``step_peak(b)``: peak allocated bytes of forward + backward of a random ``(b, 1, H, W)`` batch, plus
    ``extra_bytes`` for what is allocated later (optimizer state, EMA); None when it ran out of memory."""

    def step_peak(batch: int) -> int | None:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        try:
            for _ in range(2):  # the second step is the steady state (cuDNN has picked its algorithms)
                x = torch.randn(batch, 1, *config.image_size, device=device)
                if config.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with precision.autocast():
                    heatmaps = model(x)
                heatmaps.float().square().mean().backward()
                model.zero_grad(set_to_none=False)  # gradients stay allocated, as in training
        except torch.OutOfMemoryError:
            return None
        finally:
            model.zero_grad(set_to_none=True)
        return torch.cuda.max_memory_allocated(device) + extra_bytes

    return step_peak


def state_bytes_after_step(model: nn.Module, use_ema: bool) -> int:
    """Bytes allocated after the first update beyond what one forward + backward holds: AdamW's two moments and the
    EMA copy."""
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    ema_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values()) if use_ema else 0
    return 2 * param_bytes + ema_bytes


def auto_micro_batch(config: TrainConfig, model: nn.Module, device: torch.device, precision: Precision,
                     info: Dist = Dist()) -> tuple[TrainConfig, str]:
    """``config`` with the measured micro-batch and the accumulation that keeps ``batch_size x accumulation``;
    with several processes, the smallest any of them measured (they must accumulate alike)."""
    per_update = config.batch_size * config.gradient_accumulation_steps
    resolved = dataclasses.replace(config, auto_micro_batch=False)  # a resumed run keeps what was measured
    if device.type != "cuda":
        return resolved, f"--auto_micro_batch measures GPU memory; on {device} the micro-batch stays {config.batch_size}"
    extra = state_bytes_after_step(model, config.use_ema)
    budget = torch.cuda.get_device_properties(device).total_memory
    if config.vram_budget_gb:
        budget = min(budget, int(config.vram_budget_gb * 2**30))
    saved = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}  # BN statistics move
    model.train()
    batch, measured = pick_micro_batch(per_update, cuda_step_peak(model, config, device, precision, extra), budget)
    model.load_state_dict(saved)
    batch = min(all_gather(batch, info))
    shown = ", ".join(f"{b}: {'out of memory' if m is None else f'{m / 2**30:.2f} GiB'}" for b, m in measured)
    resolved = dataclasses.replace(resolved, batch_size=batch, gradient_accumulation_steps=per_update // batch)
    return resolved, (f"--auto_micro_batch: micro-batch {batch} x accumulation {per_update // batch} "
                      f"(budget {budget / 2**30:.1f} GiB less {MARGIN:.0%}; measured peaks {shown})")
