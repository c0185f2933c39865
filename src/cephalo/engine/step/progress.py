"""What changes while a run trains: :class:`Progress` (where the run is, saved in every checkpoint so that a resumed
run continues at the same micro-batch) and :class:`Tracker` (the best validation and early stopping).
Everything built at setup (:class:`~cephalo.engine.stages.setup.Parts`) stays as it was built."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import torch

_NOT_SAVED = ("loss_sum", "compile_seconds", "compile_images")


@dataclass
class Progress:
    """Counters of the run; :meth:`state_dict` is what checkpoints keep."""

    epoch: int = 0  # epochs completed
    batch: int = 0  # micro-batches this rank did in the current epoch
    samples: int = 0  # samples of the epoch's order done by all ranks together (where a resumed epoch goes on)
    updates: int = 0  # optimizer updates done
    skipped_updates: int = 0  # updates skipped because gradients were not finite
    bad_in_a_row: int = 0
    micro_batch: int = 0  # images per forward pass after an out-of-memory recovery; 0: the loader's batch
    oom_checkpointing: bool = False  # gradient checkpointing switched on by an out-of-memory recovery
    val_micro_batch: int = 0  # images per validation forward after an out-of-memory error; 0: the whole batch
    seen: int = 0  # training images of the current epoch so far
    planned_updates: int = 0  # --time_budget: the run's updates, fixed after its first epoch (0: not planned)
    loss_sum: torch.Tensor = field(default_factory=lambda: torch.zeros(()))  # on the device: no per-step sync
    # not saved: this process's compile time (--use_compile), kept out of the first epoch's images/s
    compile_seconds: float | None = None  # wall time of the first update, compilation included
    compile_images: int = 0  # images of that update, until the epoch's statistics have taken them out

    def state_dict(self) -> dict:
        state = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _NOT_SAVED}
        return {**state, "loss_sum": float(self.loss_sum)}

    @classmethod
    def from_state_dict(cls, state: dict, device: torch.device) -> Progress:
        """``state`` as :meth:`state_dict` wrote it; a local stage's progress written before 2026-12-05 (epoch,
        updates and plan only, at an epoch's end) reads with the other counters at 0."""
        known = {f.name for f in fields(cls)} - set(_NOT_SAVED)
        return cls(**{k: v for k, v in state.items() if k in known},
                   loss_sum=torch.tensor(float(state.get("loss_sum", 0.0)), device=device))

    def next_epoch(self, device: torch.device) -> None:
        """Count a finished epoch and reset the per-epoch counters."""
        self.epoch, self.batch, self.samples, self.seen = self.epoch + 1, 0, 0, 0
        self.loss_sum = torch.zeros((), device=device)


@dataclass
class Tracker:
    """The best value of the monitored metric, validations without improvement, and why the run stopped."""

    monitor: str = "val_mre_mm"
    best: float = math.inf
    best_epoch: int | None = None
    bad_validations: int = 0
    stopped_because: str | None = None

    def update(self, metrics: dict, min_delta: float = 0.0, patience: int | None = None) -> bool:
        """Take one validation's ``metrics``; returns whether it is the new best. ``patience`` (early stopping):
        stop after that many validations in a row without an improvement of more than ``min_delta``."""
        value = metrics[self.monitor]
        improved = value < self.best - min_delta
        if improved:
            self.best, self.best_epoch, self.bad_validations = value, metrics["epoch"], 0
        else:
            self.bad_validations += 1
        if patience is not None and self.bad_validations >= patience:
            self.stopped_because = (f"early stopping: {self.monitor} has not improved for {patience} validations "
                                    f"(best {self.best:.4g} at epoch {self.best_epoch})")
        return improved

    def state_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_state_dict(cls, state: dict) -> Tracker:
        """A resumed run's tracker; why the earlier process stopped is history now."""
        return cls(**{**{k: v for k, v in state.items() if k in cls.__dataclass_fields__}, "stopped_because": None})
