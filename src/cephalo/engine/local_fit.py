"""The local (refinement) stage of a run: ``cephalo train --refine`` after the global model, ``--refine_from
CHECKPOINT`` on an existing one.

Order: the global stage's checkpoint -> the same training / validation split at the global input size -> every
image decoded once and resampled to the patch scale (``--patch_mm``), held in memory -> the global model predicts
the validation images: their errors are the jitter (what the global stage really gets wrong, on images it did not
train on) and their positions are where validation refines from -> the local model trains for ``--local_epochs``
(all ``K`` patches of ``--local_batch`` images per update, cut, augmented and rendered on the device) -> each
epoch, validation refines the global predictions and scores them in mm; the best writes ``best.pt`` with both
stages, every epoch writes ``local_last.pt``, which ``--resume`` continues from (at an epoch's end).
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from cephalo.checks import format_duration
from cephalo.codec import HeatmapCodec
from cephalo.codec.patches import PatchGeometry
from cephalo.console import progress_bar
from cephalo.device import resolve_device
from cephalo.engine.augment import AugmentConfig
from cephalo.engine.budget import planned_updates
from cephalo.engine.checkpoint import (
    GLOBAL,
    LOCAL,
    Stage,
    StageSpec,
    build_state,
    load_checkpoint,
    read_stage,
    save_checkpoint,
    set_rng_state,
)
from cephalo.engine.config import TrainConfig
from cephalo.engine.data import build_datasets
from cephalo.engine.ema import ModelEma
from cephalo.engine.finite import all_finite
from cephalo.engine.local_stage import draw_jitter, local_inputs, local_loss, refine_landmarks
from cephalo.engine.precision import Precision, resolve_precision
from cephalo.engine.progress import Tracker
from cephalo.engine.schedule import warmup_cosine
from cephalo.engine.setup import param_groups, seed_everything
from cephalo.image_io import read_grey
from cephalo.metrics import radial_errors_mm, summarize
from cephalo.models import create_model
from cephalo.preprocessing.cached_dataset import CachedLandmarkDataset
from cephalo.preprocessing.normalize import to_model_input
from cephalo.preprocessing.rescale import Rescale

LOCAL_LAST = "local_last.pt"
LOCAL_STRIDE = 2  # heatmaps at half the patch resolution: 0.4 mm per heatmap pixel at 0.2 mm patches
AUGMENTATION = "light"  # the patch is already moved by the jitter; benchmarks/refine_cv.md
EXTRA_JITTER_MM = 0.3  # on top of the measured errors, so that no two draws are the same point
ONLY_IF_BETTER = True  # best.pt takes the two stages only once they beat the global model alone (tests of the
# mechanics, whose tiny local models need not win, turn it off)


@dataclass(frozen=True)
class ScaledImages:
    """Originals resampled to the patch scale, padded (right and bottom, with 0) into one uint8 tensor."""

    images: Tensor  # (N, 1, H, W) uint8
    spacing_mm: Tensor  # (N,) float32: each resampled image's mm per pixel
    landmarks: Tensor  # (N, K, 2) float32: the truth in resampled pixels
    rescales: tuple[Rescale, ...]

    @classmethod
    def read(cls, records, mm_per_px: float, progress: bool) -> tuple[ScaledImages, float]:
        """Decode and resample each record's image once; also the seconds per image it took."""
        start, arrays, rescales = time.perf_counter(), [], []
        for record in progress_bar(records, desc="patch scale", unit="img", enabled=progress):
            original = read_grey(record.image_path)
            rescales.append(Rescale(original.shape[:2], record.spacing_mm, mm_per_px))
            arrays.append(rescales[-1].apply(original))
        seconds = (time.perf_counter() - start) / max(1, len(records))
        h, w = max(a.shape[0] for a in arrays), max(a.shape[1] for a in arrays)
        images = torch.zeros(len(arrays), 1, h, w, dtype=torch.uint8)
        for i, a in enumerate(arrays):
            images[i, 0, : a.shape[0], : a.shape[1]] = torch.from_numpy(a)
        landmarks = np.stack([s.forward(r.landmarks) for s, r in zip(rescales, records)])
        return cls(images, torch.tensor([s.actual_mm_per_px for s in rescales], dtype=torch.float32),
                   torch.tensor(landmarks, dtype=torch.float32), tuple(rescales)), seconds

    def to_scaled(self, points: np.ndarray) -> Tensor:
        """Original pixels ``(N, K, 2)`` -> resampled pixels."""
        return torch.tensor(np.stack([s.forward(p) for s, p in zip(self.rescales, points)]), dtype=torch.float32)

    def to_original(self, points: Tensor) -> np.ndarray:
        return np.stack([s.inverse(p) for s, p in zip(self.rescales, points.double().cpu().numpy())])


