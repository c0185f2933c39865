"""``--time_budget``: a run that ends within a wall-clock time.

The first epoch runs as usual (its learning rate is the warm-up's, which does not depend on the run's length).
After it, its measured cost -- the training per update (the first compiled update left out), and the validation
and checkpoints that every epoch pays once -- turns the time left into a number of updates: whole epochs, then the
part of one more that still fits with its validation (the run stops there, mid-epoch, and validates). That plan is
stored in :class:`~cephalo.engine.step.progress.Progress` (so in every checkpoint) and the cosine schedule is rebuilt
over it. Every stage plans alike, each over its own share of the budget (``--global_share`` with ``--refine``). A resumed run reads the plan and never measures again, so it ends with the weights of an uninterrupted
run. Should the first epoch alone outlast the budget, the run stops at the budget and validates what it has.
"""

from __future__ import annotations

import math
import time

from cephalo.checks import format_duration
from cephalo.engine.config import TrainConfig
from cephalo.engine.runtime.distributed import all_gather
from cephalo.engine.step.parts import Parts
from cephalo.engine.step.progress import Progress
from cephalo.engine.step.schedule import set_length

MARGIN = 0.05  # of the budget kept free: later epochs can run a little slower than the measured one
# --time_budget without --image_size: the global input size measured best at that budget, as (budgets up to this
# many seconds, size), in order (benchmarks/budget_cv.md: 5-fold CV on a 2-core CPU); one stage, and the global
# stage of a --refine run, which only has to land each landmark within its patch: there 128²-192² tied at 6 min
# (160² lowest) and all beat 256², whose epochs cost twice 160²'s
BUDGET_IMAGE_SIZES: tuple[tuple[float, tuple[int, int]], ...] = ((math.inf, (256, 256)),)
REFINE_IMAGE_SIZES: tuple[tuple[float, tuple[int, int]], ...] = ((math.inf, (160, 160)),)


def image_size_for(budget_s: float, refine: bool = False) -> tuple[int, int]:
    """The global input size ``(H, W)`` for a run of ``budget_s`` seconds when ``--image_size`` is not given."""
    return next(size for up_to, size in (REFINE_IMAGE_SIZES if refine else BUDGET_IMAGE_SIZES) if budget_s <= up_to)


def planned_updates(budget_s: float, elapsed_s: float, update_s: float, epoch_fixed_s: float,
                    updates_per_epoch: int, max_updates: int | None = None, margin: float = MARGIN) -> int:
    """Updates of the whole run, after its first epoch: that epoch's, as many more whole epochs as fit in the budget
    (less ``margin``) at ``update_s`` seconds of training per update plus ``epoch_fixed_s`` per epoch (validation,
    checkpoints), then the updates of a last partial epoch that fit with its own validation."""
    spare = budget_s * (1.0 - margin) - elapsed_s
    epoch_s = max(update_s * updates_per_epoch + epoch_fixed_s, 1e-9)
    more = max(0, math.floor(spare / epoch_s))
    left = spare - more * epoch_s - epoch_fixed_s
    partial = min(updates_per_epoch - 1, max(0, math.floor(left / max(update_s, 1e-9))))
    total = updates_per_epoch * (1 + more) + partial
    return min(total, max_updates) if max_updates else total


def first_epoch_costs(train_s: float, updates: int, epoch_s: float, compile_s: float = 0.0) -> tuple[float, float]:
    """``(update_s, fixed_s)`` measured over a stage's first epoch of ``epoch_s`` seconds: the seconds of training
    per update (``train_s`` over ``updates``), and the epoch's rest, less a cold compile's ``compile_s``: validation,
    checkpoints and the log, which every later epoch pays again."""
    return train_s / max(1, updates), max(0.0, epoch_s - compile_s - train_s)


def plan_text(budget_s: float, update_s: float, fixed_s: float, total: int, updates_per_epoch: int) -> str:
    """What a plan decided, for the log: "time budget 3 min: 8 s of training per epoch + 2 s of ... -> 17 epochs"."""
    return (f"time budget {format_duration(budget_s)}: {format_duration(update_s * updates_per_epoch)} of training per "
            f"epoch + {format_duration(fixed_s)} of validation and checkpoints -> {epochs_text(total, updates_per_epoch)}")


def epochs_text(updates: int, updates_per_epoch: int) -> str:
    """``updates`` in epochs, for a person: "1 epoch", "5 epochs", "5 epochs + 12 updates"."""
    whole, part = divmod(updates, updates_per_epoch)
    return f"{whole} epoch{'s' if whole != 1 else ''}" + (f" + {part} update{'s' if part != 1 else ''}" if part else "")


class Budget:
    """The budget's clock of one stage in one process; ``started``: when the stage's setup began (it counts).
    ``config`` is the stage's view, whose ``time_budget`` is the stage's share. Without a budget it changes
    nothing: the stage has its ``--epochs``."""

    def __init__(self, config: TrainConfig, parts: Parts, progress: Progress, started: float):
        self.config, self.parts = config, parts
        self.seconds, self.started = config.time_budget, started
        self.loop_started, self.updates_at_start = time.perf_counter(), progress.updates
        self._planned = progress.planned_updates or None
        if self._planned:  # a resumed run: the plan its first process made
            self._set_schedule_length(self._planned)

    def _set_schedule_length(self, total_updates: int) -> None:
        """The stage's warm-up + cosine schedule over ``total_updates``."""
        set_length(self.parts.scheduler, total_updates, self.parts.warmup_updates, self.config.min_lr_ratio)

    @property
    def planning(self) -> bool:
        """Budgeted and not planned yet: the first epoch (or a run resumed before its plan was made)."""
        return self.seconds is not None and self._planned is None

    def out_of_time(self) -> bool:
        """Still planning and the budget spent: the first epoch alone was too long."""
        return self.planning and time.perf_counter() - self.started >= self.seconds

    def epochs(self) -> float:
        """How many epochs the stage has (the last may be partial): ``--epochs``, unknown (inf) until planned, then
        the plan's."""
        if self.seconds is None:
            return self.config.epochs
        return math.inf if self._planned is None else math.ceil(self._planned / self.parts.updates_per_epoch)

    def reached(self, progress: Progress) -> bool:
        """The plan's last update is done (mid-epoch when the last epoch is partial)."""
        return self._planned is not None and progress.updates >= self._planned

    def plan(self, progress: Progress, metrics: dict) -> str | None:
        """After the first epoch: fix the stage's updates in ``progress`` and the schedule; returns what it
        decided."""
        if not self.planning:
            return None
        now, per_epoch = time.perf_counter(), self.parts.updates_per_epoch
        # the epoch's train_seconds leave the first compiled update out (engine/stats.py)
        update_s, fixed_s = first_epoch_costs(metrics["train_seconds"], progress.updates - self.updates_at_start,
                                              now - self.loop_started, metrics.get("compile_seconds", 0.0))
        total = planned_updates(self.seconds, now - self.started, update_s, fixed_s, per_epoch,
                                self.config.max_updates)
        total = min(all_gather(total, self.parts.dist))  # every rank measured its own clock; all take the shortest
        progress.planned_updates = self._planned = total
        self._set_schedule_length(total)
        left = total - progress.updates
        ends = now - self.started + left * update_s + math.ceil(left / per_epoch) * fixed_s
        return (f"{plan_text(self.seconds, update_s, fixed_s, total, per_epoch)}, {total} updates, the stage "
                f"ending after about {format_duration(ends)}")
