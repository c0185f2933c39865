"""``cephalo evaluate``: predictions against a dataset's ground truth, per landmark and overall."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cephalo.datasets.record import LandmarkRecord
from cephalo.evaluation.predictions import match_predictions
from cephalo.metrics import SDR_THRESHOLDS_MM, landmark_report, radial_errors_mm

SPACING_TOLERANCE = 0.01  # of the dataset's spacing: a prediction made with a spacing further off is named


class EvaluationError(ValueError):
    """Predictions that cannot be scored against the dataset; the message says what to fix."""


@dataclass(frozen=True, eq=False)
class Evaluation:
    """A scored predictions file: the report plus the per-instance numbers behind it (for plots and galleries).

    Attributes:
        report: :func:`~cephalo.metrics.landmark_report` plus ``images``, ``missing``, ``unmatched_predictions``
            and ``per_image_mre_mm``.
        record_indices: ``(N,)`` index into the evaluated records of each scored image, in record order.
        errors_mm: ``(N, K)`` radial errors in mm, landmarks in the dataset's order.
        predicted, target: ``(N, K, 2)`` original pixel coordinates, landmarks in the dataset's order.
    """

    report: dict
    record_indices: np.ndarray
    errors_mm: np.ndarray
    predicted: np.ndarray
    target: np.ndarray


def score_predictions(
    records: list[LandmarkRecord],
    landmark_names: tuple[str, ...],
    predictions: dict[str, np.ndarray],
    allow_missing: bool = False,
    thresholds_mm: tuple[float, ...] = SDR_THRESHOLDS_MM,
    spacing_mm: dict[str, float | None] | None = None,
) -> Evaluation:
    """Score ``predictions`` (``{image: (K, 2)}`` original pixels, landmarks named ``landmark_names``).

    Every record needs a prediction unless ``allow_missing`` (scoring a subset silently would flatter a model).
    Landmarks are matched by name; the predictions may hold extra landmarks. Errors are in the dataset's spacing;
    ``spacing_mm`` (``{image: mm per pixel}`` of the predictions file) names the images where the predictions were
    made with another spacing (``report["spacing_mismatch"]``: their mm figures, not these scores, are off). Returns
    the report with the per-instance errors and coordinates behind it (an ``Evaluation``).
    """
    if not records:
        raise EvaluationError("the dataset split has no records to evaluate")
    names = records[0].landmark_names
    absent = [n for n in names if n not in landmark_names]
    if absent:
        raise EvaluationError(f"the predictions lack landmark(s) {', '.join(absent)} of the dataset")
    columns = [landmark_names.index(n) for n in names]
    indices, keys, unmatched = match_predictions(records, predictions)
    missing = [records[i].case_id for i in sorted(set(range(len(records))) - set(indices))]
    if not indices:
        raise EvaluationError(
            f"no prediction matches an image of the dataset (e.g. {', '.join(list(predictions)[:3])}); the 'image' "
            f"column must hold the image path or case id (e.g. {records[0].case_id})"
        )
    if missing and not allow_missing:
        raise EvaluationError(
            f"{len(missing)} of {len(records)} images have no prediction (e.g. {', '.join(missing[:5])}); "
            "predict all of them, or pass --allow_missing to score only the predicted ones"
        )
    predicted = np.stack([predictions[k][columns] for k in keys])
    target = np.stack([records[i].landmarks for i in indices])
    spacing = np.array([records[i].spacing_mm for i in indices])
    errors = radial_errors_mm(predicted, target, spacing)
    report = landmark_report(errors, names, thresholds_mm)
    report["images"] = len(indices)
    report["missing"] = missing
    report["unmatched_predictions"] = unmatched
    report["per_image_mre_mm"] = {records[i].case_id: float(e.mean()) for i, e in zip(indices, errors)}
    report["spacing_mismatch"] = [
        {"image": records[i].case_id, "predictions_mm": spacing_mm[k], "dataset_mm": records[i].spacing_mm}
        for i, k in zip(indices, keys) if (spacing_mm or {}).get(k) is not None
        and abs(spacing_mm[k] - records[i].spacing_mm) > SPACING_TOLERANCE * records[i].spacing_mm]
    return Evaluation(report, np.asarray(indices, np.int64), errors, predicted, target)
