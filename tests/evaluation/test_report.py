import csv
import json
import re
import sys

import cv2
import numpy as np
import pytest

from cephalo.cli.main import main
from cephalo.datasets.csv_dataset import write_landmarks_csv
from cephalo.evaluation.report import worst_images
from cephalo.visualize.gallery import OUTSIDE_GREY, gallery_image
from cephalo.visualize.overlay import PREDICTED
from tests.helpers import write_csv_dataset

NAMES = ("S", "N", "Me")
# known radial errors in mm (spacing 0.1 mm: x10 px), away from the SDR thresholds; per-image MRE
# 1.0, 4.0, 0.4, 1.0, 5.0, 1.0: image 004 is the worst, then 001
ERRORS = np.array([
    [0.5, 1.0, 1.5],
    [3.1, 4.1, 4.8],
    [0.2, 0.4, 0.6],
    [1.0, 1.2, 0.8],
    [6.0, 2.2, 6.8],
    [0.1, 0.3, 2.6],
])
THRESHOLDS = (2.0, 2.5, 3.0, 4.0)


@pytest.fixture
def scored(tmp_path):
    """A 6-image CSV dataset and predictions off by ERRORS (direction (0.6, 0.8), alternating sign)."""
    csv_path, points = write_csv_dataset(tmp_path / "data", n=6, size=(120, 100), names=NAMES)
    sign = np.where(np.arange(3) % 2 == 0, 1.0, -1.0)[None, :, None]
    predicted = points + ERRORS[..., None] * 10.0 * np.array([0.6, 0.8]) * sign
    preds = tmp_path / "preds.csv"
    write_landmarks_csv(preds, [f"images/{i:03d}.png" for i in range(6)], predicted, [0.1] * 6, NAMES)
    return csv_path, preds


def _evaluate(csv_path, preds, out, *extra):
    args = ["--dataset_path", str(csv_path), "--predictions", str(preds), "--report", str(out), *extra]
    return main(["evaluate", *args])


def _read_image(path):
    return cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_COLOR)


def _expected(e):
    return [e.mean(), e.std()] + [(e <= t).mean() * 100 for t in THRESHOLDS] + [e.size]


