"""The error calibration: fitted on held-out predictions, stored with the model through the checkpoint schema,
used by predict (JSON, checks.csv, overlay, page); cephalo calibrate's refusals."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from cephalo.analysis.uncertainty import unstable_readings
from cephalo.artifact.calibration import ErrorCalibration, fit_calibration
from cephalo.artifact.checkpoint import load_checkpoint, read_checkpoint, state_digest
from cephalo.cli.main import main
from tests.analysis.test_analysis import face, polar
from tests.inference.test_predict import predict, trained  # noqa: F401  (the module's fixture)


def test_the_fit_recovers_each_landmarks_level_and_the_slope_and_flags_its_share():
    rng = np.random.default_rng(0)
    levels, slope = np.log([4.0, 8.0, 2.0]), -2.0  # errors of about 1 mm and more: the log's floor is negligible
    peak = rng.uniform(0.4, 1.0, (4000, 3))
    error = np.exp(levels + slope * peak + rng.normal(0, 0.3, peak.shape))
    fit = fit_calibration(peak, error, ("S", "Go", "N"), "synthetic", flag_share=0.1)
    assert fit.slope == pytest.approx(slope, abs=0.1)
    assert np.allclose(fit.levels, levels, atol=0.1)
    assert (fit.expected_error_mm(peak) > fit.threshold_mm).mean() == pytest.approx(0.1, abs=0.005)
    assert ErrorCalibration.from_dict(json.loads(json.dumps(fit.to_dict()))) == fit
    with pytest.raises(ValueError, match="at least 5 images"):
        fit_calibration(peak[:3], error[:3], ("S", "Go", "N"), "too few")


def test_readings_near_a_threshold_are_named_when_the_errors_could_move_them():
    n, s = (1000.0, 500.0), (400.0, 500.0)
    lm, names = face(S=s, N=n, A=polar(n, 300, 180 - 83), B=polar(n, 350, 180 - 80))  # ANB 3: ISBI class I from 3.2
    assert "ANB: ISBI class" in unstable_readings(lm[0], names, 0.1, np.full(len(names), 2.0))
    assert unstable_readings(lm[0], names, 0.1, np.full(len(names), 0.01)) == []
    assert unstable_readings(lm[0], names, None, np.full(len(names), 2.0)) == []  # no spacing: no mm to pixels


def test_calibrate_then_predict_flags_points_everywhere_predict_writes(trained, tmp_path, capsys):  # noqa: F811
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(trained["checkpoint"].read_bytes())
    held_out = tmp_path / "held_out"  # a stand-in for a cross-validation's fold folders
    assert predict(["--checkpoint", checkpoint, trained["csv"], "--out", held_out]) == 0
    assert main(["calibrate", "--checkpoint", str(checkpoint), "--predictions", str(held_out),
                 "--dataset_path", str(trained["csv"])]) == 0
    out = capsys.readouterr().out
    assert "calibrated on 18 points" in out and f"wrote {checkpoint}" in out
    state = load_checkpoint(checkpoint)  # the digest was written again with the new field
    assert state["digest"] == state_digest(state) and read_checkpoint(checkpoint).calibration.points == 18

    out_dir = tmp_path / "out"
    assert predict(["--checkpoint", checkpoint, trained["csv"], "--out", out_dir, "--overlay", "--report"]) == 0
    image = json.loads((out_dir / "003.json").read_text())
    assert all({"expected_error_mm", "check"} <= set(e) for e in image["landmarks"].values())
    assert [c["landmark"] for c in image["checks"]] == [n for n, e in image["landmarks"].items() if e["check"]]
    assert isinstance(image["unstable_readings"], list) and image["calibration"]["threshold_mm"] > 0
    with open(out_dir / "checks.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 * 3 and {r["check"] for r in rows} <= {"0", "1"}
    flagged_everywhere = sum(int(r["check"]) for r in rows)
    record = json.loads((out_dir / "run.json").read_text())
    assert "checks.csv" in record["outputs"]
    page = (out_dir / "report" / "003.html").read_text()
    assert "gives no uncertainty" not in page
    for check in image["checks"] or [{"landmark": None}]:
        assert (f"<b>{check['landmark']}</b>: estimated error" if check["landmark"] else
                "No landmark's estimated error is above the flagging threshold") in page
    assert flagged_everywhere == sum(len(json.loads((out_dir / f"{i:03d}.json").read_text())["checks"])
                                     for i in range(6))


def test_calibrate_refuses_what_would_make_it_wrong(trained, tmp_path, capsys):  # noqa: F811
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(trained["checkpoint"].read_bytes())
    folder = tmp_path / "p"
    assert predict(["--checkpoint", checkpoint, trained["csv"], "--out", folder]) == 0
    base = ["calibrate", "--checkpoint", str(checkpoint), "--dataset_path", str(trained["csv"])]
    cases = [
        ([*base, "--predictions", str(folder), str(folder)], "is predicted twice among the folders"),
        (["calibrate", "--checkpoint", str(checkpoint), "--predictions", str(folder)], "needs --dataset_path"),
    ]
    capsys.readouterr()
    for argv, words in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and words in err, err
    (folder / "run.json").unlink()
    assert main([*base, "--predictions", str(folder)]) == 2
    assert "no run.json (predict it again" in capsys.readouterr().err
    assert read_checkpoint(checkpoint).calibration is None  # nothing written by a refused command

