"""A stage's checkpoint from its live objects, restoring a stage from one, and finding the one to resume from."""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path

from cephalo.artifact.checkpoint import (
    LOCAL,
    STAGE_ORDER,
    Checkpoint,
    TrainingState,
    build_state,
    read_checkpoint,
    set_rng_state,
)
from cephalo.engine.config import TrainConfig
from cephalo.engine.step.progress import Progress, Tracker
from cephalo.engine.step.stage import TrainingStage

# The local stage's options: a run resumed before its local stage started may change them all.
LOCAL_OPTIONS = ("patch_size", "patch_mm", "patch_context", "local_model", "local_epochs", "local_batch", "local_lr",
                 "local_warmup_epochs", "local_weight_decay", "local_accumulation_steps", "local_augmentation",
                 "global_share")
# Options a resumed run may change; everything else comes from the checkpoint so the run continues as it was.
RESUME_OVERRIDABLE = ("epochs", "max_updates", "num_workers", "progress", "early_stopping", "patience", "device",
                      "log_every", "val_every", "recovery_interval", "recovery_minutes", "save_frequency", "min_delta",
                      "pin_memory", "prefetch_factor", "persistent_workers", "non_blocking", "vram_budget_gb",
                      "use_compile", "compile_mode", "cache_dir", "skip_bad", "refine", *LOCAL_OPTIONS)
# Options that define the run: resuming with another value is an error naming it (the model, the data, the targets).
MUST_MATCH = ("model", "dataset_path", "dataset_format", "image_size", "head_stride", "sigma", "sigma_mm", "train_split",
              "val_split", "val_fraction", "test_fraction", "fold", "test_fold", "seed")
# Once the local stage trains, its model, patches and source define it too, and its optimisation options are as
# fixed as the global stage's are in a global one (only --local_epochs may change, as --epochs may).
LOCAL_DEFINES = ("local_model", "patch_size", "patch_mm", "patch_context", "refine_from")
NOT_COMPARED = {"resume", "preset", "output_dir", "run_name"}  # where the run is: --resume says it
RESUMABLE = ("last.pt", "recovery.pt")  # and each later stage's, with its prefix: local_last.pt, local_recovery.pt


def resumable_files(run_dir: Path) -> list[Path]:
    """Every stage's last and recovery checkpoints in ``run_dir``."""
    return sorted(p for p in Path(run_dir).glob("*.pt") if p.name.endswith(RESUMABLE))


@dataclass(frozen=True)
class Resumed:
    """What ``--resume`` found: the checkpoint (its training state checked), and notes for the user."""

    checkpoint: Checkpoint
    notes: tuple[str, ...] = ()

    @property
    def path(self) -> Path:
        return self.checkpoint.path

    @property
    def stage(self) -> str:
        """The stage the checkpoint was training: the run goes on in it."""
        return self.checkpoint.training_stage

    @property
    def training(self) -> TrainingState:
        return self.checkpoint.training()


