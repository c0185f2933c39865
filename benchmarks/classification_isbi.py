"""The ISBI 2015 challenge's second task on out-of-fold predictions: for each of its eight measures, the share of
images whose class from the predicted landmarks equals the class from the ground truth, with a 95 % Wilson
interval (150 images carry about ±7 points), the confusion matrix and the measurement's mean absolute error.

    PYTHONPATH=src python benchmarks/classification_isbi.py --dataset ../shared/data/isbi2015-train/landmarks.csv \\
        --predictions cv-isbi256/oof_predictions.csv --out benchmarks/classification_isbi.md

``--predictions`` are the out-of-fold predictions of ``benchmarks/cross_validation.py``: every image predicted by a
model that did not train on it.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from cephalo.datasets.sources import DatasetSpec, load_records
from cephalo.evaluation.analysis import compare_measurements
from cephalo.evaluation.evaluate import score_predictions
from cephalo.evaluation.predictions import read_predictions


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion, in %."""
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return 100 * (centre - half), 100 * (centre + half)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--predictions", type=Path, required=True)
    parser.add_argument("--out", type=Path, help="write the markdown tables here (else print them)")
    args = parser.parse_args()
    records = load_records(DatasetSpec(args.dataset), "all")
    names, predicted = read_predictions(args.predictions)
    evaluation = score_predictions(records, names, predicted)
    spacing = [records[i].spacing_mm for i in evaluation.record_indices]
    result = compare_measurements(evaluation.predicted, evaluation.target, records[0].landmark_names, spacing)
    overall = evaluation.report["overall"]
    lines = [f"- predictions: `{args.predictions}` against `{args.dataset}` ({evaluation.report['images']} images); "
             f"landmark MRE {overall['mre_mm']:.3f} ± {overall['sd_mm']:.3f} mm, SDR@2mm {overall['sdr']['2mm']:.1f} %",
             "", "| measure | success rate | 95 % interval | mean abs. error of the measure | confusion (rows: true, "
             "columns: predicted class) |", "|---|---:|---|---:|---|"]
    for name, c in result["classification"].items():
        n, hits = c["images"], sum(c["confusion"][i][i] for i in range(len(c["classes"])))
        low, high = wilson(hits, n)
        m = result["measurements"][name]
        unit = {"deg": "°", "mm": " mm", "ratio": ""}[m["unit"]]
        matrix = " / ".join("[" + " ".join(str(v) for v in row) + "]" for row in c["confusion"])
        lines.append(f"| {name} | {c['success_rate']:.1f} % | {low:.1f}-{high:.1f} % | {m['mad']:.2f}{unit} | "
                     f"{matrix} |")
    rates = [c["success_rate"] for c in result["classification"].values()]
    lines.append(f"| **mean** | **{sum(rates) / len(rates):.1f} %** | | | |")
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
