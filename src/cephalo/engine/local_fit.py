"""The local (refinement) stage of a run: ``cephalo train --refine`` after the global model, ``--refine_from
CHECKPOINT`` on an existing one.

Order: the global stage's checkpoint -> the same training / validation split at the global input size -> every
image at the patch scale (``--patch_mm``), decoded and resampled once into the cache (``--cache_dir``) -> the
global model predicts the validation images: their errors are the jitter (what the global stage really gets wrong,
on images it did not train on) and their positions are where validation refines from -> the local model trains for
``--local_epochs`` (all ``K`` patches of ``--local_batch`` images per update, cut, augmented and rendered on the
device) -> each epoch, validation refines the global predictions and scores them in mm, each landmark refined only
where that beats its global position (gonion got worse at small budgets: benchmarks/budget_cv.md); the best writes
``best.pt`` with both stages and the landmarks it refines, every epoch writes ``local_last.pt``, which ``--resume``
continues from (at an epoch's end).
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
from cephalo.engine.budget import first_epoch_costs, plan_text, planned_updates
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
from cephalo.engine.schedule import set_length, warmup_cosine
from cephalo.engine.setup import param_groups, seed_everything
from cephalo.metrics import radial_errors_mm, summarize
from cephalo.models import create_model
from cephalo.preprocessing.cache import PatchScaleCache
from cephalo.preprocessing.cached_dataset import CachedLandmarkDataset
from cephalo.preprocessing.normalize import to_model_input
from cephalo.preprocessing.patch_scale import ScaledImages

LOCAL_LAST = "local_last.pt"
LOCAL_STRIDE = 2  # heatmaps at half the patch resolution: 0.4 mm per heatmap pixel at 0.2 mm patches
AUGMENTATION = "light"  # the patch is already moved by the jitter; benchmarks/refine_cv.md
EXTRA_JITTER_MM = 0.3  # on top of the measured errors, so that no two draws are the same point
ONLY_IF_BETTER = True  # refine only the landmarks where that beats the global model on the validation images, and
# best.pt takes the two stages only once they beat the global model alone (tests of the mechanics, whose tiny local
# models need not win, turn it off)


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
    """What changes while the local stage trains; saved in ``local_last.pt``."""

    epoch: int = 0
    updates: int = 0
    planned_updates: int = 0  # --time_budget: fixed after the first epoch


@dataclass(frozen=True)
class LocalRun:
    """The live objects of a local stage, built once by :func:`build_local` in the module docstring's order."""

    config: TrainConfig
    device: torch.device
    precision: Precision
    source: dict  # the checkpoint of the global model
    spec: StageSpec  # the local stage's description
    frozen: dict  # {"global": (spec, weights)}: what best.pt carries beside the local model
    geometry: PatchGeometry
    codec: HeatmapCodec
    train: ScaledImages
    val: ScaledImages
    rough_scaled: Tensor  # (N_val, K, 2) the global predictions of the validation images, resampled pixels
    truth: np.ndarray  # (N_val, K, 2) original pixels
    spacing: np.ndarray  # (N_val,) mm per original pixel
    jitter_pool: Tensor  # (N_val, K, 2) the global model's errors in mm
    global_errors: np.ndarray  # (N_val, K) the global model's radial errors in mm
    model: torch.nn.Module
    ema: ModelEma | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    updates_per_epoch: int
    warmup: int
    note: str  # what was built, printed at the start

    @property
    def global_mre(self) -> float:
        """The global model's validation MRE in mm: what the local stage must beat."""
        return float(self.global_errors.mean())


