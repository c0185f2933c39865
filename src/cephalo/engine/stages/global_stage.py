"""The global stage: the whole image, letterboxed to ``--image_size``, to heatmaps of every landmark.

Setup (the order of :mod:`cephalo.engine.stages.setup`): runtime -> the training and validation splits, read, checked
and letterboxed into the cache (rank 0 first) -> the model -> placed -> ``--auto_micro_batch`` measured -> loaders
-> parts. A batch is ``(images (B, 1, H, W) uint8, landmarks (B, K, 2) letterboxed pixels, index (B,))``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import Tensor, nn

from cephalo.artifact.checkpoint import GLOBAL, Checkpoint, StageSpec
from cephalo.checks import format_duration
from cephalo.codec import HeatmapCodec
from cephalo.console import progress_bar
from cephalo.engine.config import TrainConfig
from cephalo.engine.runtime.gpu_memory import auto_micro_batch
from cephalo.engine.runtime.prefetch import DevicePrefetcher
from cephalo.engine.stages.setup import build_parts, place_model, runtime
from cephalo.engine.step.augment import AugmentConfig
from cephalo.engine.step.augment import augment as random_augment
from cephalo.engine.step.data import EpochSampler, build_datasets, build_loader, micro_batch_weights
from cephalo.engine.step.loss import heatmap_loss
from cephalo.engine.step.progress import Progress
from cephalo.engine.step.stage import Batch, Group, TrainingStage
from cephalo.engine.step.validate import error_metrics, forward_in_parts, gather_shares
from cephalo.metrics import radial_errors_mm
from cephalo.models import create_model
from cephalo.preprocessing.normalize import to_model_input


class GlobalStage(TrainingStage):
    """``config``: the run's options (``time_budget``: this stage's share); ``model`` replaces the one
    ``config.model`` names (tests use tiny ones)."""

    name, label, files = GLOBAL, "", ""

    def __init__(self, config: TrainConfig, model: nn.Module | None = None, run_config: TrainConfig | None = None):
        notes: list[str] = []
        rt = runtime(config, notes)
        self.train_set, self.val_set, self.data_note = rt.main_first(lambda: build_datasets(config))
        if model is None:
            model = create_model(config.model, len(self.train_set.landmark_names), in_chans=1,
                                 head_stride=config.head_stride, pretrained=config.pretrained)
        model = place_model(config, model, rt, notes)
        if config.auto_micro_batch:  # measured on the model as it will train, before the loaders take the batch
            config, note = auto_micro_batch(config, model, rt.device, rt.precision, rt.dist)
            notes.append(note)
            if run_config is not None:  # a resumed run keeps what was measured
                run_config = dataclasses.replace(run_config, auto_micro_batch=False, batch_size=config.batch_size,
                                                 gradient_accumulation_steps=config.gradient_accumulation_steps)
        self.config = config
        self.run_config = config if run_config is None else run_config
        self.mm_per_heatmap_px = float(np.median(self.train_set.mm_per_letterbox_px)) * config.head_stride
        sigma = config.sigma if config.sigma_mm is None else config.sigma_mm / self.mm_per_heatmap_px
        self.codec = HeatmapCodec(config.image_size, stride=config.head_stride, sigma=sigma)
        self.sampler = EpochSampler(len(self.train_set), config.seed, rank=rt.dist.rank,
                                    world_size=rt.dist.world_size)
        self.loader = build_loader(self.train_set, config.batch_size, self.sampler, config, rt.device)
        val_sampler = EpochSampler(len(self.val_set), 0, shuffle=False, rank=rt.dist.rank,
                                   world_size=rt.dist.world_size)
        self.val_loader = build_loader(self.val_set, config.batch_size, val_sampler, config, rt.device)
        self.parts = build_parts(config, model, rt, len(self.loader), notes)
        self.augment = None if config.augmentation == "none" else AugmentConfig.for_level(config.augmentation)
        self.notes = tuple(notes)

    def loss(self, model: nn.Module, batch: Batch, augment: bool = True) -> Tensor:
        images, landmarks = batch
        x = to_model_input(images, self.parts.device, self.config.channels_last)
        if augment and self.augment is not None:  # in batch; landmarks move with the image
            x, landmarks = random_augment(x, landmarks, self.augment)
        target = self.codec.encode(landmarks)  # (B, K, h, w)
        with self.parts.precision.autocast():
            heatmaps = model(x)
        return heatmap_loss(heatmaps, target, self.codec.inside(landmarks))

    @torch.no_grad()
    def validate(self, progress: Progress) -> dict:
        """``val_loss``, MRE / SD / SDR in each image's original pixels, and ``val_errors_mm (N, K)``."""
        model, device = self.parts.eval_forward, self.parts.device
        model.eval()
        loss_sum = torch.zeros((), device=device)
        predicted, indices = [], []
        batches = DevicePrefetcher(self.val_loader, device, self.config.non_blocking)
        for images, landmarks, index in progress_bar(batches, desc="validate", unit="batch",
                                                     enabled=self.config.progress):
            heatmaps = forward_in_parts(self, progress, model, to_model_input(images, device,
                                                                              self.config.channels_last))
            loss_sum += heatmap_loss(heatmaps, self.codec.encode(landmarks), self.codec.inside(landmarks)) \
                * images.shape[0]
            predicted.append(self.codec.decode(heatmaps)[0])  # (B, K, 2) letterboxed pixels
            indices.append(index)
        indices, letterboxed, val_loss = gather_shares(torch.cat(indices).numpy(), torch.cat(predicted).cpu().numpy(),
                                                       loss_sum.item(), self.parts.dist)
        original = self.val_set.to_original(indices, letterboxed.astype(np.float64))
        truth = np.stack([self.val_set.records[i].landmarks for i in indices])
        errors = radial_errors_mm(original, truth, self.val_set.spacing_mm[indices])
        return {"val_loss": val_loss, **error_metrics(errors), "val_errors_mm": errors}

    def spec(self, metrics: dict) -> StageSpec:
        c = self.config
        return StageSpec(model_name=c.model, landmark_names=self.train_set.landmark_names, image_size=c.image_size,
                         stride=self.codec.stride, sigma=self.codec.sigma, sigma_mm=c.sigma_mm)

    def check_resume(self, checkpoint: Checkpoint) -> None:
        checkpoint.require_landmarks(self.train_set.landmark_names)

    def fixed_group(self) -> Group:
        """The first ``batch_size x accumulation`` training images (in dataset order, not augmented) on the
        device."""
        c, device = self.config, self.parts.device
        count = c.batch_size * c.gradient_accumulation_steps
        items = [self.train_set[i % len(self.train_set)] for i in range(count)]
        images = torch.stack([image for image, _, _ in items]).to(device)
        landmarks = torch.stack([lm for _, lm, _ in items]).to(device)
        weights = micro_batch_weights(count, c.batch_size, c.gradient_accumulation_steps)
        return [((images[i : i + c.batch_size], landmarks[i : i + c.batch_size]), w)
                for i, w in zip(range(0, count, c.batch_size), weights)]

    def sigma_text(self) -> str:
        """The targets' width as set and as it is in the other unit: ``sigma 2.0 heatmap px = 3.75 mm`` or ``sigma
        1.5 mm = 3.2 heatmap px``, at the training images' median mm per heatmap pixel."""
        px, mm = self.codec.sigma, self.codec.sigma * self.mm_per_heatmap_px
        if self.config.sigma_mm is None:
            return f"sigma {px:g} heatmap px = {mm:.2f} mm"
        return f"sigma {self.config.sigma_mm:g} mm = {px:.2f} heatmap px"

    def describe(self) -> list[str]:
        c, parts = self.config, self.parts
        params = sum(p.numel() for p in parts.raw_model.parameters())
        per_update = c.batch_size * parts.dist.world_size * c.gradient_accumulation_steps
        lines = [
            f"data: {self.data_note}",
            f"model: {c.model}, {params / 1e6:.1f} M parameters, {c.image_size[0]}x{c.image_size[1]} input, heatmaps "
            f"at stride {c.head_stride} ({self.sigma_text()}), augmentation {c.augmentation}",
            f"device: {parts.device}, {parts.precision}" + (", channels_last" if c.channels_last else "")
            + (", gradient checkpointing" if c.gradient_checkpointing else ""),
            f"batch: {c.batch_size}" + (f" x {parts.dist.world_size} processes" if parts.dist.enabled else "")
            + f" x {c.gradient_accumulation_steps} accumulation = {per_update} per update, {parts.updates_per_epoch} "
            f"updates per epoch; AdamW lr {c.lr:g}, warm-up {c.warmup_epochs:g} epochs"
            + (f", EMA {c.ema_decay}" if c.use_ema else ""),
        ]
        if c.time_budget:
            lines.append(f"time budget: {format_duration(c.time_budget)} for the "
                         f"{'global stage' if c.refine else 'whole run'}; the first epoch's measured time sets the "
                         "number of epochs (--epochs is not used)")
        return lines

