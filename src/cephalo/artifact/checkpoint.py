"""The checkpoint file, the one owner of its schema: training writes it (:func:`build_state`), and every reader --
resume, predict, export, a local stage reading its global model -- reads it through :func:`read_checkpoint`, a
typed :class:`Checkpoint`; no other module knows its keys.

Format version 2 (written since 2026-12-01)::

    format: "cephalo", version: 2
    stages: {"global": StageSpec as a dict}    what inference needs to build, feed and decode each model
    predict_with: "ema" | "model"              which weights inference uses
    model: state_dict, ema: {"module": state_dict, "updates", "decay"} | None
    optimizer, scheduler, scaler, progress, rng, config, tracker, metrics, epoch, updates    (to resume)

A checkpoint holds tensors and plain Python data only (the numpy RNG state as a list), so it loads with
``torch.load(weights_only=True)``: reading one never runs pickled code. Since 2026-12-05 every file also holds
``digest``, a CRC-32 of all the rest (:func:`state_digest`), checked on load: a damaged file is refused, not read
as wrong weights (older files have none and load as before). Version 1 (written until 2026-12-01) kept its
one model's facts as ``model_name``, ``landmark_names``, ``preprocessing`` and ``codec`` and the numpy RNG state as
an array; it is read as a checkpoint with a single global stage (numpy arrays allowed, nothing else).

Format version 3 (a run with a local refinement stage, ``cephalo train --refine``): ``stages`` also has
``"local"`` (its :class:`StageSpec` with the patch scale ``mm_per_px``), ``training_stage`` names the stage whose
training state ``model`` / ``ema`` / ``optimizer`` / ... hold (the local one), and ``frozen`` holds the weights of
the stages trained before it: ``{"global": state_dict}``. One-stage checkpoints stay version 2, which older
cephalo versions read. :class:`TrainedStage` is where inference finds each model. Since 2026-12-05 every stage
trains through one loop: a local stage's ``progress`` has the global stage's counters (a resumed stage goes on at
the micro-batch it stopped at) and its ``config`` the ``--local_*`` options; files of both kinds read alike.

Optional in any version: ``calibration``, the error calibration ``cephalo calibrate`` adds
(:class:`~cephalo.artifact.calibration.ErrorCalibration` as a dict); files without it predict without expected
errors, and older cephalo versions ignore it.
"""

from __future__ import annotations

import pickle
import random
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from cephalo.artifact.calibration import ErrorCalibration
from cephalo.atomic import atomic_open
from cephalo.codec.patches import PatchGeometry
from cephalo.preprocessing.normalize import GREY_MEAN, GREY_STD

FORMAT = "cephalo"
CHECKPOINT_VERSION = 3  # the newest format this version reads and writes
GLOBAL = "global"  # the stage that sees the whole letterboxed image
LOCAL = "local"  # the refinement stage: patches of the original image around each landmark
STAGE_ORDER = (GLOBAL, LOCAL)  # the order stages train in: a checkpoint of a later one got further
LETTERBOX = "centred, zero padding"
_RESUME_KEYS = ("optimizer", "scheduler", "scaler", "progress", "rng", "config", "tracker")
_NUMPY_CORE = np._core if hasattr(np, "_core") else np.core  # numpy 2 renamed it
_NUMPY_ARRAYS = [np.ndarray, np.dtype, type(np.dtype(np.uint32)), _NUMPY_CORE.multiarray._reconstruct]