@torch.no_grad()
def global_predictions(stage: Stage, val_set: CachedLandmarkDataset, device: torch.device, precision: Precision,
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


@dataclass
class LocalProgress:
    epoch: int = 0
    updates: int = 0
    planned_updates: int = 0  # --time_budget: fixed after the first epoch


def fit_local(config: TrainConfig, global_checkpoint: Path | str, run_dir: Path, budget_s: float | None = None,
              resume: bool = False) -> Tracker:
    """Train the local stage on top of ``global_checkpoint``'s global model, in ``run_dir``; returns the tracker of
    its validation MRE (refined global predictions). ``budget_s``: wall-clock seconds for this stage."""
    started = time.perf_counter()
    run_dir.mkdir(parents=True, exist_ok=True)
    source = load_checkpoint(global_checkpoint)
    global_stage = read_stage(source, global_checkpoint, GLOBAL)
    config = dataclasses.replace(config, image_size=global_stage.spec.image_size)  # validation's global input
    device = resolve_device(config.device)
    precision = resolve_precision(device, config.mixed_precision, config.amp_dtype)
    seed_everything(config.seed, config.deterministic)
    train_set, val_set, data_note = build_datasets(config)
    names = global_stage.spec.landmark_names
    if tuple(train_set.landmark_names) != tuple(names):
        raise ValueError(f"{global_checkpoint}: its global model predicts {', '.join(names)}; the dataset has "
                         f"{', '.join(train_set.landmark_names)}")
    k = len(names)
    geometry = PatchGeometry(config.patch_size, config.patch_mm)
    train, per_image_s = ScaledImages.read(train_set.records, config.patch_mm, config.progress)
    val, _ = ScaledImages.read(val_set.records, config.patch_mm, config.progress)
    rough = global_predictions(global_stage, val_set, device, precision)  # (N_val, K, 2) original pixels
    truth = np.stack([r.landmarks for r in val_set.records])
    spacing = np.array([r.spacing_mm for r in val_set.records])
    jitter_pool = torch.tensor((rough - truth) * spacing[:, None, None], dtype=torch.float32, device=device)
    rough_scaled = val.to_scaled(rough)
    global_mre = float(radial_errors_mm(rough, truth, spacing).mean())

    model = create_model(config.local_model, k, in_chans=1, head_stride=LOCAL_STRIDE).to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=config.lr, foreach=True)
    updates_per_epoch = math.ceil(len(train_set) / config.local_batch)
    warmup = round(config.warmup_epochs * updates_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(updates_per_epoch * config.local_epochs, warmup, config.min_lr_ratio))
    scaler = precision.grad_scaler()
    ema = ModelEma(model, config.ema_decay) if config.use_ema else None
    codec = HeatmapCodec((config.patch_size, config.patch_size), stride=LOCAL_STRIDE, sigma=config.sigma)
    spec = StageSpec(model_name=config.local_model, landmark_names=names, image_size=(config.patch_size,) * 2,
                     stride=LOCAL_STRIDE, sigma=config.sigma, mm_per_px=config.patch_mm,
                     default_spacing_mm=statistics.median(r.spacing_mm for r in train_set.records))
    frozen = {GLOBAL: (global_stage.spec, global_stage.weights)}
    progress, tracker = LocalProgress(), Tracker("val_mre_mm", best=global_mre if ONLY_IF_BETTER else math.inf)
    last_path = run_dir / LOCAL_LAST
    if resume and last_path.is_file():
        state = load_checkpoint(last_path)
        model.load_state_dict(state["model"])
        if ema is not None and state.get("ema"):
            ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        progress = LocalProgress(**state["progress"])
        tracker = Tracker.from_state_dict(state["tracker"])
        print(f"local stage resumed from {last_path} at epoch {progress.epoch + 1}")
    if progress.planned_updates:
        _set_length(scheduler, optimizer, progress.planned_updates, warmup, config.min_lr_ratio)
    augment_cfg = AugmentConfig.for_level(AUGMENTATION)
    print(f"local stage: {config.local_model}, {k} patches of {config.patch_size} px at {config.patch_mm:g} mm/px "
          f"({config.patch_size * config.patch_mm:g} mm) per image, {config.local_batch} images per update, "
          f"{updates_per_epoch} updates per epoch; images resampled in {per_image_s * 1000:.0f} ms each\n"
          f"local stage data: {data_note}; the global model's validation MRE {global_mre:.3f} mm, whose errors "
          "are the jitter" + (f"\nlocal stage time budget: {format_duration(budget_s)}" if budget_s else ""))

    def state_now(metrics: dict) -> dict:
        return build_state(stage=spec, model=model.state_dict(), ema=ema.state_dict() if ema else None,
                           optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                           scaler=scaler.state_dict(), progress=dataclasses.asdict(progress),
                           tracker=tracker.state_dict(), metrics=metrics, config=config.to_dict(),
                           training_stage=LOCAL, frozen=frozen)

    def epochs() -> float:
        if progress.planned_updates:  # a budget's plan, also in a resumed run
            return math.ceil(progress.planned_updates / updates_per_epoch)
        return config.local_epochs if budget_s is None else math.inf

    loop_start, updates_at_start = time.perf_counter(), progress.updates
    while progress.epoch < epochs():
        epoch_start = time.perf_counter()
        model.train()
        order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(config.seed * 100003
                                                                                          + progress.epoch))
        loss_sum = torch.zeros((), device=device)
        for rows in progress_bar(order.split(config.local_batch), desc=f"local epoch {progress.epoch + 1}",
                                 unit="batch", enabled=config.progress):
            jitter = draw_jitter(jitter_pool, len(rows))
            jitter = jitter + torch.randn(jitter.shape, device=device) * EXTRA_JITTER_MM
            x, points = local_inputs(train.images[rows], train.spacing_mm[rows], train.landmarks[rows], jitter,
                                     geometry, device, augment_cfg, config.channels_last)
            loss = local_loss(model, codec, precision, x, points, k)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            if all_finite([p.grad for p in model.parameters() if p.grad is not None]):  # the update's one sync
                scaler.step(optimizer)
                scheduler.step()
                if ema is not None:
                    ema.update(model)
                progress.updates += 1
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            loss_sum += loss.detach() * len(rows)
        progress.epoch += 1
        train_seconds = time.perf_counter() - epoch_start
        metrics = {"epoch": progress.epoch, "stage": LOCAL, "train_loss": float(loss_sum) / len(train_set),
                   "images_per_s": len(train_set) / train_seconds, "train_seconds": train_seconds,
                   **validate_local(ema.module if ema else model, codec, geometry, val, rough_scaled, truth, spacing,
                                    precision, config.channels_last)}
        if tracker.update(metrics):
            _save(run_dir / "best.pt", state_now(metrics))
        _save(last_path, state_now(metrics))
        with open(run_dir / "local_metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps({k_: v for k_, v in metrics.items() if k_ != "val_errors_mm"}) + "\n")
        print(f"local epoch {progress.epoch:>3}: loss {metrics['train_loss']:.4g}, {metrics['images_per_s']:.1f} img/s "
              f"| refined MRE {metrics['val_mre_mm']:.3f} mm (global {global_mre:.3f}), SDR@2mm "
              f"{metrics['val_sdr_2mm']:.1f} %", flush=True)
        if budget_s is not None and not progress.planned_updates:  # the first epoch measured whole
            now = time.perf_counter()
            update_s = (now - loop_start) / max(1, progress.updates - updates_at_start)
            progress.planned_updates = planned_updates(budget_s, now - started, update_s, updates_per_epoch)
            _set_length(scheduler, optimizer, progress.planned_updates, warmup, config.min_lr_ratio)
            _save(last_path, state_now(metrics))
            print(f"local stage time budget {format_duration(budget_s)}: {format_duration(update_s * updates_per_epoch)}"
                  f" per epoch -> {math.ceil(progress.planned_updates / updates_per_epoch)} epochs")
    if tracker.best_epoch is None:
        best = run_dir / "best.pt"
        if not best.is_file():  # --refine_from into a new folder: the global model alone is its best
            save_checkpoint(best, source)
        print(f"warning: the local stage never beat the global model alone ({global_mre:.3f} mm on the validation "
              f"images): {best} holds the global model only; {LOCAL_LAST} has the local stage as trained",
              flush=True)
    else:
        print(f"best refined MRE {tracker.best:.4g} mm (global alone {global_mre:.4g}) at local epoch "
              f"{tracker.best_epoch}: {run_dir / 'best.pt'} (global and local stages)")
    return tracker


@torch.no_grad()
def validate_local(model, codec: HeatmapCodec, geometry: PatchGeometry, val: ScaledImages, rough_scaled: Tensor,
                   truth: np.ndarray, spacing: np.ndarray, precision: Precision, channels_last: bool,
                   batch: int = 8) -> dict:
    """The global predictions refined by ``model``: MRE / SD / SDR in mm of the validation images."""
    model.eval()
    refined = []
    for start in range(0, len(rough_scaled), batch):
        part = slice(start, start + batch)
        found, _ = refine_landmarks(model, codec, geometry, val.images[part], val.spacing_mm[part],
                                    rough_scaled[part], precision.autocast, channels_last)
        refined.append(found)
    errors = radial_errors_mm(val.to_original(torch.cat(refined)), truth, spacing)
    summary = summarize(errors)
    return {"val_mre_mm": summary["mre_mm"], "val_sd_mm": summary["sd_mm"],
            **{f"val_sdr_{t}": v for t, v in summary["sdr"].items()}}


def _set_length(scheduler, optimizer, total: int, warmup: int, min_lr_ratio: float) -> None:
    scheduler.lr_lambdas = [warmup_cosine(total, warmup, min_lr_ratio)] * len(optimizer.param_groups)


def _save(path: Path, state: dict) -> None:
    try:
        save_checkpoint(path, state)
    except OSError as e:
        print(f"warning: could not write {path} ({e.strerror or e}); the previous one is intact", flush=True)
