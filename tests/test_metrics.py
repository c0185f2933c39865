import numpy as np
import pytest

from cephalo.metrics import format_report, landmark_report, radial_errors_mm, summarize


def test_radial_errors_use_each_images_spacing():
    target = np.zeros((2, 2, 2))
    predicted = target.copy()
    predicted[0, 0] = [3, 4]    # 5 px at 0.1 mm
    predicted[1, 1] = [0, 10]   # 10 px at 0.2 mm
    errors = radial_errors_mm(predicted, target, np.array([0.1, 0.2]))
    np.testing.assert_allclose(errors, [[0.5, 0.0], [0.0, 2.0]])


def test_summary_pools_instances():
    errors = np.array([[1.0, 2.0], [3.0, 6.0]])
    s = summarize(errors)
    assert s["mre_mm"] == pytest.approx(3.0)
    assert s["sd_mm"] == pytest.approx(np.std([1, 2, 3, 6]))
    assert s["sdr"] == {"2mm": 50.0, "2.5mm": 50.0, "3mm": 75.0, "4mm": 75.0}  # "within" includes the threshold
    assert s["count"] == 4


def test_report_per_landmark_and_table():
    errors = np.array([[1.0, 2.0], [3.0, 6.0]])
    report = landmark_report(errors, ("S", "N"))
    assert report["per_landmark"]["S"]["mre_mm"] == pytest.approx(2.0)
    assert report["per_landmark"]["N"]["mre_mm"] == pytest.approx(4.0)
    table = format_report(report)
    assert "overall" in table and "SDR2mm" in table and table.count("\n") == 5


def test_shape_errors():
    with pytest.raises(ValueError, match=r"\(N, K, 2\)"):
        radial_errors_mm(np.zeros((2, 3)), np.zeros((2, 3)), np.ones(2))
    with pytest.raises(ValueError, match="spacing_mm"):
        radial_errors_mm(np.zeros((2, 3, 2)), np.zeros((2, 3, 2)), np.ones(3))
    with pytest.raises(ValueError, match="landmark names"):
        landmark_report(np.zeros((2, 3)), ("S",))