@dataclass(frozen=True)
class StageSpec:
    """What inference needs to know about one model of a checkpoint, besides its weights.

    ``model_name`` builds it (``create_model``), ``landmark_names`` are its ``K`` outputs in order, ``image_size``
    ``(H, W)`` is its letterboxed input, ``stride`` / ``sigma`` its heatmaps (``(B, K, H / stride, W / stride)``,
    Gaussian sigma in heatmap pixels), ``grey_mean`` / ``grey_std`` the input normalisation.
    """

    model_name: str
    landmark_names: tuple[str, ...]
    image_size: tuple[int, int]
    stride: int
    sigma: float
    grey_mean: float = GREY_MEAN
    grey_std: float = GREY_STD
    letterbox: str = LETTERBOX
    mm_per_px: float | None = None  # a local stage: its patches' scale (``image_size`` is the patch); None: global
    default_spacing_mm: float | None = None  # a local stage: the spacing assumed for an image of unknown spacing
    refined_landmarks: tuple[str, ...] | None = None  # a local stage: the landmarks it corrects (None: all); the
    # others keep the global position, where refining measured worse on the validation images
    context: int = 0  # a local stage: its patches' second channel is at ``context`` times coarser pixels (0: none)
    sigma_mm: float | None = None  # the targets' width in mm it was trained with (--sigma_mm), for the record:
    # decoding uses ``sigma``, so predicting needs no spacing

    def __post_init__(self) -> None:
        object.__setattr__(self, "landmark_names", tuple(str(n) for n in self.landmark_names))
        object.__setattr__(self, "image_size", (int(self.image_size[0]), int(self.image_size[1])))
        object.__setattr__(self, "stride", int(self.stride))
        object.__setattr__(self, "sigma", float(self.sigma))
        object.__setattr__(self, "context", int(self.context))
        if self.refined_landmarks is not None:
            object.__setattr__(self, "refined_landmarks", tuple(str(n) for n in self.refined_landmarks))

    @property
    def in_chans(self) -> int:
        """Input channels: 1 grey, 2 for the patches of a local stage with context."""
        return 2 if self.context else 1

    def patch_geometry(self) -> PatchGeometry:
        """A local stage's patches (its input size, scale and context)."""
        return PatchGeometry(self.image_size[0], self.mm_per_px, self.context)

    @property
    def heatmap_size(self) -> tuple[int, int]:
        return self.image_size[0] // self.stride, self.image_size[1] // self.stride

    def to_dict(self) -> dict:
        refined = None if self.refined_landmarks is None else list(self.refined_landmarks)
        values = {**asdict(self), "landmark_names": list(self.landmark_names), "image_size": list(self.image_size),
                  "refined_landmarks": refined}
        if self.sigma_mm is None:  # a run with --sigma writes what it always wrote
            del values["sigma_mm"]
        return values

    @classmethod
    def from_dict(cls, values: dict, source: Path | str) -> StageSpec:
        """Raises ``ValueError`` naming ``source`` when a field is missing or of the wrong kind."""
        try:
            return cls(**{k: values[k] for k in cls.__dataclass_fields__ if k in values})
        except (TypeError, ValueError, IndexError) as e:
            raise ValueError(f"{source}: damaged model description ({e})") from None


@dataclass(frozen=True)
class TrainedStage:
    """One model as inference loads it: its :class:`StageSpec` and the weights it predicts with."""

    spec: StageSpec
    weights: dict[str, torch.Tensor]
    weights_kind: str  # "ema" or "model"; "frozen": a stage trained before this checkpoint's, as it predicted


# ------------------------------------------------------------------------------------------------- writing