def resume_rules(stage: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(options a resumed run may change, options it must keep)`` for a checkpoint of ``stage``."""
    if stage != LOCAL:
        return RESUME_OVERRIDABLE, MUST_MATCH
    overridable = tuple(k for k in RESUME_OVERRIDABLE if k not in LOCAL_OPTIONS or k == "local_epochs")
    return overridable, MUST_MATCH + LOCAL_DEFINES


def checkpoint_state(stage: TrainingStage, progress: Progress, tracker: Tracker, metrics: dict) -> dict:
    """The checkpoint of ``stage`` now (:func:`cephalo.artifact.checkpoint.build_state`)."""
    parts = stage.parts
    return build_state(stage=stage.spec(metrics), model=parts.raw_model.state_dict(),
                       ema=parts.ema.state_dict() if parts.ema is not None else None,
                       optimizer=parts.optimizer.state_dict(), scheduler=parts.scheduler.state_dict(),
                       scaler=parts.scaler.state_dict(), progress=progress.state_dict(), tracker=tracker.state_dict(),
                       metrics={k: v for k, v in metrics.items() if k != "val_errors_mm"},
                       config=stage.run_config.to_dict(), training_stage=stage.name, frozen=stage.frozen)


def restore(stage: TrainingStage, resumed: Resumed) -> tuple[Progress, Tracker]:
    """Put the training state ``resumed`` found into ``stage``; a checkpoint of another landmark set or model is
    an error naming it."""
    state, path, parts = resumed.training, resumed.path, stage.parts
    stage.check_resume(resumed.checkpoint)
    try:
        parts.raw_model.load_state_dict(state.model)
    except RuntimeError as e:
        raise ValueError(f"{path}: its weights do not fit the model ({str(e).splitlines()[0]})") from None
    if parts.ema is not None and state.ema is not None:
        parts.ema.load_state_dict(state.ema)
    parts.optimizer.load_state_dict(state.optimizer)
    parts.scheduler.load_state_dict(state.scheduler)
    parts.scaler.load_state_dict(state.scaler)
    set_rng_state(state.rng)
    return Progress.from_state_dict(state.progress, parts.device), Tracker.from_state_dict(state.tracker)


def newest_checkpoint(run_dir: Path, order: tuple[str, ...] = STAGE_ORDER) -> Checkpoint:
    """The resumable checkpoint of ``run_dir`` that got furthest (a later stage of ``order``, then more updates);
    damaged ones are skipped with a warning."""
    found = []
    for path in resumable_files(run_dir):
        try:
            checkpoint = read_checkpoint(path)
            progress, stage = checkpoint.training().progress, checkpoint.training_stage
            rank = order.index(stage) if stage in order else -1
            found.append(((rank, progress["updates"], progress.get("batch", 0), path.name.endswith("recovery.pt")),
                          checkpoint))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            warnings.warn(f"skipping {path}: {e}")
    if not found:
        raise FileNotFoundError(f"{run_dir}: no valid checkpoint to resume from (looked for "
                                f"{', '.join(f'*{n}' for n in RESUMABLE)})")
    return max(found, key=lambda item: item[0])[1]


def resume_source(config: TrainConfig) -> Path:
    """``--resume`` as a run directory: a checkpoint's folder, a run folder, or ``auto`` (``--run_name``'s folder,
    else the newest run in ``--output_dir``)."""
    if config.resume != "auto":
        path = Path(config.resume)
        return path if path.is_dir() else path.parent
    if config.run_name:
        return Path(config.output_dir) / config.run_name
    runs = [p for p in Path(config.output_dir).glob("*") if resumable_files(p)]
    if not runs:
        raise FileNotFoundError(f"--resume auto: no run with a checkpoint in {config.output_dir}")
    return max(runs, key=lambda p: max(f.stat().st_mtime for f in resumable_files(p)))


def resolve_resume(config: TrainConfig, given: set[str] | None = None, order: tuple[str, ...] = STAGE_ORDER
                   ) -> tuple[TrainConfig, Resumed | None]:
    """The checkpoint's config with the options the user changed that a resumed run may change, and what was
    resumed (the checkpoint, its path, its stage and a note for each given option that the run does not take).

    ``given``: the options set on the command line (or in ``--config``, or by ``--preset``); None (a config built in
    code) counts every option a resumed run may change as given. A changed option that would make the run another
    one (the model, the data, the targets; the local stage's model and patches once it trains) is an error naming
    it; one that only a new run could use is a note.
    """
    if not config.resume:
        return config, None
    source = Path(config.resume)
    if config.resume != "auto" and source.is_file():
        checkpoint = read_checkpoint(source)
    elif config.resume == "auto":
        try:
            checkpoint = newest_checkpoint(resume_source(config), order)
        except FileNotFoundError as e:  # a first start of a job script that always says --resume auto
            print(f"--resume auto: {e}; starting a new run")
            return dataclasses.replace(config, resume=None), None
    else:
        checkpoint = newest_checkpoint(resume_source(config), order)
    path, training = checkpoint.path, checkpoint.training()  # ValueError unless it can be resumed
    overridable, must_match = resume_rules(training.stage)
    values = dict(training.config)
    notes, errors = [], []
    for key in sorted((set(overridable) if given is None else set(given)) - NOT_COMPARED):
        new, old = getattr(config, key), values.get(key)
        if _same(key, new, old):
            continue
        if key in overridable:
            values[key] = new
        elif key == "dataset_path" and not Path(str(old)).exists():  # the data moved: its landmarks are checked
            values[key] = new
            notes.append(f"--dataset_path {new}: the run's dataset {old} is gone; resuming on this one")
        elif key in must_match:
            where = "its local stage" if key in LOCAL_DEFINES else "the run"
            errors.append(f"--{key} {_shown(new)} ({where} in {path.parent} was trained with {_shown(old)})")
        else:
            notes.append(f"--{key} {_shown(new)} ignored: a resumed run goes on with {_shown(old)} (a new run, "
                         "with another --run_name, can use it)")
    if errors:
        raise ValueError(f"cannot resume with {'; '.join(errors)}: these define the run. Start a new run (another "
                         "--run_name) to change them, or resume without them")
    values["resume"] = str(path)
    return TrainConfig.from_dict(values), Resumed(checkpoint, tuple(notes))


def _same(key: str, new, old) -> bool:
    if isinstance(new, (tuple, list)) or isinstance(old, (tuple, list)):
        return tuple(new or ()) == tuple(old or ())
    if key in ("dataset_path", "cache_dir", "pretrained", "refine_from") and new is not None and old is not None:
        return str(new) == str(old) or Path(str(new)).resolve() == Path(str(old)).resolve()
    return new == old


def _shown(value) -> str:
    return " ".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)
