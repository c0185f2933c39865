"""``fit``: epochs of training and validation, 'last', 'best' and recovery checkpoints, early stopping, resume,
and a clean stop on Ctrl+C / SIGTERM."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cephalo.checks import format_duration
from cephalo.engine.budget import Budget
from cephalo.engine.compile_check import check_compiled_accumulation
from cephalo.engine.config import TrainConfig
from cephalo.engine.distributed import any_rank, cleanup
from cephalo.engine.loop import train_one_epoch
from cephalo.engine.monitor import memory_text
from cephalo.engine.oom import OutOfMemoryStop
from cephalo.engine.progress import Progress, Tracker
from cephalo.engine.resume import resolve_resume, restore
from cephalo.engine.run_log import RunLog
from cephalo.engine.saver import CheckpointWriter
from cephalo.engine.setup import Training, build_training
from cephalo.engine.signals import StopRequest
from cephalo.engine.stats import epoch_stats
from cephalo.engine.validate import validate


@dataclass
class FitResult:
    """How a run ended: its folder, the tracker (best metric, why it stopped) and the last epoch's metrics."""

    run_dir: Path
    tracker: Tracker
    metrics: dict = field(default_factory=dict)
    interrupted: str | None = None  # the signal that stopped it; recovery.pt holds its state
    best_written: bool = True  # False: rank 0 ended without a best.pt (no validation ran, or every write failed)
    config: TrainConfig | None = None  # what the run trained with (a resumed run's, from its checkpoint)


def run_directory(config: TrainConfig) -> Path:
    if config.resume:
        return Path(config.resume).parent
    name = config.run_name or f"{config.model}-{Path(str(config.dataset_path)).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    return Path(config.output_dir) / name


def describe(t: Training, run_dir: Path) -> str:
    c = t.config
    params = sum(p.numel() for p in t.raw_model.parameters())
    per_update = c.batch_size * t.dist.world_size * c.gradient_accumulation_steps
    lines = [
        f"run: {run_dir}",
        f"data: {t.data_note}",
        f"model: {c.model}, {params / 1e6:.1f} M parameters, {c.image_size[0]}x{c.image_size[1]} input, heatmaps at "
        f"stride {c.head_stride} (sigma {c.sigma}), augmentation {c.augmentation}",
        f"device: {t.device}, {t.precision}" + (", channels_last" if c.channels_last else "")
        + (", gradient checkpointing" if c.gradient_checkpointing else ""),
        f"batch: {c.batch_size}" + (f" x {t.dist.world_size} processes" if t.dist.enabled else "")
        + f" x {c.gradient_accumulation_steps} accumulation = {per_update} per update, {t.updates_per_epoch} updates "
        f"per epoch; AdamW lr {c.lr:g}, warm-up {c.warmup_epochs:g} epochs" + (f", EMA {c.ema_decay}" if c.use_ema else ""),
    ]
    if c.time_budget:
        lines.append(f"time budget: {format_duration(c.time_budget)} for the {'global stage' if c.refine else 'whole run'}"
                     "; the first epoch's measured time sets the number of epochs (--epochs is not used)")
    return "\n".join(lines + list(t.notes))


def fit(config: TrainConfig, model: torch.nn.Module | None = None, given: set[str] | None = None) -> FitResult:
    """Train as ``config`` says. ``model`` replaces the one ``config.model`` names (tests use tiny ones);
    ``given``: the options the user set (see :func:`~cephalo.engine.resume.resolve_resume`).

    Under ``torchrun`` every rank runs this; rank 0 alone prints, logs and writes checkpoints, and decisions
    (stop, save a recovery checkpoint) are agreed between ranks at each update.
    """
    started = time.perf_counter()  # --time_budget counts setup and caching too
    config.check()
    config, resume_state, resume_path, resume_notes = resolve_resume(config, given)
    t = build_training(config, model)
    main = t.dist.is_main
    say = print if main else (lambda *args, **kwargs: None)
    run_dir = run_directory(t.config)
    log, writer = RunLog(run_dir, t.config.to_dict(), enabled=main), CheckpointWriter(run_dir, t)
    progress, tracker = Progress(loss_sum=torch.zeros((), device=t.device)), Tracker(t.config.monitor)
    if resume_state is not None:
        progress, tracker = restore(t, resume_state, resume_path)
        say(f"resumed from {t.config.resume} at epoch {progress.epoch + 1}, update {progress.updates}")
        for note in resume_notes:
            say(f"note: {note}")
    say(describe(t, run_dir))
    if resume_state is None:  # a resumed run was checked when it started
        note = check_compiled_accumulation(t)
        if note:
            say(note)
    result = FitResult(run_dir, tracker, config=t.config)
    try:
        with StopRequest() as stop:
            train_epochs(t, progress, result, log, writer, stop, say, Budget(t, progress, started))
    except OutOfMemoryStop as e:
        saved = [n for n in ("last.pt", "best.pt", "recovery.pt") if (run_dir / n).exists()]
        raise OutOfMemoryStop(f"{e}\n" + (f"Checkpoints kept in {run_dir}: {', '.join(saved)}; options like "
                                           f"--num_workers can change on cephalo train --resume {run_dir}"
                                           if saved else "No checkpoint had been written yet.")) from None
    finally:
        log.close()
        cleanup(t.dist)
    if result.interrupted:
        say(f"stopped ({result.interrupted}): state saved to {run_dir / 'recovery.pt'}\n"
            f"continue with: cephalo train --resume {run_dir}")
        return result
    if tracker.stopped_because:
        say(tracker.stopped_because)
    result.best_written = (run_dir / "best.pt").is_file() or not main
    if result.best_written:
        say(f"best {tracker.monitor} {tracker.best:.4g} at epoch {tracker.best_epoch}: {run_dir / 'best.pt'}")
    else:
        print(f"error: no best.pt was written in {run_dir} (no validation ran before the run stopped, or the disk "
              "refused every write: see the warnings above)", file=sys.stderr)
    return result


