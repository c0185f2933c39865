"""The local (refinement) stage: ``cephalo train --refine`` after the global model, ``--refine_from CHECKPOINT`` on
an existing one. It trains through the same loop as the global stage (:func:`~cephalo.engine.run.fit.fit_stage`).

Setup (the order of :mod:`cephalo.engine.stages.setup`): runtime -> the global model of the source checkpoint -> the same
training / validation split at the global input size -> every image at the patch scale (``--patch_mm``), decoded
and resampled once into the cache (rank 0 first) -> the global model predicts the validation images: their errors
are the jitter (what the global stage really gets wrong, on images it did not train on) and their positions are
where validation refines from -> the local model, placed -> loaders -> parts.

Training: all ``K`` patches of each image of a batch, cut around its jittered landmarks (:mod:`.local_data`),
augmented and rendered on the device. Validation refines the global predictions and scores them in
mm, each landmark refined only where that beats its global position (gonion got worse at small budgets:
benchmarks/budget_cv.md); ``best.pt`` then holds both stages and the landmarks the local one refines, and only once
they beat the global model alone.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from cephalo.artifact.checkpoint import GLOBAL, LOCAL, Checkpoint, StageSpec, TrainedStage, read_checkpoint
from cephalo.artifact.refine import refine_with
from cephalo.checks import format_duration
from cephalo.codec import HeatmapCodec
from cephalo.codec.patches import PatchGeometry
from cephalo.engine.config import TrainConfig
from cephalo.engine.stages.local_data import PatchSamples, collate_patch_samples
from cephalo.engine.stages.setup import build_parts, place_model, runtime
from cephalo.engine.step.augment import AugmentConfig
from cephalo.engine.step.data import EpochSampler, build_datasets, build_loader
from cephalo.engine.step.local_patches import local_inputs, local_loss
from cephalo.engine.step.progress import Progress, Tracker
from cephalo.engine.step.stage import Batch, Group, TrainingStage
from cephalo.engine.step.validate import error_metrics, forward_in_parts, gather_shares
from cephalo.metrics import radial_errors_mm
from cephalo.models import create_model
from cephalo.precision import Precision
from cephalo.preprocessing.cache import PatchScaleCache
from cephalo.preprocessing.cached_dataset import CachedLandmarkDataset
from cephalo.preprocessing.normalize import to_model_input
from cephalo.preprocessing.patch_scale import ScaledImages

LOCAL_STRIDE = 2  # heatmaps at half the patch resolution: 0.4 mm per heatmap pixel at 0.2 mm patches
EXTRA_JITTER_MM = 0.3  # on top of the measured errors, so that no two draws are the same point
VAL_BATCH = 8  # validation images refined per forward pass (each brings K patches)
ONLY_IF_BETTER = True  # refine only the landmarks where that beats the global model on the validation images, and
# best.pt takes the two stages only once they beat the global model alone (tests of the mechanics, whose tiny local
# models need not win, turn it off)
# The options the engine reads per stage, and the local stage's flag for each (TrainingStage's docstring)
LOCAL_FLAGS = {"model": "local_model", "batch_size": "local_batch", "epochs": "local_epochs", "lr": "local_lr",
               "warmup_epochs": "local_warmup_epochs", "weight_decay": "local_weight_decay",
               "gradient_accumulation_steps": "local_accumulation_steps", "augmentation": "local_augmentation"}


def local_view(config: TrainConfig, time_budget: float | None) -> TrainConfig:
    """The run's options as the local stage sees them (:class:`~cephalo.engine.step.stage.TrainingStage`)."""
    return dataclasses.replace(config, **{k: getattr(config, flag) for k, flag in LOCAL_FLAGS.items()},
                               image_size=(config.patch_size,) * 2, head_stride=LOCAL_STRIDE, time_budget=time_budget,
                               monitor="val_mre_mm", auto_micro_batch=False, pretrained=None)


