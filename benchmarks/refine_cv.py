"""Does a local refinement stage help? Measured on the folds of a finished ``cross_validation.py`` run.

For each fold k: a local model is trained for ``--minutes`` on patches of the fold's training images (at
``--mm_per_px``, ``--patch`` pixels a side), centred on the truth moved by real global errors -- the out-of-fold
errors of those training images, made by the models of the other folds, so nothing of fold k's validation images
enters -- and then corrects the fold's own global predictions (``fold-k/predictions``) of its validation images.
Reported: MRE before / after per fold (mean +- SD over folds), per landmark, and the local stage's speed.

    PYTHONPATH=src python benchmarks/refine_cv.py --cv /tmp/cv-isbi256 \\
        --dataset_path ../shared/data/isbi2015-train/landmarks.csv --minutes 6 --out /tmp/refine-cv

This is the measurement that decides the local stage's defaults; it trains with the library's pieces
(:mod:`cephalo.engine.local_stage`, :mod:`cephalo.inference.refine`) in a plain loop.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from cephalo.artifact.refine import refine_landmarks
from cephalo.codec import HeatmapCodec
from cephalo.codec.patches import PatchGeometry
from cephalo.datasets.sources import DatasetSpec, default_cache_dir, load_records
from cephalo.engine.augment import AugmentConfig
from cephalo.engine.local_patches import draw_jitter, local_inputs, local_loss
from cephalo.engine.schedule import build_scheduler
from cephalo.engine.setup import param_groups
from cephalo.evaluation.predictions import read_predictions
from cephalo.models import create_model
from cephalo.precision import resolve_precision
from cephalo.preprocessing.cache import PatchScaleCache
from cephalo.preprocessing.patch_scale import ScaledImages


class Scaled:
    """Every image of the dataset at the patch scale (:class:`~cephalo.preprocessing.patch_scale.ScaledImages`), addressed
    by rows of the whole dataset."""

    def __init__(self, records, mm_per_px: float):
        self.index = {r.case_id: i for i, r in enumerate(records)}
        self.all, self.seconds_per_image = ScaledImages.read(records, PatchScaleCache(default_cache_dir(), mm_per_px),
                                                             progress=False)
        self.images, self.spacing, self.truth = self.all.images, self.all.spacing_mm, self.all.landmarks

    def rows(self, records) -> list[int]:
        return [self.index[r.case_id] for r in records]

    def to_scaled(self, rows: list[int], points: np.ndarray) -> torch.Tensor:
        return torch.tensor(np.stack([self.all.rescales[i].forward(p) for i, p in zip(rows, points)]),
                            dtype=torch.float32)

    def to_original(self, rows: list[int], points: torch.Tensor) -> np.ndarray:
        return np.stack([self.all.rescales[i].inverse(p) for i, p in zip(rows, points.double().numpy())])


def errors_mm(records, predicted: dict) -> np.ndarray:
    """``(N, K, 2)`` prediction - truth in mm."""
    return np.stack([(predicted[r.case_id] - r.landmarks) * r.spacing_mm for r in records])


def train_local(args, train_rows, scaled: Scaled, truth: torch.Tensor, jitter_pool: torch.Tensor,
                num_landmarks: int, seed: int):
    """A local model trained for ``args.minutes``: the first updates time the step, which fixes the schedule."""
    torch.manual_seed(seed)
    device = torch.device("cpu")
    precision = resolve_precision(device, True, "auto")
    model = create_model(args.model, num_landmarks, in_chans=1, head_stride=args.stride)
    model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(param_groups(model, 1e-4), lr=args.lr, foreach=True)
    geometry = PatchGeometry(args.patch, args.mm_per_px)
    codec = HeatmapCodec((args.patch, args.patch), stride=args.stride, sigma=args.sigma)
    augment_cfg = AugmentConfig.for_level(args.augmentation) if args.augmentation != "none" else None
    generator = torch.Generator().manual_seed(seed)
    rows = torch.tensor(train_rows)

    def step(scheduler) -> float:
        pick = rows[torch.randint(len(rows), (args.batch_images,), generator=generator)]
        jitter = draw_jitter(jitter_pool, args.batch_images, generator)
        if args.extra_jitter_mm:
            jitter = jitter + torch.randn(jitter.shape, generator=generator) * args.extra_jitter_mm
        x, points = local_inputs(scaled.images(pick), scaled.spacing[pick], truth[pick], jitter, geometry, device,
                                 augment_cfg, channels_last=True, generator=generator)
        loss = local_loss(model, codec, precision, x, points, num_landmarks)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if scheduler is not None:
            scheduler.step()
        return float(loss.detach())

    model.train()
    warmup = 20
    scheduler = build_scheduler(optimizer, 10**9, warmup, 0.01)  # warm-up only, until the step is timed
    start = time.perf_counter()
    for _ in range(warmup):
        step(scheduler)
    step_s = (time.perf_counter() - start) / warmup
    total = args.updates or max(warmup + 1, int(args.minutes * 60 / step_s))
    scheduler = build_scheduler(optimizer, total, warmup, 0.01)
    for _ in range(warmup):
        scheduler.step()
    losses = []
    for _ in range(total - warmup):
        losses.append(step(scheduler))
    seconds = time.perf_counter() - start
    model.eval()
    return model, codec, geometry, {"updates": total, "train_seconds": seconds,
                                    "patches_per_s": total * args.batch_images * num_landmarks / seconds,
                                    "images_per_s": total * args.batch_images / seconds,
                                    "final_loss": float(np.mean(losses[-20:])) if losses else math.nan}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cv", type=Path, required=True, help="the --out folder of cross_validation.py")
    parser.add_argument("--dataset_path", required=True)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--only_folds", type=int, nargs="*", help="run these folds only (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--mm_per_px", type=float, default=0.2)
    parser.add_argument("--stride", type=int, default=2)
    parser.add_argument("--sigma", type=float, default=2.0)
    parser.add_argument("--model", default="hrnet_w18_small")
    parser.add_argument("--batch_images", type=int, default=4, help="images per update (x K patches)")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--augmentation", default="light")
    parser.add_argument("--extra_jitter_mm", type=float, default=0.3)
    parser.add_argument("--minutes", type=float, default=6.0, help="training time of each fold's local model")
    parser.add_argument("--updates", type=int, help="a fixed number of local updates instead of --minutes (the same "
                        "on a loaded machine)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, torch.get_num_threads()))

    everything = load_records(DatasetSpec(args.dataset_path, seed=args.seed), "all")
    names = everything[0].landmark_names
    scaled = Scaled(everything, args.mm_per_px)
    _, oof = read_predictions(args.cv / "oof_predictions.csv")
    folds = []
    per_landmark = {"global": [], "refined": [], "refined_twice": []}
    for k in args.only_folds or range(1, args.folds + 1):
        spec = DatasetSpec(args.dataset_path, seed=args.seed, val_fraction=0.0, fold=(k, args.folds))
        train, valid = load_records(spec, "train"), load_records(spec, "valid")
        train_rows, valid_rows = scaled.rows(train), scaled.rows(valid)
        jitter_pool = torch.tensor(errors_mm(train, oof), dtype=torch.float32)  # other folds' models' errors
        model, codec, geometry, speed = train_local(args, train_rows, scaled, scaled.truth, jitter_pool, len(names),
                                                    args.seed + k)
        _, fold_predicted = read_predictions(args.cv / f"fold-{k}" / "predictions" / "predictions.csv")
        rough = scaled.to_scaled(valid_rows, np.stack([fold_predicted[r.case_id] for r in valid]))
        pick = torch.tensor(valid_rows)
        start = time.perf_counter()
        refined, _ = refine_landmarks(model, codec, geometry, scaled.images(pick), scaled.spacing[pick], rough,
                                      channels_last=True)
        refine_s = time.perf_counter() - start
        twice, _ = refine_landmarks(model, codec, geometry, scaled.images(pick), scaled.spacing[pick], refined,
                                    channels_last=True)
        result = {"fold": k, "images": len(valid), **speed, "refine_images_per_s": len(valid) / refine_s}
        for arm, points in (("global", None), ("refined", refined), ("refined_twice", twice)):
            predicted = (np.stack([fold_predicted[r.case_id] for r in valid]) if points is None
                         else scaled.to_original(valid_rows, points))
            radial = np.linalg.norm((predicted - np.stack([r.landmarks for r in valid]))
                                    * np.array([r.spacing_mm for r in valid])[:, None, None], axis=-1)  # (N, K)
            per_landmark[arm].append(radial)
            result[f"{arm}_mre_mm"] = float(radial.mean())
            result[f"{arm}_sdr_2mm"] = float((radial <= 2.0).mean() * 100)
        folds.append(result)
        print(json.dumps(result), flush=True)

    def mean_sd(key):
        values = np.array([f[key] for f in folds])
        return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0

    pooled = {arm: np.concatenate(v) for arm, v in per_landmark.items()}
    summary = {"args": {k: str(v) for k, v in vars(args).items()}, "folds": folds,
               "decode_and_rescale_s_per_image": scaled.seconds_per_image,
               **{f"{arm}_mre_mm_over_folds": mean_sd(f"{arm}_mre_mm") for arm in per_landmark},
               "per_landmark_mre_mm": {arm: dict(zip(names, v.mean(0).round(3).tolist())) for arm, v in pooled.items()}}
    (args.out / "refine_cv.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    lines = [f"# Local refinement on {len(folds)} folds of {args.cv}", "",
             f"- local stage: `{args.model}`, patch {args.patch} px at {args.mm_per_px} mm/px "
             f"({args.patch * args.mm_per_px:.1f} mm), heatmap stride {args.stride}, sigma {args.sigma}, "
             f"{args.batch_images} images x {len(names)} patches per update, augmentation {args.augmentation}, "
             f"jitter: out-of-fold global errors + N(0, {args.extra_jitter_mm} mm), "
             + (f"{args.updates} updates" if args.updates else f"{args.minutes:g} min") + " per fold",
             *[f"- {arm}: MRE **{m:.3f} +- {s:.3f} mm** over folds" for arm in per_landmark
               for m, s in [mean_sd(f"{arm}_mre_mm")]], "",
             "| fold | global MRE | refined | refined twice | SDR@2mm global / refined | local updates | "
             "train patches/s | refine images/s |", "|---|---:|---:|---:|---|---:|---:|---:|"]
    lines += [f"| {f['fold']} | {f['global_mre_mm']:.3f} | {f['refined_mre_mm']:.3f} | {f['refined_twice_mre_mm']:.3f} "
              f"| {f['global_sdr_2mm']:.1f} / {f['refined_sdr_2mm']:.1f} | {f['updates']} | {f['patches_per_s']:.0f} | "
              f"{f['refine_images_per_s']:.1f} |" for f in folds]
    lines += ["", "| landmark | global | refined | refined twice |", "|---|---:|---:|---:|"]
    lines += [f"| {n} | {pooled['global'][:, j].mean():.3f} | {pooled['refined'][:, j].mean():.3f} | "
              f"{pooled['refined_twice'][:, j].mean():.3f} |" for j, n in enumerate(names)]
    (args.out / "refine_cv.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
