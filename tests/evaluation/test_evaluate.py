import json

import numpy as np
import pytest

from cephalo.cli.main import main
from cephalo.datasets.csv_dataset import read_csv_dataset, write_landmarks_csv
from cephalo.evaluation.evaluate import EvaluationError, score_predictions
from cephalo.evaluation.predictions import match_predictions, read_predictions
from tests.helpers import write_csv_dataset


@pytest.fixture
def data(tmp_path):
    csv_path, points = write_csv_dataset(tmp_path / "data", n=4)
    return csv_path, points, read_csv_dataset(csv_path)[0]


def test_ground_truth_scores_zero_and_known_shift(data, tmp_path):
    csv_path, points, records = data
    names = ("S", "N", "Me")
    preds = {r.case_id: r.landmarks for r in records}
    report = score_predictions(records, names, preds).report
    assert report["overall"]["mre_mm"] == 0 and report["overall"]["sdr"]["2mm"] == 100
    shifted = {k: v + [6.0, 8.0] for k, v in preds.items()}  # 10 px at 0.1 mm
    assert score_predictions(records, names, shifted).report["overall"]["mre_mm"] == pytest.approx(1.0)


def test_landmarks_matched_by_name_and_images_by_path_or_stem(data):
    _, _, records = data
    reordered = ("Me", "S", "N", "Extra")
    preds = {}
    for i, r in enumerate(records):
        key = [r.case_id, "001.png", "images/002.png", "003"][i]
        preds[key] = np.concatenate([r.landmarks[[2, 0, 1]], [[0.0, 0.0]]])
    report = score_predictions(records, reordered, preds).report
    assert report["images"] == 4 and report["overall"]["mre_mm"] == 0


def test_missing_and_unmatched_predictions(data):
    _, _, records = data
    names = ("S", "N", "Me")
    preds = {r.case_id: r.landmarks for r in records[:3]}
    with pytest.raises(EvaluationError, match="1 of 4 images have no prediction.*--allow_missing"):
        score_predictions(records, names, preds).report
    report = score_predictions(records, names, preds, allow_missing=True).report
    assert report["images"] == 3 and report["missing"] == [records[3].case_id]
    _, _, unmatched = match_predictions(records, {"zzz.png": records[0].landmarks})
    assert unmatched == ["zzz.png"]
    with pytest.raises(EvaluationError, match="no prediction matches"):
        score_predictions(records, names, {"zzz.png": records[0].landmarks}).report
    with pytest.raises(EvaluationError, match="lack landmark"):
        score_predictions(records, ("S", "N"), {r.case_id: r.landmarks[:2] for r in records}).report


def test_bad_prediction_rows_listed_together(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("image,spacing_mm,S_x,S_y\na.png,0.1,1,nan\nb.png,0.1,1,\nc.png,0.1,1,2\n")
    with pytest.raises(ValueError) as e:
        read_predictions(path)
    assert "line 2" in str(e.value) and "line 3" in str(e.value) and "2 problem(s)" in str(e.value)


def test_cli_evaluate_writes_json(data, tmp_path, capsys):
    csv_path, points, records = data
    preds = tmp_path / "preds.csv"
    write_landmarks_csv(preds, [r.case_id for r in records], points + [0.0, 10.0], [0.1] * 4, ("S", "N", "Me"))
    assert main(["evaluate", "--dataset_path", str(csv_path), "--predictions", str(preds)]) == 0
    out = capsys.readouterr().out
    assert "overall" in out and "1.000" in out
    report = json.loads(preds.with_suffix(".eval.json").read_text())
    assert report["overall"]["mre_mm"] == pytest.approx(1.0) and set(report["per_landmark"]) == {"S", "N", "Me"}


def test_cli_reports_user_errors_without_traceback(tmp_path, capsys):
    assert main(["evaluate", "--dataset_path", str(tmp_path / "nowhere"), "--predictions", "x.csv"]) == 2
    assert "no such dataset folder or CSV file" in capsys.readouterr().err


def test_evaluate_without_a_dataset_refuses_instead_of_scoring_against_synthetic_data(data, tmp_path, capsys):
    csv_path, points, records = data
    preds = tmp_path / "preds.csv"
    write_landmarks_csv(preds, [r.case_id for r in records], points, [0.1] * 4, ("S", "N", "Me"))
    assert main(["evaluate", "--predictions", str(preds)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cephalo evaluate needs --dataset_path") and str(preds) in err, err
    assert err.count("\n") == 1 and not preds.with_suffix(".eval.json").exists()


def test_predictions_made_with_another_spacing_are_named_and_scored_in_the_datasets(data, tmp_path, capsys):
    """The landmarks are pixels, so the scores hold; but a predictions file whose spacing differs from the ground
    truth's (a wrong --spacing_mm at predict time) has wrong mm figures of its own: said, not passed over."""
    csv_path, points, records = data
    preds = tmp_path / "preds.csv"
    write_landmarks_csv(preds, [r.case_id for r in records], points + [0.0, 10.0], [0.1, 0.1, 0.2, 0.1],
                        ("S", "N", "Me"))
    assert main(["evaluate", "--dataset_path", str(csv_path), "--predictions", str(preds)]) == 0
    err = capsys.readouterr().err
    assert f"warning: {preds}: 1 image(s) were predicted with another pixel spacing than the dataset's" in err
    assert f"(e.g. {records[2].case_id}: 0.2 mm against 0.1)" in err
    report = json.loads(preds.with_suffix(".eval.json").read_text())
    assert report["overall"]["mre_mm"] == pytest.approx(1.0)  # in the dataset's spacing
    assert [m["image"] for m in report["spacing_mismatch"]] == [records[2].case_id]
