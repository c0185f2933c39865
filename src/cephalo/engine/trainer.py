"""``fit``: epochs of training and validation, 'last', 'best' and recovery checkpoints, early stopping, resume,
and a clean stop on Ctrl+C / SIGTERM."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from cephalo.engine.config import TrainConfig
from cephalo.engine.distributed import any_rank, cleanup
from cephalo.engine.loop import Progress, epoch_stats, train_one_epoch, validate
from cephalo.engine.monitor import memory_text
from cephalo.engine.oom import OutOfMemoryStop
from cephalo.engine.resume import resolve_resume, restore
from cephalo.engine.run_log import RunLog
from cephalo.engine.saver import CheckpointWriter
from cephalo.engine.setup import Training, build_training
from cephalo.engine.signals import StopRequest


def run_directory(config: TrainConfig) -> Path:
    if config.resume:
        return Path(config.resume).parent
    name = config.run_name or f"{config.model}-{Path(str(config.dataset_path)).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    return Path(config.output_dir) / name


def describe(t: Training, run_dir: Path) -> str:
    c = t.config
    params = sum(p.numel() for p in t.raw_model.parameters())
    lines = [
        f"run: {run_dir}",
        f"data: {t.notes[0]}",
        f"model: {c.model}, {params / 1e6:.1f} M parameters, {c.image_size[0]}x{c.image_size[1]} input, heatmaps at "
        f"stride {c.head_stride} (sigma {c.sigma}), augmentation {c.augmentation}",
        f"device: {t.device}, {t.precision}" + (", channels_last" if c.channels_last else "")
        + (", gradient checkpointing" if c.gradient_checkpointing else ""),
        f"batch: {c.batch_size}" + (f" x {t.dist.world_size} processes" if t.dist.enabled else "")
        + f" x {c.gradient_accumulation_steps} accumulation = "
        f"{c.batch_size * t.dist.world_size * c.gradient_accumulation_steps} per update, {t.updates_per_epoch} updates per epoch; AdamW lr {c.lr:g}, warm-up {c.warmup_epochs:g} epochs"
        + (f", EMA {c.ema_decay}" if c.use_ema else ""),
    ]
    return "\n".join(lines + t.notes[1:])


def fit(config: TrainConfig, model: torch.nn.Module | None = None) -> dict:
    """Train as ``config`` says; returns the run directory, the tracker (best metric, why it stopped) and the
    last metrics. ``model`` replaces the one ``config.model`` names (tests use tiny ones).

    Under ``torchrun`` every rank runs this; rank 0 alone prints, logs and writes checkpoints, and decisions
    (stop, save a recovery checkpoint) are agreed between ranks at each update.
    """
    config, resume_state, _ = resolve_resume(config)
    t = build_training(config, model)
    config = t.config  # with what setup measured (--auto_micro_batch)
    main = t.dist.is_main
    config.progress = config.progress and main
    say = print if main else (lambda *args, **kwargs: None)
    run_dir = run_directory(config)
    log, writer = RunLog(run_dir, t.config.to_dict(), enabled=main), CheckpointWriter(run_dir, t)
    progress = Progress(loss_sum=torch.zeros((), device=t.device))
    tracker = {"monitor": config.monitor, "best": float("inf"), "best_epoch": None, "bad_validations": 0,
               "stopped_because": None}
    if resume_state is not None:
        progress, tracker = restore(t, resume_state)
        say(f"resumed from {config.resume} at epoch {progress.epoch + 1}, update {progress.updates}")
    say(describe(t, run_dir))
    metrics: dict = {}
    signalled = []
    with StopRequest() as stop:

        def after_update(p: Progress) -> bool:
            max_reached = bool(config.max_updates) and p.updates >= config.max_updates
            stop_now, save_now = any_rank([stop.requested is not None, writer.recovery_due(p)], t.dist, t.device)
            if stop_now:
                signalled.append(stop.requested or "a signal to another rank")
                tracker["stopped_because"] = f"{signalled[0]} received"
            elif max_reached:
                tracker["stopped_because"] = f"reached --max_updates {config.max_updates}"
            elif save_now:
                writer.recovery(p, tracker, metrics)
            return tracker["stopped_because"] is not None

        try:
            while progress.epoch < config.epochs and not tracker["stopped_because"]:
                start, seen = time.perf_counter(), progress.seen
                finished = train_one_epoch(t, progress, after_update)
                if not finished and signalled:
                    writer.save("recovery.pt", progress, tracker, metrics)
                    say(f"stopped ({signalled[0]}): state saved to {run_dir / 'recovery.pt'}\n"
                        f"continue with: cephalo train --resume {run_dir}")
                    return {"run_dir": str(run_dir), "tracker": tracker, "metrics": metrics}
                metrics = epoch_stats(progress, t, time.perf_counter() - start, progress.seen - seen)
                if progress.epoch % config.val_every == 0 or progress.epoch == config.epochs:
                    metrics.update(validate(t, t.eval_forward))
                    update_tracker(tracker, metrics, config)
                    if tracker["best_epoch"] == progress.epoch:
                        writer.save("best.pt", progress, tracker, metrics)
                if progress.epoch % config.save_frequency == 0 or progress.epoch == config.epochs \
                        or tracker["stopped_because"]:
                    writer.save("last.pt", progress, tracker, metrics)
                log.log_epoch({**metrics, "best": tracker["best"], "stopped_because": tracker["stopped_because"]})
                say(epoch_line(metrics, t))
        except OutOfMemoryStop as e:
            saved = [n for n in ("last.pt", "best.pt", "recovery.pt") if (run_dir / n).exists()]
            raise OutOfMemoryStop(f"{e}\n" + (f"Checkpoints kept in {run_dir}: {', '.join(saved)}; options like "
                                               f"--num_workers can change on cephalo train --resume {run_dir}"
                                               if saved else "No checkpoint had been written yet.")) from None
        finally:
            log.close()
            cleanup(t.dist)
    if tracker["stopped_because"]:
        say(tracker["stopped_because"])
    say(f"best {config.monitor} {tracker['best']:.4g} at epoch {tracker['best_epoch']}: {run_dir / 'best.pt'}")
    return {"run_dir": str(run_dir), "tracker": tracker, "metrics": metrics}


def update_tracker(tracker: dict, metrics: dict, config: TrainConfig) -> None:
    """Best value of the monitored metric, validations without improvement, and early stopping."""
    value = metrics[config.monitor]
    if value < tracker["best"] - config.min_delta:
        tracker.update(best=value, best_epoch=metrics["epoch"], bad_validations=0)
    else:
        tracker["bad_validations"] += 1
    if config.early_stopping and tracker["bad_validations"] >= config.patience:
        tracker["stopped_because"] = (f"early stopping: {config.monitor} has not improved for {config.patience} "
                                      f"validations (best {tracker['best']:.4g} at epoch {tracker['best_epoch']})")


def epoch_line(m: dict, t: Training) -> str:
    text = f"epoch {m['epoch']:>3}: loss {m['train_loss']:.4g}, {m['images_per_s']:.1f} img/s"
    if "compile_seconds" in m:
        text += f" (after the first update: {m['compile_seconds']:.0f} s with compilation)"
    if "val_mre_mm" in m:
        text += (f" | val loss {m['val_loss']:.4g}, MRE {m['val_mre_mm']:.3f} mm, SDR@2mm {m['val_sdr_2mm']:.1f} %"
                 f", @4mm {m['val_sdr_4mm']:.1f} %")
    return text + f" | {memory_text(t.device)}"