@torch.no_grad()
def global_predictions(stage: TrainedStage, val_set: CachedLandmarkDataset, device: torch.device, precision: Precision,
                       batch: int = 8) -> np.ndarray:
    """The global model's landmarks ``(N, K, 2)`` for the validation images, in original pixels."""
    spec = stage.spec
    model = create_model(spec.model_name, len(spec.landmark_names), head_stride=spec.stride)
    model.load_state_dict(stage.weights)
    model.to(device).eval()
    codec = HeatmapCodec(spec.image_size, stride=spec.stride, sigma=spec.sigma)
    found = []
    for start in range(0, len(val_set), batch):
        images = torch.stack([val_set[i][0] for i in range(start, min(start + batch, len(val_set)))])
        with precision.autocast():
            heatmaps = model(to_model_input(images, device))
        found.append(codec.decode(heatmaps.float())[0].cpu().numpy())
    return val_set.to_original(list(range(len(val_set))), np.concatenate(found))


def choose_landmarks(refined_mm: np.ndarray, global_mm: np.ndarray) -> np.ndarray:
    """``(K,)`` bool: the landmarks whose refined validation MRE beats the global model's (errors ``(N, K)`` mm).
    Without the guard (:data:`ONLY_IF_BETTER` off) every landmark is refined."""
    if not ONLY_IF_BETTER:
        return np.ones(refined_mm.shape[1], dtype=bool)
    return refined_mm.mean(0) < global_mm.mean(0)


def implausible_patches(size: int, mm_per_px: float, global_mm_per_px: float, global_errors_mm: np.ndarray
                        ) -> list[str]:
    """Warnings for patches that cannot do the local stage's job, said before it trains: pixels no finer than the
    global stage's (``global_mm_per_px``: its letterboxed pixels in mm, the median over the images), or patches whose
    half-width misses many of the global model's validation errors ``(N, K)`` mm (a patch corrects only what it
    shows). The stage trains as asked."""
    warnings, half = [], size * mm_per_px / 2
    if mm_per_px >= global_mm_per_px:
        warnings.append(f"warning: --patch_mm {mm_per_px:g}: the local stage's pixels are no finer than the global "
                        f"stage's ({global_mm_per_px:.2g} mm at its input size): it sees no more detail than the "
                        f"global model; --patch_mm below {global_mm_per_px:.2g} (default 0.2) gives it finer pixels")
    outside = float(np.mean(np.nan_to_num(global_errors_mm, nan=0.0) > half))
    if outside > 0.25:
        warnings.append(f"warning: --patch_size {size} x --patch_mm {mm_per_px:g} = {2 * half:g} mm patches: "
                        f"{outside:.0%} of the global model's validation errors are beyond their half-width "
                        f"({half:g} mm), which no patch corrects; larger patches (--patch_size), or a better global "
                        "model (more epochs, a larger --image_size), leave fewer")
    return warnings