def build_state(*, stage: StageSpec, model: dict, ema: dict | None, optimizer: dict, scheduler: dict, scaler: dict,
                progress: dict, tracker: dict, metrics: dict, config: dict, training_stage: str = GLOBAL,
                frozen: dict[str, tuple[StageSpec, dict]] | None = None) -> dict:
    """The checkpoint of a training run (see the module docstring); ``ema`` is the EMA's state dict or None.
    ``stage`` is the stage being trained (``training_stage``), ``frozen`` the stages trained before it, each as
    ``(spec, the weights it predicts with)``."""
    frozen = frozen or {}
    several = bool(frozen) or training_stage != GLOBAL  # a one-stage global checkpoint stays version 2
    extra = {"training_stage": training_stage, "frozen": {n: w for n, (_, w) in frozen.items()}} if several else {}
    return {
        "format": FORMAT,
        "version": 3 if several else 2,
        "stages": {**{n: spec.to_dict() for n, (spec, _) in frozen.items()}, training_stage: stage.to_dict()},
        **extra,
        "predict_with": "ema" if ema is not None else "model",
        "model": model,
        "ema": ema,
        "optimizer": optimizer,
        "scheduler": scheduler,
        "scaler": scaler,
        "progress": progress,
        "epoch": progress["epoch"],  # epochs completed
        "updates": progress["updates"],
        "rng": rng_state(),
        "config": config,
        "tracker": tracker,
        "metrics": metrics,
    }


def save_checkpoint(path: Path, state: dict) -> None:
    """Write ``state`` to ``path`` atomically: a temporary file, flushed and fsynced, then renamed over ``path``,
    with the :func:`state_digest` of everything in it, which :func:`load_checkpoint` checks.

    A crash or a full disk while writing leaves the previous checkpoint intact.
    """
    state = {k: v for k, v in state.items() if k != "digest"}
    with atomic_open(path, "wb", fsync=True) as f:
        torch.save({**state, "digest": state_digest(state)}, f)


def state_digest(state: dict) -> str:
    """A CRC-32 of every value of ``state`` but its ``digest``: each tensor's name, dtype, shape and bytes, and every
    other value's repr, in key order. ``torch.load`` does not check the zip archive's CRCs, so a flipped byte inside
    a tensor would otherwise load as a wrong weight."""
    crc = 0

    def walk(value, key: str) -> None:
        nonlocal crc
        if isinstance(value, torch.Tensor):
            crc = zlib.crc32(f"{key}:{value.dtype}:{tuple(value.shape)}".encode(), crc)
            crc = zlib.crc32(value.detach().reshape(-1).contiguous().cpu().view(torch.uint8).numpy(), crc)
        elif isinstance(value, dict):
            for k in sorted(value, key=str):
                walk(value[k], f"{key}/{k}")
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(v, f"{key}/{i}")
        else:
            crc = zlib.crc32(f"{key}={value!r}".encode(), crc)

    walk({k: v for k, v in state.items() if k != "digest"}, "")
    return f"crc32:{crc:08x}"


def rng_state() -> dict:
    """Every generator's state as tensors and plain Python values (loadable with ``weights_only=True``)."""
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": {"name": name, "keys": keys.tolist(), "pos": int(pos), "has_gauss": int(has_gauss),
                       "cached_gaussian": float(cached)}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    numpy_state = state["numpy"]
    if isinstance(numpy_state, dict):
        numpy_state = (numpy_state["name"], np.asarray(numpy_state["keys"], np.uint32), numpy_state["pos"],
                       numpy_state["has_gauss"], numpy_state["cached_gaussian"])
    np.random.set_state(numpy_state)  # version 1 kept numpy's own tuple
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------------------------- reading


