"""What a run reports: the update counters, the live progress line every ``--log_every`` updates, and the epoch's
mean loss (over all ranks) and throughput, with the first compiled update's time reported apart."""

from __future__ import annotations

import time

from cephalo.device import synchronize
from cephalo.engine.config import TrainConfig
from cephalo.engine.runtime.distributed import all_gather
from cephalo.engine.runtime.finite import NonFiniteError
from cephalo.engine.runtime.host_sync import intended_sync
from cephalo.engine.runtime.monitor import memory_text
from cephalo.engine.step.parts import Parts
from cephalo.engine.step.progress import Progress


def count_update(c: TrainConfig, p: Progress, applied: bool, bar, label: str = "") -> None:
    """Count an update, or a skipped one (non-finite); too many skipped in a row stop the run (``label``: the
    stage's, "local " or nothing)."""
    if applied:
        p.updates, p.bad_in_a_row = p.updates + 1, 0
        return
    p.skipped_updates, p.bad_in_a_row = p.skipped_updates + 1, p.bad_in_a_row + 1
    bar.write(f"warning: non-finite loss or gradients, {label}update skipped ({p.bad_in_a_row} in a row)")
    if p.bad_in_a_row >= c.max_bad_updates:
        lr = "--local_lr" if label else "--lr"
        raise NonFiniteError(f"{p.bad_in_a_row} {label}updates in a row had non-finite loss or gradients; "
                             f"stopped without saving them. Lower {lr}, or use --amp_dtype bf16 "
                             "or no --mixed_precision, then --resume from the last checkpoint.")


def show_update(c: TrainConfig, parts: Parts, p: Progress, bar, start: float, seen_at_start: int) -> None:
    """Time the first (compiling) update apart, and refresh the progress line every ``--log_every`` updates: the
    only host syncs of the loop besides the finiteness check."""
    if c.use_compile and p.compile_seconds is None:
        with intended_sync("first compiled update timed"):
            synchronize(parts.device)
        p.compile_seconds, p.compile_images = time.perf_counter() - start, p.seen - seen_at_start
    if c.progress and p.updates % c.log_every == 0:
        rate = (p.seen - seen_at_start) / (time.perf_counter() - start)
        with intended_sync("progress line"):
            loss = p.loss_sum.item() / p.seen
        bar.set_postfix_str(f"loss {loss:.3g}  lr {parts.scheduler.get_last_lr()[0]:.2e}  {rate:.1f} img/s  "
                            f"{memory_text(parts.device)}", refresh=False)


def epoch_stats(p: Progress, parts: Parts, seconds: float, images: int) -> dict:
    """The finished epoch's mean loss (over all ranks) and throughput (the caller then counts the epoch in ``p``).

    With ``--use_compile`` the first update (compilation) is reported as ``compile_seconds``, not as speed.
    """
    compiled = {}
    if p.compile_images:
        if images > p.compile_images:  # an epoch of one update has nothing else to measure
            seconds, images = seconds - p.compile_seconds, images - p.compile_images
        compiled, p.compile_images = {"compile_seconds": p.compile_seconds}, 0
    loss_sum, seen = 0.0, 0
    for rank_loss, rank_seen in all_gather((p.loss_sum.item(), p.seen), parts.dist):
        loss_sum, seen = loss_sum + rank_loss, seen + rank_seen
    stats = {"epoch": p.epoch + 1, "train_loss": loss_sum / max(seen, 1), "updates": p.updates,
             "skipped_updates": p.skipped_updates,
             "images_per_s": images * parts.dist.world_size / max(seconds, 1e-9), "train_seconds": seconds,
             "lr": parts.scheduler.get_last_lr()[0], **compiled}
    return stats
