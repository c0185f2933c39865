"""Which per-landmark signal predicts a landmark's error, measured out of fold: for each fold of a cross-validation
run (``benchmarks/cross_validation.py``), the fold's best.pt predicts its held-out images and records, per
landmark, three candidate signals beside the actual radial error (mm):

- ``width``: the spread of the heatmap around its peak (the weighted RMS distance of the pixels above half the
  peak), in mm: free, one forward pass;
- ``views``: the RMS distance of the 7 test-time views' landmarks from their mean, in mm (7 forward passes);
- ``peak``: the heatmap's maximum (what ``confidence`` reports today), negated so that larger means less sure.

Then each candidate is calibrated leave-one-fold-out (a per-landmark intercept plus a slope on the log of the
signal, fitted on the other folds' log errors) and scored on the held-out fold: Pearson and Spearman correlation
of the calibrated error with the actual error, and how many of the worst 5 % of errors (of all out-of-fold points)
are flagged when the points whose calibrated error exceeds a threshold are flagged, the threshold chosen on the
other folds so that they flag 10 % (or 15 %) of their points.

    PYTHONPATH=src python benchmarks/uncertainty_cv.py --cv /work/cv/g256 --dataset_path \\
        ../shared/data/isbi2015-train/landmarks.csv --folds 5 --nested --out benchmarks/uncertainty_cv.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

FLAG_SHARES = (0.10, 0.15)  # the shares of points a threshold flags on the calibration folds


def heatmap_width(heatmaps: torch.Tensor) -> torch.Tensor:
    """``(B, K, h, w)`` -> ``(B, K)``: the RMS distance (heatmap pixels) from the peak of the pixels above half
    the peak, weighted by their value."""
    b, k, h, w = heatmaps.shape
    flat = heatmaps.float().reshape(b, k, -1)
    peak, index = flat.max(-1)
    weights = torch.where(flat >= 0.5 * peak[..., None], flat, torch.zeros_like(flat)).clamp_min(0)
    ys, xs = torch.arange(h).repeat_interleave(w), torch.arange(w).repeat(h)
    py, px = (index // w).float(), (index % w).float()
    d2 = (ys.float() - py[..., None]) ** 2 + (xs.float() - px[..., None]) ** 2
    return ((weights * d2).sum(-1) / weights.sum(-1).clamp_min(1e-12)).sqrt()


def align(shapes: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Similarity-align ``shapes (N, K, 2)`` to ``reference (K, 2)``; returns the aligned shapes and each shape's
    scale (aligned units per original pixel)."""
    centred = shapes - shapes.mean(1, keepdims=True)
    ref = reference - reference.mean(0)
    # complex-number Procrustes: z_aligned = a * z with a = <ref, z> / <z, z>
    z = centred[..., 0] + 1j * centred[..., 1]
    r = ref[:, 0] + 1j * ref[:, 1]
    a = (np.conj(z) * r[None]).sum(1) / (np.abs(z) ** 2).sum(1)
    aligned = a[:, None] * z
    return np.stack([aligned.real, aligned.imag], -1), np.abs(a)


class ShapeModel:
    """Where each landmark should be given all the others: ridge regression of each landmark's aligned
    coordinates on the others', fitted on ground-truth shapes."""

    def __init__(self, truth: np.ndarray, ridge: float = 1e-3):
        reference = truth[0] - truth[0].mean(0)
        for _ in range(3):
            aligned, _ = align(truth, reference)
            reference = aligned.mean(0)
        self.reference = reference
        aligned, _ = align(truth, reference)
        n, k, _ = aligned.shape
        self.weights = []
        flat = aligned.reshape(n, -1)
        for j in range(k):
            others = np.delete(flat, [2 * j, 2 * j + 1], axis=1)
            x = np.concatenate([others, np.ones((n, 1))], 1)
            penalty = ridge * np.trace(x.T @ x) / x.shape[1] * np.eye(x.shape[1])
            self.weights.append(np.linalg.solve(x.T @ x + penalty, x.T @ flat[:, 2 * j:2 * j + 2]))

    def residual_px(self, shapes: np.ndarray) -> np.ndarray:
        """``(N, K)``: how far each landmark lies from where the others place it, in the shapes' pixels."""
        aligned, scale = align(shapes, self.reference)
        n, k, _ = aligned.shape
        flat = aligned.reshape(n, -1)
        out = np.empty((n, k))
        for j in range(k):
            x = np.concatenate([np.delete(flat, [2 * j, 2 * j + 1], axis=1), np.ones((n, 1))], 1)
            out[:, j] = np.linalg.norm(x @ self.weights[j] - aligned[:, j], axis=1) / scale
        return out