def build_local(config: TrainConfig, global_checkpoint: Path | str) -> LocalRun:
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
    cache = PatchScaleCache(config.cache_root(), config.patch_mm)
    train, per_image_s = ScaledImages.read(train_set.records, cache, config.progress)
    val, _ = ScaledImages.read(val_set.records, cache, config.progress)
    rough = global_predictions(global_stage, val_set, device, precision)  # (N_val, K, 2) original pixels
    truth = np.stack([r.landmarks for r in val_set.records])
    spacing = np.array([r.spacing_mm for r in val_set.records])
    global_errors = radial_errors_mm(rough, truth, spacing)

    geometry = PatchGeometry(config.patch_size, config.patch_mm, config.patch_context)
    model = create_model(config.local_model, len(names), in_chans=len(geometry.channel_scales),
                         head_stride=LOCAL_STRIDE).to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=config.lr, foreach=True)
    updates_per_epoch = math.ceil(len(train_set) / config.local_batch)
    warmup = round(config.warmup_epochs * updates_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(updates_per_epoch * config.local_epochs, warmup, config.min_lr_ratio))
    spec = StageSpec(model_name=config.local_model, landmark_names=names, image_size=(config.patch_size,) * 2,
                     stride=LOCAL_STRIDE, sigma=config.sigma, mm_per_px=config.patch_mm,
                     default_spacing_mm=statistics.median(r.spacing_mm for r in train_set.records),
                     context=config.patch_context)
    cached = (f"decoded into {cache.folder} ({per_image_s * 1000:.0f} ms each)" if per_image_s is not None
              else f"read from {cache.folder}")
    note = (f"local stage: {config.local_model}, {len(names)} patches of {config.patch_size} px at "
            f"{config.patch_mm:g} mm/px ({config.patch_size * config.patch_mm:g} mm){_context_text(geometry)} per image, "
            f"{config.local_batch} images per update, {updates_per_epoch} updates per epoch; images at the patch scale "
            f"{cached}\n"
            f"local stage data: {data_note}; the global model's validation MRE {global_errors.mean():.3f} mm, whose errors "
            f"are the jitter")
    return LocalRun(config, device, precision, source, spec, {GLOBAL: (global_stage.spec, global_stage.weights)},
                    geometry,
                    HeatmapCodec((config.patch_size,) * 2, stride=LOCAL_STRIDE, sigma=config.sigma), train, val,
                    val.to_scaled(rough), truth, spacing,
                    torch.tensor((rough - truth) * spacing[:, None, None], dtype=torch.float32, device=device),
                    global_errors, model, ModelEma(model, config.ema_decay) if config.use_ema else None, optimizer,
                    scheduler, precision.grad_scaler(), updates_per_epoch, warmup, note)


def _context_text(geometry: PatchGeometry) -> str:
    if not geometry.context:
        return ""
    mm = geometry.mm_per_px * geometry.context
    return f" with context at {mm:g} mm/px ({geometry.size * mm:g} mm)"


def local_epoch(r: LocalRun, progress: LocalProgress) -> dict:
    """One epoch over the training images in a seeded order, or its first part when a budget's plan ends in it;
    returns its loss and speed."""
    c, start = r.config, time.perf_counter()
    r.model.train()
    order = torch.randperm(len(r.train), generator=torch.Generator().manual_seed(c.seed * 100003
                                                                                        + progress.epoch))
    augment_cfg = AugmentConfig.for_level(AUGMENTATION)
    loss_sum, seen = torch.zeros((), device=r.device), 0
    bar = progress_bar(order.split(c.local_batch), desc=f"local epoch {progress.epoch + 1}", unit="batch",
                       enabled=c.progress)
    for rows in bar:
        jitter = draw_jitter(r.jitter_pool, len(rows))
        jitter = jitter + torch.randn(jitter.shape, device=r.device) * EXTRA_JITTER_MM
        x, points = local_inputs(r.train.images(rows), r.train.spacing_mm[rows], r.train.landmarks[rows], jitter,
                                 r.geometry, r.device, augment_cfg, c.channels_last)
        loss = local_loss(r.model, r.codec, r.precision, x, points, len(r.spec.landmark_names))
        r.scaler.scale(loss).backward()
        r.scaler.unscale_(r.optimizer)
        if all_finite([p.grad for p in r.model.parameters() if p.grad is not None]):  # the update's one sync
            r.scaler.step(r.optimizer)
            r.scheduler.step()
            if r.ema is not None:
                r.ema.update(r.model)
            progress.updates += 1
        r.scaler.update()
        r.optimizer.zero_grad(set_to_none=True)
        loss_sum, seen = loss_sum + loss.detach() * len(rows), seen + len(rows)
        if progress.planned_updates and progress.updates >= progress.planned_updates:  # a partial last epoch
            break
    bar.close()
    progress.epoch += 1
    seconds = time.perf_counter() - start
    return {"epoch": progress.epoch, "stage": LOCAL, "train_loss": float(loss_sum) / max(seen, 1),
            "images_per_s": seen / seconds, "train_seconds": seconds}


