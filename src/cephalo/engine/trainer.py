"""``fit``: epochs of training and validation, 'last' and 'best' checkpoints, early stopping, resume."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from cephalo.engine.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from cephalo.engine.config import TrainConfig
from cephalo.preprocessing.normalize import GREY_MEAN, GREY_STD
from cephalo.engine.loop import train_one_epoch, validate
from cephalo.engine.monitor import memory_text
from cephalo.engine.run_log import RunLog
from cephalo.engine.setup import Training, build_training

# Options a resumed run may change; everything else comes from the checkpoint so the run continues as it was.
RESUME_OVERRIDABLE = ("epochs", "max_updates", "num_workers", "progress", "early_stopping", "patience", "device",
                      "log_every", "val_every")


def resolve_resume(config: TrainConfig) -> tuple[TrainConfig, dict | None]:
    """The checkpoint's config with the overridable options the command line changed, and the checkpoint."""
    if not config.resume:
        return config, None
    state = load_checkpoint(config.resume)
    defaults = TrainConfig()
    values = dict(state["config"])
    for key in RESUME_OVERRIDABLE:
        if getattr(config, key) != getattr(defaults, key):
            values[key] = getattr(config, key)
    values["image_size"] = tuple(values["image_size"])
    values["resume"] = config.resume
    return TrainConfig(**values), state


def run_directory(config: TrainConfig) -> Path:
    if config.resume:
        return Path(config.resume).parent
    name = config.run_name or f"{config.model}-{Path(str(config.dataset_path)).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    return Path(config.output_dir) / name


def checkpoint_state(t: Training, epoch: int, updates: int, tracker: dict, metrics: dict) -> dict:
    return {
        "model": t.raw_model.state_dict(),
        "ema": t.ema.state_dict() if t.ema is not None else None,
        "predict_with": "ema" if t.ema is not None else "model",
        "optimizer": t.optimizer.state_dict(),
        "scheduler": t.scheduler.state_dict(),
        "scaler": t.scaler.state_dict(),
        "epoch": epoch,  # epochs completed
        "updates": updates,
        "rng": rng_state(),
        "config": t.config.to_dict(),
        "model_name": t.config.model,
        "landmark_names": list(t.train_set.landmark_names),
        "preprocessing": {"image_size": list(t.config.image_size), "letterbox": "centred, zero padding",
                          "grey_mean": GREY_MEAN, "grey_std": GREY_STD},
        "codec": {"stride": t.codec.stride, "sigma": t.codec.sigma},
        "tracker": dict(tracker),
        "metrics": {k: v for k, v in metrics.items() if k != "val_errors_mm"},
    }


def restore(t: Training, state: dict) -> tuple[int, int, dict]:
    t.raw_model.load_state_dict(state["model"])
    if t.ema is not None and state.get("ema") is not None:
        t.ema.load_state_dict(state["ema"])
    t.optimizer.load_state_dict(state["optimizer"])
    t.scheduler.load_state_dict(state["scheduler"])
    t.scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    return state["epoch"], state["updates"], dict(state["tracker"])


def describe(t: Training, run_dir: Path) -> str:
    c = t.config
    params = sum(p.numel() for p in t.raw_model.parameters())
    lines = [
        f"run: {run_dir}",
        f"data: {t.notes[0]}",
        f"model: {c.model}, {params / 1e6:.1f} M parameters, {c.image_size[0]}x{c.image_size[1]} input, heatmaps at "
        f"stride {c.head_stride} (sigma {c.sigma})",
        f"device: {t.device}, {t.precision}" + (", channels_last" if c.channels_last else "")
        + (", gradient checkpointing" if c.gradient_checkpointing else "") + (", compiled" if c.use_compile else ""),
        f"batch: {c.batch_size} x {c.gradient_accumulation_steps} accumulation = {c.batch_size * c.gradient_accumulation_steps}"
        f" per update, {t.updates_per_epoch} updates per epoch; AdamW lr {c.lr:g}, warm-up {c.warmup_epochs:g} epochs"
        + (f", EMA {c.ema_decay}" if c.use_ema else ""),
    ]
    return "\n".join(lines + t.notes[1:])


def fit(config: TrainConfig, model: torch.nn.Module | None = None) -> dict:
    """Train as ``config`` says; returns the final tracker (best metric and epoch) and the last metrics.

    ``model`` replaces the one ``config.model`` names (tests use tiny ones).
    """
    config, resume_state = resolve_resume(config)
    t = build_training(config, model)
    run_dir = run_directory(config)
    log = RunLog(run_dir, config.to_dict())
    epoch, updates = 0, 0
    tracker = {"monitor": config.monitor, "best": float("inf"), "best_epoch": None, "bad_validations": 0,
               "stopped_because": None}
    if resume_state is not None:
        epoch, updates, tracker = restore(t, resume_state)
        print(f"resumed from {config.resume} at epoch {epoch}, update {updates}")
    print(describe(t, run_dir))
    metrics: dict = {}
    try:
        while epoch < config.epochs and not tracker["stopped_because"]:
            stats = train_one_epoch(t, epoch, updates)
            updates, epoch = stats["updates"], epoch + 1
            metrics = {"epoch": epoch, **stats}
            if epoch % config.val_every == 0 or epoch == config.epochs:
                metrics.update(validate(t, t.eval_model))
                value = metrics[config.monitor]
                if value < tracker["best"]:
                    tracker.update(best=value, best_epoch=epoch, bad_validations=0)
                    save_checkpoint(run_dir / "best.pt", checkpoint_state(t, epoch, updates, tracker, metrics))
                else:
                    tracker["bad_validations"] += 1
                if config.early_stopping and tracker["bad_validations"] >= config.patience:
                    tracker["stopped_because"] = (f"early stopping: {config.monitor} has not improved for "
                                                  f"{config.patience} validations (best {tracker['best']:.4g} at "
                                                  f"epoch {tracker['best_epoch']})")
            if config.max_updates and updates >= config.max_updates:
                tracker["stopped_because"] = f"reached --max_updates {config.max_updates}"
            save_checkpoint(run_dir / "last.pt", checkpoint_state(t, epoch, updates, tracker, metrics))
            log.log_epoch({**metrics, "best": tracker["best"]})
            print(epoch_line(metrics, t))
    finally:
        log.close()
    if tracker["stopped_because"]:
        print(tracker["stopped_because"])
    print(f"best {config.monitor} {tracker['best']:.4g} at epoch {tracker['best_epoch']}: {run_dir / 'best.pt'}")
    return {"run_dir": str(run_dir), "tracker": tracker, "metrics": metrics}


def epoch_line(m: dict, t: Training) -> str:
    text = f"epoch {m['epoch']:>3}: loss {m['train_loss']:.4g}, {m['images_per_s']:.1f} img/s"
    if "val_mre_mm" in m:
        text += (f" | val loss {m['val_loss']:.4g}, MRE {m['val_mre_mm']:.3f} mm, SDR@2mm {m['val_sdr_2mm']:.1f} %"
                 f", @4mm {m['val_sdr_4mm']:.1f} %")
    return text + f" | {memory_text(t.device)}"
