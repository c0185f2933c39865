"""A run's checkpoint from its live objects, restoring a run from one, and finding the one to resume from."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

from cephalo.engine.checkpoint import (
    StageSpec,
    build_state,
    can_resume,
    load_checkpoint,
    read_stage,
    set_rng_state,
)
from cephalo.engine.config import TrainConfig
from cephalo.engine.progress import Progress, Tracker
from cephalo.engine.setup import Training

# Options a resumed run may change; everything else comes from the checkpoint so the run continues as it was.
RESUME_OVERRIDABLE = ("epochs", "max_updates", "num_workers", "progress", "early_stopping", "patience", "device",
                      "log_every", "val_every", "recovery_interval", "recovery_minutes", "save_frequency", "min_delta",
                      "pin_memory", "prefetch_factor", "persistent_workers", "non_blocking", "vram_budget_gb",
                      "use_compile", "compile_mode", "cache_dir", "skip_bad", "refine", "patch_size", "patch_mm",
                      "patch_context", "local_model", "local_epochs", "local_batch")
RESUMABLE = ("recovery.pt", "last.pt")
# Options that define the run: resuming with another value is an error naming it (the model, the data, the targets).
MUST_MATCH = ("model", "dataset_path", "dataset_format", "image_size", "head_stride", "sigma", "train_split",
              "val_split", "val_fraction", "test_fraction", "fold", "test_fold", "seed")
NOT_COMPARED = {"resume", "preset", "output_dir", "run_name"}  # where the run is: --resume says it


def checkpoint_state(t: Training, progress: Progress, tracker: Tracker, metrics: dict) -> dict:
    """The checkpoint of ``t`` now (:func:`cephalo.engine.checkpoint.build_state`)."""
    stage = StageSpec(model_name=t.config.model, landmark_names=t.train_set.landmark_names,
                      image_size=t.config.image_size, stride=t.codec.stride, sigma=t.codec.sigma)
    return build_state(stage=stage, model=t.raw_model.state_dict(),
                       ema=t.ema.state_dict() if t.ema is not None else None, optimizer=t.optimizer.state_dict(),
                       scheduler=t.scheduler.state_dict(), scaler=t.scaler.state_dict(),
                       progress=progress.state_dict(), tracker=tracker.state_dict(),
                       metrics={k: v for k, v in metrics.items() if k != "val_errors_mm"}, config=t.config.to_dict())


def restore(t: Training, state: dict, path: Path | str) -> tuple[Progress, Tracker]:
    """Put the run of ``state`` into ``t``; a checkpoint of another landmark set or model is an error naming it."""
    trained = read_stage(state, path).spec.landmark_names
    if tuple(trained) != tuple(t.train_set.landmark_names):
        raise ValueError(f"{path}: the run was trained on the landmarks {', '.join(trained)}, the dataset has "
                         f"{', '.join(t.train_set.landmark_names)}; resume on the run's dataset, or start a new run")
    try:
        t.raw_model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise ValueError(f"{path}: its weights do not fit the model ({str(e).splitlines()[0]})") from None
    if t.ema is not None and state.get("ema") is not None:
        t.ema.load_state_dict(state["ema"])
    t.optimizer.load_state_dict(state["optimizer"])
    t.scheduler.load_state_dict(state["scheduler"])
    t.scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    return Progress.from_state_dict(state["progress"], t.device), Tracker.from_state_dict(state["tracker"])


def newest_checkpoint(run_dir: Path) -> tuple[Path, dict]:
    """The resumable checkpoint of ``run_dir`` that got furthest; damaged ones are skipped with a warning."""
    found = []
    for name in RESUMABLE:
        path = run_dir / name
        if not path.exists():
            continue
        try:
            state = load_checkpoint(path)
            found.append(((state["progress"]["updates"], state["progress"]["batch"], name == "recovery.pt"), path,
                          state))
        except (ValueError, KeyError) as e:
            warnings.warn(f"skipping {path}: {e}")
    if not found:
        raise FileNotFoundError(f"{run_dir}: no valid checkpoint to resume from (looked for {', '.join(RESUMABLE)})")
    _, path, state = max(found, key=lambda item: item[0])
    return path, state


def resume_source(config: TrainConfig) -> Path:
    """``--resume`` as a run directory: a checkpoint's folder, a run folder, or ``auto`` (``--run_name``'s folder,
    else the newest run in ``--output_dir``)."""
    if config.resume != "auto":
        path = Path(config.resume)
        return path if path.is_dir() else path.parent
    if config.run_name:
        return Path(config.output_dir) / config.run_name
    runs = [p for p in Path(config.output_dir).glob("*") if any((p / n).exists() for n in RESUMABLE)]
    if not runs:
        raise FileNotFoundError(f"--resume auto: no run with a checkpoint in {config.output_dir}")
    return max(runs, key=lambda p: max((p / n).stat().st_mtime for n in RESUMABLE if (p / n).exists()))


def resolve_resume(config: TrainConfig, given: set[str] | None = None
                   ) -> tuple[TrainConfig, dict | None, Path | None, list[str]]:
    """The checkpoint's config with the options the user changed that a resumed run may change, the checkpoint, its
    path, and a note for each given option that the run does not take.

    ``given``: the options set on the command line (or in ``--config``, or by ``--preset``); None (a config built in
    code) counts every option a resumed run may change as given. A changed option that would make the run another
    one (the model, the data, the targets) is an error naming it; one that only a new run could use is a note.
    """
    if not config.resume:
        return config, None, None, []
    source = Path(config.resume)
    if config.resume != "auto" and source.is_file():
        path, state = source, load_checkpoint(source)
    elif config.resume == "auto":
        try:
            path, state = newest_checkpoint(resume_source(config))
        except FileNotFoundError as e:  # a first start of a job script that always says --resume auto
            print(f"--resume auto: {e}; starting a new run")
            return dataclasses.replace(config, resume=None), None, None, []
    else:
        path, state = newest_checkpoint(resume_source(config))
    can_resume(state, path)
    values = dict(state["config"])
    notes, errors = [], []
    for key in sorted((set(RESUME_OVERRIDABLE) if given is None else set(given)) - NOT_COMPARED):
        new, old = getattr(config, key), values.get(key)
        if _same(key, new, old):
            continue
        if key in RESUME_OVERRIDABLE:
            values[key] = new
        elif key == "dataset_path" and not Path(str(old)).exists():  # the data moved: its landmarks are checked
            values[key] = new
            notes.append(f"--dataset_path {new}: the run's dataset {old} is gone; resuming on this one")
        elif key in MUST_MATCH:
            errors.append(f"--{key} {_shown(new)} (the run in {path.parent} was trained with {_shown(old)})")
        else:
            notes.append(f"--{key} {_shown(new)} ignored: a resumed run goes on with {_shown(old)} (a new run, "
                         "with another --run_name, can use it)")
    if errors:
        raise ValueError(f"cannot resume with {'; '.join(errors)}: these define the run. Start a new run (another "
                         "--run_name) to change them, or resume without them")
    values["resume"] = str(path)
    return TrainConfig.from_dict(values), state, path, notes


def _same(key: str, new, old) -> bool:
    if isinstance(new, (tuple, list)) or isinstance(old, (tuple, list)):
        return tuple(new or ()) == tuple(old or ())
    if key in ("dataset_path", "cache_dir", "pretrained") and new is not None and old is not None:
        return str(new) == str(old) or Path(str(new)).resolve() == Path(str(old)).resolve()
    return new == old


def _shown(value) -> str:
    return " ".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)