def test_report_folder(scored, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    csv_path, preds = scored
    out = tmp_path / "report"
    assert _evaluate(csv_path, preds, out, "--worst", "2") == 0
    assert "report page" in capsys.readouterr().out

    with open(out / "per_landmark.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["landmark", "mre_mm", "sd_mm", "sdr_2mm", "sdr_2.5mm", "sdr_3mm", "sdr_4mm", "count"]
    assert [r[0] for r in rows[1:]] == [*NAMES, "overall"]
    for row, e in zip(rows[1:], [*ERRORS.T, ERRORS]):
        assert [float(v) for v in row[1:]] == pytest.approx(_expected(e), abs=1e-4)

    md = (out / "per_landmark.md").read_text().splitlines()
    assert md[0].startswith("| landmark | MRE (mm) | SD (mm) | SDR 2 mm (%)") and len(md) == 2 + len(NAMES) + 1
    assert md[-1].startswith(f"| **overall** | **{ERRORS.mean():.3f}** | **{ERRORS.std():.3f}** |")
    assert md[2].startswith(f"| S | {ERRORS[:, 0].mean():.3f} |")

    with open(out / "per_image.csv", newline="") as f:
        per_image = {r["image"]: r for r in csv.DictReader(f)}
    assert float(per_image["images/004.png"]["mre_mm"]) == pytest.approx(5.0, abs=1e-4)
    assert per_image["images/004.png"]["worst_landmark"] == "Me"

    report = json.loads((out / "report.json").read_text())
    assert report["overall"]["mre_mm"] == pytest.approx(ERRORS.mean()) and report["split"] == "all"

    gallery = sorted(p.name for p in out.glob("worst_*.jpg"))
    assert gallery == ["worst_1_004.jpg", "worst_2_001.jpg"]  # the two images made worst, worst first
    for name in gallery:
        image = _read_image(out / name)
        assert image is not None and max(image.shape[:2]) >= 480  # small images are enlarged for the page
    for name in ("landmark_errors.png", "error_distribution.png"):
        image = _read_image(out / name)
        assert image is not None and image.shape[0] >= 300 and image.shape[1] >= 500, name
        assert image.std() > 10  # not a blank canvas

    page = (out / "report.html").read_text(encoding="utf-8")
    sources = re.findall(r'<img[^>]+src="([^"]+)"', page)
    assert set(sources) == {"landmark_errors.png", "error_distribution.png", *gallery}
    assert sources.index("worst_1_004.jpg") < sources.index("worst_2_001.jpg")
    assert f"{ERRORS.mean():.2f} mm" in page and f"{ERRORS.mean():.3f}" in page
    assert str(preds) in page and "images/004.png" in page
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert not list(out.glob("*.tmp"))


def test_report_without_matplotlib(scored, tmp_path, capsys, monkeypatch):
    csv_path, preds = scored
    out = tmp_path / "report"
    out.mkdir()
    for stale in ("landmark_errors.png", "worst_3_old.jpg"):  # from an earlier run: must not look current
        (out / stale).write_bytes(b"old")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    assert _evaluate(csv_path, preds, out, "--worst", "1") == 0
    err = capsys.readouterr().err
    assert err.count('pip install "cephalo[report]" (or pip install matplotlib)') == 1 and "plots skipped" in err
    assert not list(out.glob("*.png")) and not (out / "worst_3_old.jpg").exists()
    assert sorted(p.name for p in out.glob("worst_*.jpg")) == ["worst_1_004.jpg"]
    page = (out / "report.html").read_text(encoding="utf-8")
    assert re.findall(r'<img[^>]+src="([^"]+)"', page) == ["worst_1_004.jpg"] and "cephalo[report]" in page
    assert f"{ERRORS.mean():.2f} mm" in page
    assert (out / "per_landmark.csv").is_file() and (out / "per_landmark.md").is_file()


def test_worst_option_checked(scored, tmp_path, capsys):
    csv_path, preds = scored
    assert _evaluate(csv_path, preds, tmp_path / "r", "--worst", "-1") == 2
    assert "--worst" in capsys.readouterr().err


def test_worst_images_ranking():
    mre = {"b": 1.0, "a": 1.0, "c": 3.0, "d": 0.5}
    assert worst_images(mre, 3) == [("c", 3.0), ("a", 1.0), ("b", 1.0)]
    assert len(worst_images(mre, 10)) == 4 and worst_images(mre, 0) == []


def test_gallery_image_crops_and_maps_coordinates():
    image = np.full((2000, 4000), 90, np.uint8)
    point = np.array([[3000.0, 1000.0]])
    picture = gallery_image(image, point, point, ("S",), "title")
    band = picture.shape[0] - picture.shape[1]  # the crop is square: 400 px margin on each side, not scaled
    assert picture.shape[1] == 801 and band > 10
    assert np.abs(picture[band + 400, 400].astype(int) - PREDICTED).max() < 40  # the prediction's dot
    small = gallery_image(np.full((100, 100), 90, np.uint8), np.array([[50.0, 50.0]]), np.array([[50.0, 50.0]]),
                          ("S",), "t")
    assert small.shape[1] == 480  # enlarged
    # a prediction left of the image: the canvas reaches out to it, grey beyond the border
    outside = gallery_image(np.full((1000, 1000), 200, np.uint8), np.array([[-200.0, 500.0]]),
                            np.array([[100.0, 500.0]]), ("S",), "t", max_side=10_000)
    band = outside.shape[0] - 201  # y from 400 to 600
    assert outside.shape[1] == 501 and band > 10  # x from -300 to 200
    assert (outside[band + 20, 20] == OUTSIDE_GREY).all() and (outside[band + 20, 480] == 200).all()
    assert np.abs(outside[band + 100, 100].astype(int) - PREDICTED).max() < 40
    big = gallery_image(np.full((3000, 3000), 90, np.uint8), np.array([[10.0, 10.0], [2990.0, 2990.0]]),
                        np.array([[10.0, 10.0], [2990.0, 2990.0]]), ("A", "B"), "t", max_side=500)
    assert big.shape[1] == 500