class LocalStage(TrainingStage):
    """The local stage of ``run_config``'s run on the global model of ``source`` (a checkpoint path), within
    ``time_budget`` seconds (None: ``--local_epochs``)."""

    name, label, files = LOCAL, "local ", "local_"

    def __init__(self, run_config: TrainConfig, source: Path | str, time_budget: float | None = None):
        notes: list[str] = []
        self.run_config, self.source_path = run_config, Path(source)
        self.config = c = local_view(run_config, time_budget)
        rt = runtime(c, notes)
        self.source = read_checkpoint(source)
        global_stage = self.source.stage(GLOBAL)
        if self.source.has(LOCAL) and run_config.refine_from:  # a two-stage best.pt where a global one is expected
            notes.append(f"note: {source} holds a two-stage model: its global stage is the one this local stage "
                         "trains on; its own local stage is not used (best.pt gets this run's)")
        names = global_stage.spec.landmark_names
        at_global_size = dataclasses.replace(run_config, image_size=global_stage.spec.image_size)
        train_set, val_set, self.data_note = rt.main_first(lambda: build_datasets(at_global_size))
        if tuple(train_set.landmark_names) != tuple(names):
            raise ValueError(f"{source}: its global model predicts {', '.join(names)}; the dataset has "
                             f"{', '.join(train_set.landmark_names)}")
        cache = PatchScaleCache(run_config.cache_root(), c.patch_mm)
        (self.train, per_image_s), (self.val, _) = rt.main_first(
            lambda: (ScaledImages.read(train_set.records, cache, c.progress),
                     ScaledImages.read(val_set.records, cache, c.progress)))
        rough = global_predictions(global_stage, val_set, rt.device, rt.precision)  # (N_val, K, 2) original pixels
        self.truth = np.stack([r.landmarks for r in val_set.records])
        self.spacing = np.array([r.spacing_mm for r in val_set.records])
        self.global_errors = radial_errors_mm(rough, self.truth, self.spacing)  # (N_val, K) mm
        self.rough_scaled = self.val.to_scaled(rough)  # (N_val, K, 2) resampled pixels

        self.geometry = PatchGeometry(c.patch_size, c.patch_mm, c.patch_context)
        model = create_model(c.model, len(names), in_chans=len(self.geometry.channel_scales), head_stride=LOCAL_STRIDE)
        model = place_model(c, model, rt, notes)
        jitter_pool = torch.tensor((rough - self.truth) * self.spacing[:, None, None], dtype=torch.float32)
        self.samples = PatchSamples(self.train, jitter_pool, EXTRA_JITTER_MM, c.seed)
        self.sampler = EpochSampler(len(self.train), c.seed, rank=rt.dist.rank, world_size=rt.dist.world_size,
                                    keyed=True)
        self.loader = build_loader(self.samples, c.batch_size, self.sampler, c, rt.device, collate_patch_samples)
        self.parts = build_parts(c, model, rt, len(self.loader), notes)
        # --sigma_mm: the same anatomy per target as the global stage's, at the patches' own scale
        sigma = c.sigma if c.sigma_mm is None else c.sigma_mm / (c.patch_mm * LOCAL_STRIDE)
        self.codec = HeatmapCodec((c.patch_size,) * 2, stride=LOCAL_STRIDE, sigma=sigma)
        self.augment = None if c.augmentation == "none" else AugmentConfig.for_level(c.augmentation)
        self.local_spec = StageSpec(model_name=c.model, landmark_names=names, image_size=(c.patch_size,) * 2,
                                    stride=LOCAL_STRIDE, sigma=sigma, sigma_mm=c.sigma_mm, mm_per_px=c.patch_mm,
                                    default_spacing_mm=statistics.median(r.spacing_mm for r in train_set.records),
                                    context=c.patch_context)
        self.frozen = {GLOBAL: (global_stage.spec, global_stage.weights)}
        self.cached = (f"decoded into {cache.folder} ({per_image_s * 1000:.0f} ms each)" if per_image_s is not None
                       else f"read from {cache.folder}")
        global_mm = statistics.median(r.spacing_mm / min(e.letterbox.scale) for r, e in
                                      zip(train_set.records, train_set.entries))
        self.notes = tuple(notes + implausible_patches(c.patch_size, c.patch_mm, global_mm, self.global_errors))

    @property
    def global_mre(self) -> float:
        """The global model's validation MRE in mm: what the local stage must beat."""
        return float(self.global_errors.mean())

    def loss(self, model: nn.Module, batch: Batch, augment: bool = True) -> Tensor:
        images, landmarks, spacing_mm, jitter_mm = batch
        x, points = local_inputs(images, spacing_mm, landmarks, jitter_mm, self.geometry, self.parts.device,
                                 self.augment if augment else None, self.config.channels_last)
        return local_loss(model, self.codec, self.parts.precision, x, points, len(self.local_spec.landmark_names))

    @torch.no_grad()
    def validate(self, progress: Progress) -> dict:
        """The global predictions of the validation images refined by :attr:`Parts.eval_forward`, landmark by
        landmark where that beats the global model (:func:`choose_landmarks`): MRE / SD / SDR in mm, and which."""
        model, device, dist = self.parts.eval_forward, self.parts.device, self.parts.dist
        model.eval()

        def heatmaps(patches: Tensor) -> Tensor:
            return forward_in_parts(self, progress, model, to_model_input(patches, device, self.config.channels_last))

        rows = list(EpochSampler(len(self.val), 0, shuffle=False, rank=dist.rank, world_size=dist.world_size))
        refined = [refine_with(heatmaps, self.codec, self.geometry, self.val.images(part).to(device),
                               self.val.spacing_mm[part], self.rough_scaled[part])[0].cpu()
                   for part in (rows[i : i + VAL_BATCH] for i in range(0, len(rows), VAL_BATCH))]
        _, refined, _ = gather_shares(np.array(rows), torch.cat(refined).numpy(), 0.0, dist)  # every image, in order
        errors = radial_errors_mm(self.val.to_original(torch.from_numpy(refined)), self.truth, self.spacing)
        keep = choose_landmarks(errors, self.global_errors)
        return {**error_metrics(np.where(keep, errors, self.global_errors)),
                "refined_landmarks": [n for n, k in zip(self.local_spec.landmark_names, keep) if k]}

    def spec(self, metrics: dict) -> StageSpec:
        return dataclasses.replace(self.local_spec, refined_landmarks=metrics.get("refined_landmarks"))

    def check_resume(self, checkpoint: Checkpoint) -> None:
        checkpoint.require_landmarks(self.local_spec.landmark_names)

    def new_tracker(self) -> Tracker:
        """Improvements count from the global model's MRE: best.pt takes the two stages once they beat it."""
        return Tracker("val_mre_mm", best=self.global_mre if ONLY_IF_BETTER else math.inf)

    def fixed_group(self) -> Group:
        """The first ``local_batch x accumulation`` training images with their first epoch's jitter."""
        c, device = self.config, self.parts.device
        count = c.batch_size * c.gradient_accumulation_steps
        keys = [(0, i % len(self.samples)) for i in range(count)]
        micro = [collate_patch_samples([self.samples[k] for k in keys[i : i + c.batch_size]])
                 for i in range(0, count, c.batch_size)]
        return [(tuple(t.to(device) for t in batch[:-1]), len(batch[-1]) / count) for batch in micro]

    def validation_text(self, metrics: dict) -> str:
        kept = [n for n in self.local_spec.landmark_names if n not in metrics.get("refined_landmarks", ())]
        return (f" | refined MRE {metrics['val_mre_mm']:.3f} mm (global {self.global_mre:.3f}), SDR@2mm "
                f"{metrics['val_sdr_2mm']:.1f} %" + (f"; global position kept for {', '.join(kept)}" if kept else ""))

    def describe(self) -> list[str]:
        c, parts, g = self.config, self.parts, self.geometry
        context = f" with context at {g.mm_per_px * g.context:g} mm/px ({g.size * g.mm_per_px * g.context:g} mm)" \
            if g.context else ""
        per_update = c.batch_size * parts.dist.world_size * c.gradient_accumulation_steps
        lines = [
            f"local stage: {c.model}, {len(self.local_spec.landmark_names)} patches of {c.patch_size} px at "
            f"{c.patch_mm:g} mm/px ({c.patch_size * c.patch_mm:g} mm){context} per image; images at the patch scale "
            f"{self.cached}",
            f"local stage data: {self.data_note}; the global model's validation MRE {self.global_mre:.3f} mm, whose "
            "errors are the jitter",
            f"local stage batch: {c.batch_size} images" + (f" x {parts.dist.world_size} processes"
                                                           if parts.dist.enabled else "")
            + f" x {c.gradient_accumulation_steps} accumulation = {per_update} per update, {parts.updates_per_epoch} "
            f"updates per epoch; AdamW lr {c.lr:g}, warm-up {c.warmup_epochs:g} epochs, augmentation "
            f"{c.augmentation}" + (f", EMA {c.ema_decay}" if c.use_ema else ""),
        ]
        if c.time_budget:
            lines.append(f"local stage time budget: {format_duration(c.time_budget)}; its first epoch's measured time "
                         "sets its number of epochs (--local_epochs is not used)")
        return lines

    def finish(self, tracker: Tracker, run_dir: Path) -> str:
        best = run_dir / "best.pt"
        if tracker.best_epoch is not None:
            return (f"best refined MRE {tracker.best:.4g} mm (global alone {self.global_mre:.4g}) at local epoch "
                    f"{tracker.best_epoch}: {best} (global and local stages; validation figures: the best epochs "
                    "and the refined landmarks were chosen on these images, so they flatter the model)")
        if not best.is_file() and self.parts.dist.is_main:  # --refine_from into a new folder: the global model
            self.source.global_only().save(best)
        return (f"warning: the local stage never beat the global model alone ({self.global_mre:.3f} mm on the "
                f"validation images): {best} holds the global model only; local_last.pt has the local stage as "
                "trained")