def fit_local(config: TrainConfig, global_checkpoint: Path | str, run_dir: Path, budget_s: float | None = None,
              resume: bool = False) -> Tracker:
    """Train the local stage on top of ``global_checkpoint``'s global model, in ``run_dir``; returns the tracker of
    its validation MRE (refined global predictions). ``budget_s``: wall-clock seconds for this stage."""
    started = time.perf_counter()
    run_dir.mkdir(parents=True, exist_ok=True)
    r = build_local(config, global_checkpoint)
    progress, tracker = LocalProgress(), Tracker("val_mre_mm", best=r.global_mre if ONLY_IF_BETTER else math.inf)
    last_path = run_dir / LOCAL_LAST
    if resume and last_path.is_file():
        progress, tracker = _restore(r, load_checkpoint(last_path))
        print(f"local stage resumed from {last_path} at epoch {progress.epoch + 1}")
    if progress.planned_updates:
        _set_length(r, progress.planned_updates)
    print(r.note + (f"\nlocal stage time budget: {format_duration(budget_s)}" if budget_s else ""))

    def state_now(metrics: dict) -> dict:
        spec = dataclasses.replace(r.spec, refined_landmarks=metrics.get("refined_landmarks"))
        return build_state(stage=spec, model=r.model.state_dict(), ema=r.ema.state_dict() if r.ema else None,
                           optimizer=r.optimizer.state_dict(), scheduler=r.scheduler.state_dict(),
                           scaler=r.scaler.state_dict(), progress=dataclasses.asdict(progress),
                           tracker=tracker.state_dict(), metrics=metrics, config=r.config.to_dict(),
                           training_stage=LOCAL, frozen=r.frozen)

    def epochs() -> float:
        if progress.planned_updates:  # a budget's plan, also in a resumed run
            return math.ceil(progress.planned_updates / r.updates_per_epoch)
        return r.config.local_epochs if budget_s is None else math.inf

    loop_start, updates_at_start = time.perf_counter(), progress.updates
    while progress.epoch < epochs():
        metrics = local_epoch(r, progress)
        metrics.update(validate_local(r))
        if tracker.update(metrics):
            _save(run_dir / "best.pt", state_now(metrics))
        _save(last_path, state_now(metrics))
        with open(run_dir / "local_metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(metrics) + "\n")
        print(f"local epoch {progress.epoch:>3}: loss {metrics['train_loss']:.4g}, {metrics['images_per_s']:.1f} img/s "
              f"| refined MRE {metrics['val_mre_mm']:.3f} mm (global {r.global_mre:.3f}), SDR@2mm "
              f"{metrics['val_sdr_2mm']:.1f} %{_kept_global(r, metrics)}", flush=True)
        if budget_s is not None and not progress.planned_updates:  # the first epoch measured whole
            now = time.perf_counter()
            update_s, fixed_s = first_epoch_costs(metrics["train_seconds"], progress.updates - updates_at_start,
                                                  now - loop_start)
            progress.planned_updates = planned_updates(budget_s, now - started, update_s, fixed_s,
                                                       r.updates_per_epoch)
            _set_length(r, progress.planned_updates)
            _save(last_path, state_now(metrics))
            print(f"local stage {plan_text(budget_s, update_s, fixed_s, progress.planned_updates, r.updates_per_epoch)}",
                  flush=True)
    _report_best(r, tracker, run_dir)
    return tracker


def _restore(r: LocalRun, state: dict) -> tuple[LocalProgress, Tracker]:
    r.model.load_state_dict(state["model"])
    if r.ema is not None and state.get("ema"):
        r.ema.load_state_dict(state["ema"])
    r.optimizer.load_state_dict(state["optimizer"])
    r.scheduler.load_state_dict(state["scheduler"])
    r.scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    return LocalProgress(**state["progress"]), Tracker.from_state_dict(state["tracker"])


def _report_best(r: LocalRun, tracker: Tracker, run_dir: Path) -> None:
    best = run_dir / "best.pt"
    if tracker.best_epoch is not None:
        print(f"best refined MRE {tracker.best:.4g} mm (global alone {r.global_mre:.4g}) at local epoch "
              f"{tracker.best_epoch}: {best} (global and local stages)")
        return
    if not best.is_file():  # --refine_from into a new folder: the global model alone is its best
        save_checkpoint(best, r.source)
    print(f"warning: the local stage never beat the global model alone ({r.global_mre:.3f} mm on the validation "
          f"images): {best} holds the global model only; {LOCAL_LAST} has the local stage as trained", flush=True)


def choose_landmarks(refined_mm: np.ndarray, global_mm: np.ndarray) -> np.ndarray:
    """``(K,)`` bool: the landmarks whose refined validation MRE beats the global model's (errors ``(N, K)`` mm).
    Without the guard (:data:`ONLY_IF_BETTER` off) every landmark is refined."""
    if not ONLY_IF_BETTER:
        return np.ones(refined_mm.shape[1], dtype=bool)
    return refined_mm.mean(0) < global_mm.mean(0)


@torch.no_grad()
def validate_local(r: LocalRun, batch: int = 8) -> dict:
    """The global predictions of the validation images refined by the local model (its EMA when kept), landmark by
    landmark where that beats the global model (:func:`choose_landmarks`): MRE / SD / SDR in mm, and which."""
    model = (r.ema.module if r.ema is not None else r.model).eval()
    refined = []
    for start in range(0, len(r.rough_scaled), batch):
        part = slice(start, start + batch)
        found, _ = refine_landmarks(model, r.codec, r.geometry, r.val.images(part), r.val.spacing_mm[part],
                                    r.rough_scaled[part], r.precision.autocast, r.config.channels_last)
        refined.append(found)
    errors = radial_errors_mm(r.val.to_original(torch.cat(refined)), r.truth, r.spacing)  # (N_val, K)
    keep = choose_landmarks(errors, r.global_errors)
    summary = summarize(np.where(keep, errors, r.global_errors))
    return {"val_mre_mm": summary["mre_mm"], "val_sd_mm": summary["sd_mm"],
            **{f"val_sdr_{t}": v for t, v in summary["sdr"].items()},
            "refined_landmarks": [n for n, k in zip(r.spec.landmark_names, keep) if k]}


def _kept_global(r: LocalRun, metrics: dict) -> str:
    kept = [n for n in r.spec.landmark_names if n not in metrics.get("refined_landmarks", r.spec.landmark_names)]
    return f"; global position kept for {', '.join(kept)}" if kept else ""


def _set_length(r: LocalRun, total: int) -> None:
    set_length(r.scheduler, total, r.warmup, r.config.min_lr_ratio)


def _save(path: Path, state: dict) -> None:
    try:
        save_checkpoint(path, state)
    except OSError as e:
        print(f"warning: could not write {path} ({e.strerror or e}); the previous one is intact", flush=True)