def load_checkpoint(path: Path | str) -> dict:
    """A checkpoint in the current layout (version 1 files upgraded in memory), on the CPU.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` (one line naming the file) for a damaged
    file, a file that is not a cephalo checkpoint, or one written by a newer cephalo.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        with torch.serialization.safe_globals(_NUMPY_ARRAYS):  # version 1's numpy RNG state; no code, no classes
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # not a pickle, or one with objects beyond tensors and plain data (never run)
        raise ValueError(f"{path}: not a readable cephalo checkpoint (not a torch file, or it holds pickled objects "
                         "that are not loaded)") from None
    except Exception as e:  # a truncated zip, a damaged file
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise ValueError(f"{path}: not a readable cephalo checkpoint ({type(e).__name__}: {first})") from None
    version = state.get("version") if isinstance(state, dict) else None
    if not isinstance(version, int) or "model" not in state:
        raise ValueError(f"{path}: not a cephalo checkpoint (a cephalo checkpoint is the best.pt, last.pt or "
                         "recovery.pt of a cephalo train run; ImageNet weights go to --pretrained)")
    if version > CHECKPOINT_VERSION:
        raise ValueError(f"{path}: written by a newer cephalo (checkpoint format {version}; this one reads up to "
                         f"{CHECKPOINT_VERSION}): upgrade cephalo")
    if "digest" in state and state_digest(state) != state["digest"]:  # files written before 2026-12-05 have none
        raise ValueError(f"{path}: damaged checkpoint: its contents do not match the checksum written with them (a "
                         "byte changed on the disk or in a copy); use another checkpoint of the run, or a good copy")
    return state if version >= 2 else _upgrade_v1(state, path)


def _upgrade_v1(state: dict, path: Path) -> dict:
    missing = [k for k in ("model_name", "landmark_names", "preprocessing", "codec") if k not in state]
    if missing:
        raise ValueError(f"{path}: damaged checkpoint of format 1 (no {', '.join(missing)})")
    pre, codec = state["preprocessing"], state["codec"]
    spec = StageSpec.from_dict({"model_name": state["model_name"], "landmark_names": state["landmark_names"],
                                "image_size": pre.get("image_size"), "stride": codec.get("stride"),
                                "sigma": codec.get("sigma"), "grey_mean": pre.get("grey_mean", GREY_MEAN),
                                "grey_std": pre.get("grey_std", GREY_STD)}, path)
    upgraded = {k: v for k, v in state.items() if k not in ("model_name", "landmark_names", "preprocessing", "codec")}
    return {**upgraded, "format": FORMAT, "version": CHECKPOINT_VERSION, "stages": {GLOBAL: spec.to_dict()}}


def can_resume(state: dict, path: Path | str) -> None:
    """Raises ``ValueError`` unless ``state`` holds a training run's full state."""
    missing = [k for k in _RESUME_KEYS if k not in state]
    if missing:
        raise ValueError(f"{path}: this checkpoint cannot be resumed (it has no {', '.join(missing)})")


def read_stage(state: dict, path: Path | str, name: str = GLOBAL) -> TrainedStage:
    """Stage ``name`` of a loaded checkpoint: its description and the weights it predicts with (the EMA's when the
    run kept one)."""
    stages = state.get("stages") or {}
    if name not in stages:
        raise ValueError(f"{path}: the checkpoint has no {name} model (stages: {', '.join(stages) or 'none'})")
    spec = StageSpec.from_dict(stages[name], path)
    if name in (state.get("frozen") or {}):  # trained before the stage this checkpoint trains
        return TrainedStage(spec, state["frozen"][name], "frozen")
    use_ema = state.get("predict_with") == "ema" and bool(state.get("ema"))
    return TrainedStage(spec, state["ema"]["module"] if use_ema else state["model"], "ema" if use_ema else "model")


