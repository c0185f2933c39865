"""``cephalo analyze`` on each kind of INPUT, and ``cephalo evaluate --analysis``: measurement errors, the ISBI
classification success rate and its confusion matrix, in the printout, the JSON and the report page."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from cephalo.analysis.analyze import analyze
from cephalo.cli.main import main
from cephalo.image_io import write_image
from tests.analysis.test_analysis import ISBI, isbi_image
from tests.fixtures_datasets import AarizBuilder


@pytest.fixture
def isbi_csv(tmp_path):
    """Four ISBI-named faces (image 001's ground truth, shifted and scaled) as a landmarks CSV with spacing."""
    base = isbi_image()[0]
    rows = [["image", "spacing_mm", *(f"{n}_{a}" for n in ISBI for a in "xy")]]
    for i, (dx, s) in enumerate([(0, 1.0), (40, 1.05), (-30, 0.95), (10, 1.1)]):
        points = (base - base.mean(0)) * s + base.mean(0) + [dx, 0]
        rows.append([f"images/{i:03d}.jpg", "0.1", *(f"{v:.3f}" for v in points.reshape(-1))])
    path = tmp_path / "truth.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    (tmp_path / "images").mkdir()
    for row in rows[1:]:  # a dataset's images must exist (their pixels are not read here)
        write_image(tmp_path / row[0], np.zeros((8, 8), np.uint8))
    return path


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_analyze_a_landmarks_csv(isbi_csv, tmp_path, capsys):
    assert main(["analyze", str(isbi_csv), "--out", str(tmp_path / "a")]) == 0
    rows = read_rows(tmp_path / "a" / "measurements.csv")
    assert len(rows) == 4 and list(rows[0])[:4] == ["image", "SNA", "SNB", "ANB"]
    assert rows[0]["IMPA"] == "" and rows[0]["IncisalTipDistance"] != "" and rows[0]["ANB_class"] in ("1", "2", "3")
    assert rows[0]["ANB_isbi_class"] in ("class I", "class II", "class III")  # the code's name beside it
    assert rows[0]["SN_MP_vs_norm"].split(" (")[0] in ("within norm", "above norm", "below norm")
    sna = [float(r["SNA"]) for r in rows]
    assert max(sna) - min(sna) < 1e-3  # shifting and scaling a face changes no angle
    out = capsys.readouterr().out
    assert "SNA" in out and "IMPA: unavailable (needs LIA" in out and "ANB_class:" in out
    info = json.loads((tmp_path / "a" / "analysis.json").read_text())
    assert {m["name"] for m in info["measurements"]} >= {"SNA", "SN_GoGn", "IncisalTipDistance", "ODI", "APDI", "FHI"}
    assert info["images"][0]["image"] == "images/000.jpg"


def test_analyze_reads_one_image_json_of_cephalo_predict(isbi_csv, tmp_path, capsys):
    """cephalo analyze rejected predict's own per-image JSON; it now measures it like the CSV row it came from."""
    from cephalo.evaluation.predictions import read_landmark_table

    table = read_landmark_table(isbi_csv)
    landmarks = {n: {"x": float(x), "y": float(y), "confidence": 0.9} for n, (x, y) in zip(table.names,
                                                                                             table.landmarks[1])}
    image_json = tmp_path / "001.json"
    image_json.write_text(json.dumps({"image": "scans/001.png", "image_size": [1935, 2400], "spacing_mm": 0.1,
                                      "spacing_source": "--spacing_mm", "landmarks": landmarks}))
    assert main(["analyze", str(image_json), "--out", str(tmp_path / "j")]) == 0
    assert main(["analyze", str(isbi_csv), "--out", str(tmp_path / "c")]) == 0
    one, rows = read_rows(tmp_path / "j" / "measurements.csv"), read_rows(tmp_path / "c" / "measurements.csv")
    assert len(one) == 1 and one[0]["image"] == "scans/001.png"
    assert {k: v for k, v in one[0].items() if k != "image"} == {k: v for k, v in rows[1].items() if k != "image"}
    capsys.readouterr()
    image_json.write_text('{"image": "x.png", "measurements": {}}')
    assert main(["analyze", str(image_json), "--out", str(tmp_path / "k")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {image_json}: not a cephalo predict image JSON") and err.count("\n") == 1


def test_analyze_report_draws_pages_for_corrected_landmarks(isbi_csv, tmp_path, capsys):
    """cephalo analyze --report: a page per image of a (hand-corrected) landmarks CSV, the tracing drawn on the
    image the CSV names; an image that cannot be read gets a page without a tracing that says why."""
    (tmp_path / "images" / "002.jpg").unlink()
    assert main(["analyze", str(isbi_csv), "--out", str(tmp_path / "a"), "--report", str(tmp_path / "pages")]) == 0
    assert "report pages: " in capsys.readouterr().out
    pages = {p.name: p.read_text() for p in (tmp_path / "pages").glob("*.html")}
    assert set(pages) == {"000.html", "001.html", "002.html", "003.html", "index.html"}
    assert "data:image/jpeg;base64," in pages["000.html"] and "0.1 mm/px (the CSV)" in pages["000.html"]
    assert "No tracing: " in pages["002.html"] and "002.jpg" in pages["002.html"]
    assert "Summary" in pages["001.html"] and "landmarks from" in pages["001.html"]


def test_analyze_a_csv_without_spacing_reports_mm_as_unavailable(isbi_csv, tmp_path, capsys):
    text = isbi_csv.read_text().replace(",0.1,", ",,")
    (tmp_path / "nospacing.csv").write_text(text)
    assert main(["analyze", str(tmp_path / "nospacing.csv"), "--out", str(tmp_path / "b")]) == 0
    rows = read_rows(tmp_path / "b" / "measurements.csv")
    assert rows[0]["IncisalTipDistance"] == "" and rows[0]["MW_class"] == "" and rows[0]["SNA"] != ""
    assert "IncisalTipDistance: unavailable (in mm, and no image has a known pixel spacing)" in capsys.readouterr().out


def test_analyze_an_aariz_dataset_computes_the_incisor_measures(tmp_path, capsys):
    aariz = AarizBuilder(tmp_path / "Aariz")
    for case in ("a1", "a2"):
        aariz.add_case(case)  # the real example annotation (scaled), so the anatomy is real
    assert main(["analyze", str(aariz.root), "--split", "train", "--out", str(tmp_path / "c")]) == 0
    rows = read_rows(tmp_path / "c" / "measurements.csv")
    assert rows and all(rows[0][m] != "" for m in ("IMPA", "FMIA", "U1_SN", "Interincisal"))
    assert "unavailable" not in capsys.readouterr().out


def test_evaluate_analysis_scores_measurements_and_classes(isbi_csv, tmp_path, capsys):
    rows = read_rows(isbi_csv)
    for row in rows[1:2]:  # move image 1's B point 20 mm back: its ANB class changes (III to II), no other
        row["B_x"] = f"{float(row['B_x']) - 200:.3f}"
    predictions = tmp_path / "preds.csv"
    with open(predictions, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    code = main(["evaluate", "--dataset_path", str(isbi_csv), "--split", "all", "--predictions", str(predictions),
                 "--analysis", "--report", str(tmp_path / "report"), "--dataset_format", "csv"])
    assert code == 0
    report = json.loads((tmp_path / "preds.eval.json").read_text())["analysis"]
    anb = report["classification"]["ANB"]
    assert anb["images"] == 4 and anb["success_rate"] == pytest.approx(75.0)
    assert np.array(anb["confusion"]).sum() == 4 and np.trace(np.array(anb["confusion"])) == 3
    assert report["measurements"]["SNA"]["mad"] == pytest.approx(0.0, abs=1e-9)  # A, N, S untouched
    assert report["measurements"]["SNB"]["mad"] > 0
    page = (tmp_path / "report" / "report.html").read_text()
    assert "ISBI 2015 classification" in page and "75.0%" in page
    assert "ISBI class" in capsys.readouterr().out


def test_predict_json_carries_the_measurements_and_overlays_draw_the_lines(tmp_path):
    import torch

    from cephalo.artifact.checkpoint import StageSpec
    from cephalo.inference.inputs import InputImage
    from cephalo.inference.outputs import predict_to_folder
    from cephalo.inference.predictor import Predictor

    truth = isbi_image()[0] / 4  # a 484 x 600 image
    image = np.full((600, 484), 60, np.uint8)
    write_image(tmp_path / "x.png", image)

    class Truth(Predictor):  # heatmaps of the known landmarks, letterboxed to the model input
        def heatmaps(self, images):
            from cephalo.preprocessing.letterbox import Letterbox

            box = Letterbox((600, 484), self.image_size)
            return self.codec.encode(torch.as_tensor(box.forward(truth)[None], dtype=torch.float32))

    predictor = Truth(StageSpec("stub", ISBI, (256, 256), stride=1, sigma=2.0))
    out = tmp_path / "out"
    for lines in (False, True):
        predict_to_folder(predictor, [InputImage(path=tmp_path / "x.png", key="x.png")], out, overlay=True,
                          num_workers=0, progress=False, spacing_mm=0.4, analysis_lines=lines)
        doc = json.loads((out / "x.json").read_text())
        picture = (out / "x_overlay.jpg").read_bytes()
        if not lines:
            plain = picture
    expected = analyze(truth[None], ISBI, [0.4])  # the ground truth's, which the stub predicts back
    assert doc["measurements"]["SNA"] == pytest.approx(expected.values["SNA"][0], abs=0.05)
    assert doc["measurements"]["IMPA"] is None and "LIA" in doc["unavailable"]["IMPA"]
    assert doc["measurements"]["ANB_class"] == int(expected.classes["ANB"][0])
    assert picture != plain  # the lines were drawn


@pytest.mark.parametrize("bad", ["0", "-0.1", "nan", "inf"])
def test_analyze_refuses_a_spacing_that_is_no_pixel_size(isbi_csv, tmp_path, capsys, bad):
    """A zero or negative spacing gave mm figures (0 mm, or negative distances) without a word."""
    lines = isbi_csv.read_text().splitlines()
    lines[2] = lines[2].replace(",0.1,", f",{bad},", 1)
    (tmp_path / "bad.csv").write_text("\n".join(lines) + "\n")
    assert main(["analyze", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err, err
    assert "bad.csv, line 3" in err and f"spacing_mm {bad}: must be a positive number of mm per pixel" in err
    assert not (tmp_path / "c" / "measurements.csv").exists()
