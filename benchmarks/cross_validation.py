"""k-fold cross-validation with the real commands: for each fold, ``cephalo train --fold k/n`` in a fresh process,
then ``cephalo predict`` of that fold's validation images with the fold's best.pt; the folds' predictions together
are out-of-fold predictions of every training image (no image predicted by a model that saw it).

With ``--nested``, fold k is held out with ``--test_fold k/n`` instead: the best epoch (and, with ``--refine``, which
landmarks are refined) is chosen on a seeded ``--val_fraction`` of the other folds, so the held-out fold scores a
model that no choice was made on.

With ``--refine_from_cv DIR`` (a CV run of a two-stage or global arm), each fold trains only a local stage, on the
global model of ``DIR/fold-<k>/run/best.pt``: local-stage options compared on the same global models, fold by fold,
without the spread that time-budgeted global stages bring. Give the same ``--folds``, ``--seed`` and ``--nested``.

Writes into ``--out``: ``fold-<k>/`` (the run and its predictions), ``oof_predictions.csv`` (all folds, the CSV
layout ``cephalo evaluate`` and ``cephalo analyze`` read), ``cv.json`` and ``cv.md`` (per-fold and pooled MRE / SDR).

    PYTHONPATH=src python benchmarks/cross_validation.py --dataset_path ../shared/data/isbi2015-train/landmarks.csv \\
        --folds 5 --out cv-isbi256 -- --image_size 256 256 --epochs 40 --mixed_precision --channels_last --use_ema

Everything after ``--`` goes to ``cephalo train`` as it is.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from cephalo.datasets.csv_dataset import write_landmarks_csv
from cephalo.datasets.sources import DatasetSpec, load_records
from cephalo.evaluation.evaluate import score_predictions
from cephalo.evaluation.predictions import read_predictions


def cephalo(*args: str) -> None:
    print("$ cephalo " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "cephalo", *args], check=True)


def train_minutes(run: Path) -> float:
    """Minutes spent in training steps (validation excluded) of both stages, from the run's logs: right across a
    resumed fold."""
    epochs = {}
    for log in ("metrics.jsonl", "local_metrics.jsonl"):
        if not (run / log).is_file():
            continue
        for line in (run / log).read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if "train_seconds" in row:
                epochs[log, row["epoch"]] = row["train_seconds"]  # an epoch redone after a crash counts once
    return sum(epochs.values()) / 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset_path", required=True)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="seed of the fold split (and of training)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--nested", action="store_true",
                        help="hold each fold out with --test_fold (validation drawn from the other folds)")
    parser.add_argument("--refine_from_cv", type=Path,
                        help="a CV output folder: each fold adds a local stage to that fold's global model")
    parser.add_argument("train_args", nargs=argparse.REMAINDER, help="-- then the cephalo train flags")
    args = parser.parse_args()
    train_args = [a for a in args.train_args if a != "--"]
    args.out.mkdir(parents=True, exist_ok=True)
    folds, rows, names = [], {}, None
    for k in range(1, args.folds + 1):
        fold = f"{k}/{args.folds}"
        folder = args.out / f"fold-{k}"
        option, held_out = ("test_fold", "test") if args.nested else ("fold", "valid")
        data = ["--dataset_path", args.dataset_path, f"--{option}", fold, "--seed", str(args.seed)]
        source = [] if args.refine_from_cv is None else [
            "--refine_from", str(args.refine_from_cv / f"fold-{k}" / "run" / "best.pt")]
        if not (folder / "trained").is_file():  # --resume auto: an interrupted fold goes on where it stopped
            cephalo("train", *data, *source, *train_args, "--output_dir", str(folder), "--run_name", "run",
                    "--no_progress", "--resume", "auto")
            (folder / "trained").write_text("done\n")
        minutes = train_minutes(folder / "run")
        cephalo("predict", "--checkpoint", str(folder / "run" / "best.pt"), *data[1:], "--split", held_out,
                "--out", str(folder / "predictions"), "--no_progress", "--overwrite")
        names, predicted = read_predictions(folder / "predictions" / "predictions.csv")
        records = load_records(DatasetSpec(args.dataset_path, seed=args.seed, **{option: (k, args.folds)}), held_out)
        report = score_predictions(records, names, predicted).report
        folds.append({"fold": fold, "images": report["images"], "mre_mm": report["overall"]["mre_mm"],
                      "sdr": report["overall"]["sdr"], "train_minutes": minutes})
        rows.update({r.case_id: (predicted[r.case_id], r.spacing_mm) for r in records})
    keys = sorted(rows)
    write_landmarks_csv(args.out / "oof_predictions.csv", keys, [rows[k][0] for k in keys], [rows[k][1] for k in keys],
                        names)
    records = load_records(DatasetSpec(args.dataset_path, seed=args.seed), "all")
    pooled = score_predictions(records, names, {k: rows[k][0] for k in keys}).report
    mres = np.array([f["mre_mm"] for f in folds])
    summary = {"dataset": args.dataset_path, "folds": folds, "train_args": train_args, "seed": args.seed,
               "nested": args.nested, "refine_from_cv": None if args.refine_from_cv is None else str(args.refine_from_cv),
               "mre_mm_mean_over_folds": float(mres.mean()), "mre_mm_sd_over_folds": float(mres.std(ddof=1)),
               "pooled": pooled["overall"], "per_landmark_mre_mm": {n: s["mre_mm"] for n, s in
                                                                   pooled["per_landmark"].items()}}
    (args.out / "cv.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    lines = [f"# {args.folds}-fold cross-validation: {args.dataset_path}", "",
             f"- train flags: `{' '.join(train_args)}` (seed {args.seed})"
             + ("; nested: each fold held out with --test_fold, validation drawn from the others" if args.nested else ""),
             f"- MRE over folds: **{mres.mean():.3f} ± {mres.std(ddof=1):.3f} mm** (mean ± SD of the fold MREs); "
             f"pooled over all {pooled['images']} out-of-fold images: {pooled['overall']['mre_mm']:.3f} ± "
             f"{pooled['overall']['sd_mm']:.3f} mm, SDR@2mm {pooled['overall']['sdr']['2mm']:.1f} %", "",
             "| fold | images | MRE mm | SDR 2 / 2.5 / 3 / 4 mm | train min |", "|---|---:|---:|---|---:|"]
    lines += [f"| {f['fold']} | {f['images']} | {f['mre_mm']:.3f} | "
              + " / ".join(f"{v:.1f}" for v in f["sdr"].values()) + f" | {f['train_minutes']:.1f} |" for f in folds]
    (args.out / "cv.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