@dataclass(frozen=True)
class TrainingState:
    """What a checkpoint holds to resume its training stage: the weights and EMA, the optimizer, schedule and
    loss-scaler states, the counters (``progress``), the best-model tracker, every generator's state, the run's
    options (``config``) and the last metrics."""

    stage: str
    model: dict
    ema: dict | None
    optimizer: dict
    scheduler: dict
    scaler: dict
    progress: dict
    tracker: dict
    rng: dict
    config: dict
    metrics: dict


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint as its readers see it; made by :func:`read_checkpoint`. ``state`` is the file's content (in
    the current layout), which only this module indexes."""

    path: Path
    state: dict

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(self.state.get("stages") or {})

    @property
    def training_stage(self) -> str:
        """The stage whose training state the checkpoint holds."""
        return self.state.get("training_stage", GLOBAL)

    def has(self, name: str) -> bool:
        return name in self.stage_names

    def stage(self, name: str = GLOBAL) -> TrainedStage:
        """Stage ``name``: its description and the weights it predicts with; ``ValueError`` naming the file when
        there is no such stage or its description is damaged."""
        return read_stage(self.state, self.path, name)

    def require_landmarks(self, names: tuple[str, ...]) -> None:
        """``ValueError`` naming both sets when this checkpoint's models predict other landmarks than ``names``
        (a run resumed on another dataset)."""
        trained = self.stage().spec.landmark_names
        if tuple(trained) != tuple(names):
            raise ValueError(f"{self.path}: the run was trained on the landmarks {', '.join(trained)}, the dataset "
                             f"has {', '.join(names)}; resume on the run's dataset, or start a new run")

    def epoch(self, name: str = GLOBAL) -> int | None:
        """The epochs stage ``name`` had trained when this was written (None: a stage trained before this
        checkpoint's, whose epoch is not kept)."""
        epoch = self.state.get("epoch") if self.training_stage == name else None
        return None if epoch is None else int(epoch)

    def validation(self) -> dict | None:
        """The validation figures the model was kept for (``val_mre_mm``, ``val_sdr_2mm``, ...; ``epoch``,
        ``stage``): measured on the run's own validation split, which it selected on (so they flatter it); None
        when the file does not hold them (a checkpoint cut down for inference)."""
        metrics = self.state.get("metrics") or {}
        if "val_mre_mm" not in metrics:
            return None
        keep = {k: v for k, v in metrics.items() if k.startswith("val_") and k != "val_seconds"}
        return {**keep, "epoch": metrics.get("epoch"), "stage": metrics.get("stage", self.training_stage)}

    def training(self) -> TrainingState:
        """The state to resume from; ``ValueError`` naming the file when it has none (a checkpoint cut down for
        inference)."""
        can_resume(self.state, self.path)
        s = self.state
        return TrainingState(self.training_stage, s["model"], s.get("ema"), s["optimizer"], s["scheduler"],
                             s["scaler"], s["progress"], s["tracker"], s["rng"], s["config"], s.get("metrics", {}))

    def save(self, path: Path) -> None:
        """This checkpoint, as it is, written atomically to ``path``."""
        save_checkpoint(path, self.state)

    @property
    def calibration(self) -> ErrorCalibration | None:
        """The error calibration stored with the model (``cephalo calibrate``), if any."""
        data = self.state.get("calibration")
        if data is None:
            return None
        try:
            return ErrorCalibration.from_dict(data)
        except (TypeError, KeyError, ValueError) as e:
            raise ValueError(f"{self.path}: its error calibration is damaged ({e}); run cephalo calibrate "
                             "again") from None

    def with_calibration(self, calibration: ErrorCalibration) -> Checkpoint:
        """This checkpoint with ``calibration`` stored in it (the landmark names must be the model's)."""
        names = tuple(self.stage().spec.landmark_names)
        if tuple(calibration.landmark_names) != names:
            raise ValueError(f"{self.path}: the calibration is for the landmarks "
                             f"{', '.join(calibration.landmark_names)}, the model predicts {', '.join(names)}")
        return Checkpoint(self.path, {**self.state, "calibration": calibration.to_dict()})

    def global_only(self) -> Checkpoint:
        """The checkpoint of its global model alone (format 2): itself when it holds no other stage, else the global
        stage's weights as they predict, for inference (it has no training state to resume)."""
        if self.stage_names == (GLOBAL,):
            return self
        stage = self.stage(GLOBAL)
        state = {"format": FORMAT, "version": 2, "stages": {GLOBAL: stage.spec.to_dict()}, "predict_with": "model",
                 "model": stage.weights, "ema": None}
        return Checkpoint(self.path, state)


def read_checkpoint(path: Path | str) -> Checkpoint:
    """The checkpoint at ``path`` (:func:`load_checkpoint`'s errors)."""
    return Checkpoint(Path(path), load_checkpoint(path))
