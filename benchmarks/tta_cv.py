"""Test-time augmentation measured by cross-validation: each fold's model (from ``cross_validation.py --out CV``)
predicts its own fold's held-out images with each TTA setting, and the settings are compared as mean ± SD of the
fold MREs and pooled per landmark.

    PYTHONPATH=src python benchmarks/tta_cv.py --cv /work/cv-sweeps/global256 \\
        --dataset_path ../shared/data/isbi2015-train/landmarks.csv --out benchmarks/tta_cv_global256.json

Settings (``cephalo.inference.tta``): the global stage's views (shifts of half a heatmap pixel, scales 0.95 and 1.05,
combined by mean or median) and, for a two-stage model, the local stage's starts moved by 0.5 / 1 mm (4 moves + the rough position).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from cephalo.datasets.sources import DatasetSpec, load_records
from cephalo.evaluation.evaluate import score_predictions
from cephalo.inference.predict import ImageResult, iter_predictions
from cephalo.inference.torch_predictor import TorchPredictor
from cephalo.inference.tta import TestTimeAugmentation


def settings(stride: int, local: bool) -> dict[str, TestTimeAugmentation | None]:
    """A one-stage model: the global views; a two-stage one: the local starts (its refinement is what it outputs)."""
    s = TestTimeAugmentation.standard
    if local:
        return {"none": None, "local starts +-0.5 mm (5)": s(stride, 0.0, local_offset_mm=0.5),
                "local starts +-1 mm (5)": s(stride, 0.0, local_offset_mm=1.0)}
    return {"none": None,
            "shift 0.5 hm px (5 views)": s(stride, 0.5),
            "shift 0.5 + scale 0.95/1.05 (7 views)": s(stride, 0.5, (0.95, 1.05)),
            "shift 0.5 + scale 0.95/1.05, median": s(stride, 0.5, (0.95, 1.05), reduce="median")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cv", type=Path, required=True)
    parser.add_argument("--dataset_path", required=True)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.manual_seed(0)
    results: dict[str, dict] = {}
    for k in range(1, args.folds + 1):
        records = load_records(DatasetSpec(args.dataset_path, seed=args.seed, val_fraction=0.0,
                                           fold=(k, args.folds)), "valid")
        predictor = TorchPredictor(args.cv / f"fold-{k}" / "run" / "best.pt", device="cpu")
        for name, tta in settings(predictor.spec.stride, predictor.local_spec is not None).items():
            predictor.tta = tta
            start = time.perf_counter()
            found = list(iter_predictions(predictor, [r.image_path for r in records], num_workers=0, progress=False,
                                          spacings=[r.spacing_mm for r in records]))
            seconds = (time.perf_counter() - start) / len(records)
            predicted = {records[o.index].case_id: o.landmarks for o in found if isinstance(o, ImageResult)}
            report = score_predictions(records, predictor.landmark_names, predicted).report
            row = results.setdefault(name, {"fold_mre_mm": [], "seconds_per_image": [], "errors": {}})
            row["fold_mre_mm"].append(report["overall"]["mre_mm"])
            row["seconds_per_image"].append(seconds)
            for landmark, s in report["per_landmark"].items():
                row["errors"].setdefault(landmark, []).append(s["mre_mm"])
            print(f"fold {k} {name}: {report['overall']['mre_mm']:.3f} mm, {seconds:.2f} s/img", flush=True)
    for row in results.values():
        mres = np.array(row["fold_mre_mm"])
        row["mre_mm_mean"], row["mre_mm_sd"] = float(mres.mean()), float(mres.std(ddof=1))
        row["per_landmark_mre_mm"] = {n: float(np.mean(v)) for n, v in row.pop("errors").items()}
    args.out.write_text(json.dumps({"cv": str(args.cv), "results": results}, indent=2) + "\n", encoding="utf-8")
    base = np.array(results["none"]["fold_mre_mm"])
    print("| setting | MRE mm (mean ± SD over folds) | change vs none, per fold | s / image |")
    print("|---|---:|---|---:|")
    for name, row in results.items():
        change = np.array(row["fold_mre_mm"]) - base
        print(f"| {name} | {row['mre_mm_mean']:.3f} ± {row['mre_mm_sd']:.3f} | "
              + " ".join(f"{c:+.3f}" for c in change) + f" | {np.mean(row['seconds_per_image']):.2f} |")


if __name__ == "__main__":
    main()
