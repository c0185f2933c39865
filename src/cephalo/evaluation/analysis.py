"""Predicted landmarks against ground truth, measured the way a clinician reads them: the error of each
cephalometric measurement (mean absolute difference in degrees, mm or ratio) and, for the ISBI 2015 measures,
the classification success rate (the share of images whose class from the predicted landmarks equals the class
from the ground truth: the challenge's own metric) with a confusion matrix per measure."""

from __future__ import annotations

import numpy as np

from cephalo.analysis.analyze import analyze
from cephalo.analysis.classes import ISBI_CLASSES


def compare_measurements(predicted: np.ndarray, truth: np.ndarray, names, spacing_mm,
                         mapping: dict[str, str] | None = None) -> dict:
    """``predicted`` and ``truth`` ``(N, K, 2)`` original pixels of the same images, landmarks named ``names``.

    Returns ``{"measurements": {name: {unit, images, mad, truth_mean, truth_sd, predicted_mean}}, "classification":
    {name: {success_rate, images, classes, confusion}}, "unavailable": {name: why}}``; ``confusion[i][j]`` counts
    images of true class ``classes[i]`` classified as ``classes[j]``.
    """
    got, want = analyze(predicted, names, spacing_mm, mapping), analyze(truth, names, spacing_mm, mapping)
    measurements, classification = {}, {}
    for m in want.available():
        p, t = got.values[m.name], want.values[m.name]
        both = np.isfinite(p) & np.isfinite(t)
        if not both.any():
            continue
        diff = np.abs(p[both] - t[both])
        measurements[m.name] = {"unit": m.unit, "images": int(both.sum()), "mad": float(diff.mean()),
                                "mad_sd": float(diff.std()), "truth_mean": float(t[both].mean()),
                                "truth_sd": float(t[both].std()), "predicted_mean": float(p[both].mean())}
    for name, rule in ISBI_CLASSES.items():
        if name not in want.classes:
            continue
        p, t = got.classes[name], want.classes[name]
        both = (p > 0) & (t > 0)
        if not both.any():
            continue
        classes = sorted(rule.names)
        confusion = [[int(((t == a) & (p == b) & both).sum()) for b in classes] for a in classes]
        classification[name] = {"success_rate": float((p[both] == t[both]).mean() * 100.0), "images": int(both.sum()),
                                "classes": classes, "class_names": [rule.names[c] for c in classes],
                                "confusion": confusion}
    return {"measurements": measurements, "classification": classification, "unavailable": dict(want.unavailable)}


def format_comparison(result: dict) -> str:
    """Plain-text tables of :func:`compare_measurements`."""
    lines = [f"{'measurement':<13} {'unit':>5} {'images':>6} {'MAD':>8} {'truth mean ± SD':>18}"]
    for name, m in result["measurements"].items():
        lines.append(f"{name:<13} {m['unit']:>5} {m['images']:>6} {m['mad']:>8.3f} "
                     f"{m['truth_mean']:>10.2f} ± {m['truth_sd']:<6.2f}")
    if result["classification"]:
        lines += ["", f"{'ISBI class':<13} {'images':>6} {'success %':>10}   confusion (rows: true class, "
                  "columns: predicted)"]
        for name, c in result["classification"].items():
            matrix = "  ".join("/".join(str(v) for v in row) for row in c["confusion"])
            lines.append(f"{name:<13} {c['images']:>6} {c['success_rate']:>10.1f}   {matrix}")
    for name, why in result["unavailable"].items():
        lines.append(f"{name}: unavailable ({why})")
    return "\n".join(lines)