def fold_signals(checkpoint: Path, dataset_path: str, fold: str, nested: bool) -> dict[str, np.ndarray]:
    """Per held-out image and landmark: the actual error and the three signals, each ``(N, K)`` mm."""
    from cephalo.inference.inputs import aligned_truth, resolve_inputs
    from cephalo.inference.predict import LetterboxedImages, collate_images
    from cephalo.inference.torch_predictor import TorchPredictor
    from cephalo.inference.tta import TestTimeAugmentation
    from cephalo.preprocessing.options import DataOptions

    predictor = TorchPredictor(checkpoint, device="cpu", mixed_precision=True)
    names = predictor.landmark_names
    data = DataOptions(dataset_path=dataset_path, **({"test_fold": fold} if nested else {"fold": fold}))
    items, issues, _ = resolve_inputs([dataset_path], split="test" if nested else "valid", data=data)
    assert not issues, issues
    views = TestTimeAugmentation.standard(predictor.spec.stride, 0.5, (0.95, 1.05)).views
    dataset = LetterboxedImages([item.path for item in items], predictor.image_size)
    out = {key: [] for key in ("error", "width", "views", "peak", "shape")}
    from cephalo.datasets.sources import load_records

    training = load_records(data.dataset_spec(), "train")  # ground truth of images this fold's model trained on
    shape_model = ShapeModel(np.stack([r.landmarks for r in training]).astype(np.float64))
    for start in range(0, len(items), 8):
        batch = collate_images([dataset[i] for i in range(start, min(start + 8, len(items)))])
        images, letterboxes = batch["images"], batch["letterboxes"]
        found, widths, peaks = [], None, None
        for v, view in enumerate(views):
            heatmaps = predictor.heatmaps(view.warp(images))
            landmarks, confidence = predictor.codec.decode(heatmaps)
            found.append(view.unwarp(landmarks, predictor.image_size))
            if v == 0:
                widths = heatmap_width(heatmaps) * predictor.spec.stride
                peaks, plain = confidence, landmarks
        found = torch.stack(found)  # (V, B, K, 2) letterbox pixels
        spread = (found - found.mean(0)).square().sum(-1).mean(0).sqrt()
        for j, index in enumerate(batch["indices"]):
            item, box = items[index], letterboxes[j]
            mm_per_letterbox_px = item.spacing_mm / float(np.mean(box.scale))
            predicted = box.inverse(plain[j].numpy().astype(np.float64))
            truth = aligned_truth(item, names)
            out["error"].append(np.linalg.norm(predicted - truth, axis=1) * item.spacing_mm)
            out["width"].append(widths[j].numpy() * mm_per_letterbox_px)
            out["views"].append(spread[j].numpy() * mm_per_letterbox_px)
            out["peak"].append(-peaks[j].numpy())
            out["shape"].append(shape_model.residual_px(predicted[None])[0] * item.spacing_mm)
    return {key: np.stack(value) for key, value in out.items()}


def features(signal: np.ndarray) -> np.ndarray:
    """``(N, K)`` or ``(N, K, F)`` -> ``(N, K, F)``: a positive signal by its log (the peak as it is)."""
    if signal.ndim == 3:
        return signal
    return (signal if np.any(signal <= 0) else np.log(signal + 1e-3))[..., None]


def calibrate(signal: np.ndarray, error: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least squares of log(error) on a per-landmark intercept and a slope per feature. ``signal`` ``(N, K)`` or
    ``(N, K, F)``, ``error`` ``(N, K)``; returns ``(intercepts (K,), slopes (F,))``."""
    n, k = error.shape
    x = features(signal)
    design = np.concatenate([np.kron(np.ones((n, 1)), np.eye(k)), x.reshape(n * k, -1)], axis=1)
    coef, *_ = np.linalg.lstsq(design, np.log(error.reshape(-1) + 1e-2), rcond=None)
    return coef[:k], coef[k:]


def expected_error(signal: np.ndarray, fit: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return np.exp(fit[0][None, :] + features(signal) @ fit[1])


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cv", type=Path, required=True, help="a cross_validation.py output folder")
    parser.add_argument("--dataset_path", required=True)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--nested", action="store_true", help="the CV run was --nested (folds held out as test)")
    parser.add_argument("--out", type=Path, required=True, help="JSON of the results")
    args = parser.parse_args()
    torch.set_num_threads(2)
    folds = [fold_signals(args.cv / f"fold-{k}" / "run" / "best.pt", args.dataset_path, f"{k}/{args.folds}",
                          args.nested) for k in range(1, args.folds + 1)]
    all_errors = np.concatenate([f["error"].reshape(-1) for f in folds])
    worst = np.quantile(all_errors, 0.95)
    results = {"worst_5pct_threshold_mm": float(worst), "points": int(all_errors.size), "signals": {}}
    for fold in folds:
        fold["combined"] = np.stack([np.log(fold["width"] + 1e-3), np.log(fold["views"] + 1e-3), fold["peak"],
                                     np.log(fold["shape"] + 1e-3)], -1)
    for signal in ("width", "views", "peak", "shape", "combined", "landmark only"):
        predicted, actual, flagged = [], [], {share: [] for share in FLAG_SHARES}
        for k, held in enumerate(folds):
            rest = [f for j, f in enumerate(folds) if j != k]
            error = np.concatenate([f["error"] for f in rest])
            if signal == "landmark only":  # the per-landmark prior alone: what any signal must beat
                source, test = np.zeros_like(error) + 1.0, np.ones_like(held["error"])
            else:
                source, test = np.concatenate([f[signal] for f in rest]), held[signal]
            fit = calibrate(source, error)
            guess = expected_error(test, fit)
            predicted.append(guess.reshape(-1))
            actual.append(held["error"].reshape(-1))
            for share in FLAG_SHARES:
                threshold = np.quantile(expected_error(source, fit), 1 - share)
                flagged[share].append(guess.reshape(-1) > threshold)
        predicted, actual = np.concatenate(predicted), np.concatenate(actual)
        bad = actual >= worst
        results["signals"][signal] = {
            "pearson": float(np.corrcoef(predicted, actual)[0, 1]), "spearman": spearman(predicted, actual),
            **{f"flag_{round(share * 100)}pct": {"flagged_share": float(np.concatenate(f).mean()),
                                                 "worst_5pct_caught": float(np.concatenate(f)[bad].mean())}
               for share, f in flagged.items()},
            "raw_spearman": None if signal in ("landmark only", "combined") else spearman(
                np.concatenate([f[signal].reshape(-1) for f in folds]), all_errors)}
        print(signal, json.dumps(results["signals"][signal]))
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
