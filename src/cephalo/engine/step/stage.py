"""A training stage: what the one fit loop (:func:`cephalo.engine.run.fit.fit_stage`) and the one step
(:mod:`cephalo.engine.step.loop`) need of a model they train.

Two stages exist: the global one (:class:`~cephalo.engine.stages.global_stage.GlobalStage`: letterboxed whole images) and
the local one (:class:`~cephalo.engine.stages.local_stage.LocalStage`: patches of the originals around each landmark,
trained on top of a global model). A third is a new subclass, not a new loop: the loop, the checkpoints, resume,
the run log, signals, out-of-memory recovery, the time budget, early stopping and the host-sync rules take a
stage and use only what is declared here.

A stage's :attr:`~TrainingStage.config` is the run's :class:`~cephalo.engine.config.TrainConfig` seen by that
stage: the fields the engine reads per stage (``model``, ``batch_size``, ``gradient_accumulation_steps``,
``epochs``, ``lr``, ``warmup_epochs``, ``weight_decay``, ``augmentation``, ``image_size``, ``time_budget``) hold
this stage's values, the others (precision, EMA, workers, recovery, early stopping, ...) are the run's.
:attr:`~TrainingStage.run_config` is the run's own, which checkpoints keep and ``--resume`` compares.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from cephalo.artifact.checkpoint import Checkpoint, StageSpec
from cephalo.engine.config import TrainConfig
from cephalo.engine.step.data import EpochSampler
from cephalo.engine.step.parts import Parts
from cephalo.engine.step.progress import Progress, Tracker

Batch = tuple[Tensor, ...]  # one micro-batch's tensors, each with the batch as its first dimension
Group = list[tuple[Batch, float]]  # an accumulation group: micro-batches and their loss weights


class TrainingStage(ABC):
    """One model's training. Subclasses set the attributes in their constructor (their own setup, in the order of
    :mod:`cephalo.engine.stages.setup`) and implement the abstract methods.

    Batches: :attr:`loader` yields ``(*tensors, index)``; the step hands ``tensors`` (split into micro-batches
    when memory runs out) to :meth:`loss`, the last item (the samples' indices, on the host) stays out of it.
    """

    name: str  # the checkpoint's training_stage: "global", "local"
    label: str  # what precedes "epoch" in its lines: "" or "local "
    files: str  # prefix of its checkpoint and log files: "" (last.pt, metrics.jsonl), "local_" (local_last.pt)
    config: TrainConfig  # the run's options as this stage sees them (the module docstring)
    run_config: TrainConfig  # the run's options, as checkpoints keep them
    parts: Parts
    sampler: EpochSampler  # the order of an epoch, and where a resumed one goes on
    loader: DataLoader
    data_note: str  # which images train and validate
    notes: tuple[str, ...]  # what setup chose or ignored, one line each (printed at the start)
    frozen: dict[str, tuple[StageSpec, dict]] = {}  # stages trained before this one: {name: (spec, weights)}
    defines: tuple[str, ...] = ()  # options of this stage that --resume may not change (besides the run's own)

    @abstractmethod
    def loss(self, model: nn.Module, batch: Batch, augment: bool = True) -> Tensor:
        """The loss ``()`` of one micro-batch through ``model`` (forward under autocast, in batch on the device);
        ``augment=False``: without random augmentation (the compile check compares two paths on one input)."""

    @abstractmethod
    def validate(self, progress: Progress) -> dict:
        """``val_mre_mm``, ``val_sd_mm``, ``val_sdr_<t>mm`` (and whatever else the stage reports) of
        :attr:`Parts.eval_forward` on the validation images, gathered from every process."""

    @abstractmethod
    def spec(self, metrics: dict) -> StageSpec:
        """What inference needs to know of this stage's model, as of ``metrics`` (the last validation)."""

    @abstractmethod
    def fixed_group(self) -> Group:
        """One accumulation group of the first training images, not augmented (the compile check's input)."""

    @abstractmethod
    def describe(self) -> list[str]:
        """Lines for the start of the stage: its data, model and settings."""

    def check_resume(self, checkpoint: Checkpoint) -> None:
        """Raise ``ValueError`` naming the file if ``checkpoint`` cannot continue in this stage (another landmark
        set)."""

    def new_tracker(self) -> Tracker:
        """The best-model tracker of a stage that starts."""
        return Tracker(self.config.monitor)

    def validation_text(self, metrics: dict) -> str:
        """The validation part of an epoch's line."""
        return (f" | val loss {metrics['val_loss']:.4g}, MRE {metrics['val_mre_mm']:.3f} mm, SDR@2mm "
                f"{metrics['val_sdr_2mm']:.1f} %, @4mm {metrics['val_sdr_4mm']:.1f} %")

    def finish(self, tracker: Tracker, run_dir: Path) -> str | None:
        """Called once the stage ended normally (not interrupted); returns its last line, or None for the usual
        "best ... at epoch N" line."""
        return None

    def planned_epochs(self, progress: Progress) -> int | str:
        """The number of epochs a progress bar shows: the budget's plan, '?' before it, else ``--epochs``."""
        per_epoch = self.parts.updates_per_epoch
        if progress.planned_updates:
            return math.ceil(progress.planned_updates / per_epoch)
        return "?" if self.config.time_budget else self.config.epochs

    def train_mode(self, progress: Progress) -> None:
        """Put the model in training mode (and keep an out-of-memory recovery's gradient checkpointing on)."""
        self.parts.raw_model.train()
        if progress.oom_checkpointing:
            self.parts.raw_model.set_grad_checkpointing(True)

    def new_progress(self) -> Progress:
        return Progress(loss_sum=torch.zeros((), device=self.parts.device))
