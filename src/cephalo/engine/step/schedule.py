"""Learning-rate schedule, stepped once per optimizer update: linear warm-up, then cosine to a floor."""

from __future__ import annotations

import math

import torch


def warmup_cosine(total_updates: int, warmup_updates: int, min_lr_ratio: float = 0.01):
    """``f(update) -> LR factor``: from ~0 up to 1 over ``warmup_updates``, then cosine down to ``min_lr_ratio``."""
    total_updates = max(1, total_updates)
    warmup_updates = min(max(0, warmup_updates), total_updates)

    def factor(update: int) -> float:
        if update < warmup_updates:
            return (update + 1) / (warmup_updates + 1)
        progress = (update - warmup_updates) / max(1, total_updates - warmup_updates)
        cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return min_lr_ratio + (1.0 - min_lr_ratio) * cosine

    return factor


def set_length(scheduler: torch.optim.lr_scheduler.LambdaLR, total_updates: int, warmup_updates: int,
               min_lr_ratio: float) -> None:
    """Run ``scheduler``'s warm-up + cosine over ``total_updates`` from now on (a time budget's plan); the update
    count goes on."""
    factor = warmup_cosine(total_updates, warmup_updates, min_lr_ratio)
    scheduler.lr_lambdas = [factor] * len(scheduler.optimizer.param_groups)


def build_scheduler(optimizer: torch.optim.Optimizer, total_updates: int, warmup_updates: int,
                    min_lr_ratio: float) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total_updates, warmup_updates, min_lr_ratio))