def train_epochs(t: Training, progress: Progress, result: FitResult, log: RunLog, writer: CheckpointWriter,
                 stop: StopRequest, say, budget: Budget) -> None:
    """Epochs until ``--epochs`` (or those of ``--time_budget``), early stopping, ``--max_updates`` or a signal;
    ``result`` follows along."""
    c, tracker = t.config, result.tracker

    def after_update(p: Progress) -> bool:
        stop_now, save_now, out_of_time = any_rank(
            [stop.requested is not None, writer.recovery_due(p), budget.out_of_time()], t.dist, t.device)
        if stop_now:
            result.interrupted = stop.requested or "a signal to another rank"
            tracker.stopped_because = f"{result.interrupted} received"
        elif c.max_updates and p.updates >= c.max_updates:
            tracker.stopped_because = f"reached --max_updates {c.max_updates}"
        elif out_of_time:
            tracker.stopped_because = (f"the time budget ({format_duration(c.time_budget)}) ran out during the first "
                                       "epoch; what was trained is validated and kept")
        elif save_now:
            writer.recovery(p, tracker, result.metrics)
        # a budget's last epoch can be partial: it ends at the plan's last update, then validates as usual
        return tracker.stopped_because is not None or budget.reached(p)

    while progress.epoch < budget.epochs(t, c.epochs) and not tracker.stopped_because:
        start, seen = time.perf_counter(), progress.seen
        # a run resumed after the plan's last update (stopped before its end of epoch) has only that end left
        if not budget.reached(progress) and not train_one_epoch(t, progress, after_update) and result.interrupted:
            writer.save("recovery.pt", progress, tracker, result.metrics)
            return
        result.metrics = epoch_stats(progress, t, time.perf_counter() - start, progress.seen - seen)
        last = progress.epoch >= budget.epochs(t, c.epochs)
        # while planning (the first epoch, or a budget that ended it) the epoch is validated: the plan measures it
        if progress.epoch % c.val_every == 0 or last or budget.planning:
            start = time.perf_counter()
            result.metrics.update(validate(t, progress, t.eval_forward))
            result.metrics["val_seconds"] = time.perf_counter() - start
            if tracker.update(result.metrics, c.min_delta, c.patience if c.early_stopping else None):
                writer.save("best.pt", progress, tracker, result.metrics)
        if progress.epoch % c.save_frequency == 0 or last or tracker.stopped_because:
            writer.save("last.pt", progress, tracker, result.metrics)
        log.log_epoch({**result.metrics, "best": tracker.best, "stopped_because": tracker.stopped_because})
        say(epoch_line(result.metrics, t))
        # after the first epoch has been measured whole (its checkpoints and log too); last.pt then keeps the plan
        plan = None if tracker.stopped_because else budget.plan(t, progress, result.metrics)
        if plan:
            writer.save("last.pt", progress, tracker, result.metrics)
            say(plan)


def epoch_line(m: dict, t: Training) -> str:
    text = f"epoch {m['epoch']:>3}: loss {m['train_loss']:.4g}, {m['images_per_s']:.1f} img/s"
    if "compile_seconds" in m:
        text += f" (after the first update: {m['compile_seconds']:.0f} s with compilation)"
    if "val_mre_mm" in m:
        text += (f" | val loss {m['val_loss']:.4g}, MRE {m['val_mre_mm']:.3f} mm, SDR@2mm {m['val_sdr_2mm']:.1f} %"
                 f", @4mm {m['val_sdr_4mm']:.1f} %")
    return text + f" | {memory_text(t.device)}"
