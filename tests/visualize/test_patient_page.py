"""The per-patient page: what cannot be computed says why, everything from outside is escaped, no DICOM identity
on the page, and it prints on at most two A4 pages (headless Chromium, where installed)."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

from cephalo.visualize.patient_page import page_input, render_patient_page
from tests.analysis.test_analysis import ISBI, isbi_image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def xray(height: int = 2400, width: int = 1935) -> np.ndarray:
    """A grey picture the size of an ISBI cephalogram (the page only draws on it)."""
    yy, xx = np.mgrid[0:height, 0:width]
    return ((xx // 7 + yy // 11) % 200 + 30).astype(np.uint8)


def test_a_page_with_a_missing_landmark_and_unknown_spacing_says_why_each_value_is_missing():
    landmarks = isbi_image()[0].copy()
    landmarks[ISBI.index("Go")] = np.nan  # not placed on this image
    html = render_patient_page(page_input("case 7", landmarks, ISBI, None, "unknown", image_note="not given"))
    assert "unknown: measurements in mm are not computed (give --spacing_mm)" in html
    assert "not available: needs Go, missing on this image" in html  # SN-MP, FH-MP, the gonial angle, ...
    assert "not available: needs UIA, which the landmark set lacks" in html  # ISBI has no incisor apices
    assert "not available: in mm, and the pixel spacing is unknown" in html  # A to the N perpendicular
    assert "vertical: not available" in html and "No tracing: not given." in html
    assert "This model gives no uncertainty estimate" in html and "not a diagnosis" in html
    sna = re.search(r"<td>SNA</td><td>([\d.]+)°</td>", html)
    assert sna and 70 < float(sna.group(1)) < 95  # what can be computed is


def test_everything_from_outside_is_escaped():
    name = "<script>alert(1)</script>&.png"
    model = {"path": "/runs/<b>x</b>/best.pt", "sha256": "0" * 64, "kind": "one stage",
             "validation": {"val_mre_mm": 1.2}}
    html = render_patient_page(page_input(name, isbi_image()[0], ISBI, 0.1, "dataset", image=xray(600, 480),
                                          model=model, checks=[("<i>Go</i>", 3.0)]))
    assert "<script" not in html and "<b>x" not in html and "<i>Go" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&amp;.png" in html and "&lt;i&gt;Go&lt;/i&gt;" in html


def test_predict_report_keeps_the_dicom_patient_name_and_id_off_the_page(tmp_path):
    pytest.importorskip("pydicom")
    import torch

    from cephalo.image_io import read_grey
    from cephalo.inference.inputs import resolve_inputs
    from cephalo.inference.outputs import predict_to_folder
    from cephalo.preprocessing.letterbox import Letterbox
    from tests.helpers import KnownLandmarksPredictor
    from tests.test_dicom import write_dicom

    stored = (xray(90, 70).astype(np.uint16) * 8 + 100)
    path = write_dicom(tmp_path / "in" / "ceph<script>.dcm", stored, PixelSpacing=[0.1, 0.1],
                       PatientName="Doe^Jane", PatientID="PID-778899", PatientBirthDate="19800101")
    items, _, _ = resolve_inputs([str(path)])
    letterbox = Letterbox((90, 70), (64, 64))
    key = KnownLandmarksPredictor.key(torch.from_numpy(letterbox.apply(read_grey(path)))[None])
    face = isbi_image()[0] / 30.0  # the ISBI face shrunk into 70 x 90 pixels
    predictor = KnownLandmarksPredictor((64, 64), ISBI, {key: letterbox.forward(face)})
    summary = predict_to_folder(predictor, items, tmp_path / "out", num_workers=0, progress=False, report=True)
    assert summary.pages == 1
    html = (tmp_path / "out" / "report" / "ceph<script>.html").read_text()
    assert "Doe" not in html and "Jane" not in html and "PID-778899" not in html and "19800101" not in html
    assert "0.1 mm/px (DICOM header)" in html and "data:image/jpeg;base64," in html and "<script>" not in html
    index = (tmp_path / "out" / "report" / "index.html").read_text()
    assert "Doe" not in index and "<script>" not in index


@pytest.mark.skipif(CHROMIUM is None, reason="needs headless Chromium (apt-get install chromium)")
def test_the_fullest_page_prints_on_at_most_two_a4_pages(tmp_path):
    names = (*ISBI, "UIA", "LIA")  # every table row present: the incisor apices too
    landmarks = np.concatenate([isbi_image()[0], [[1420.0, 1700.0], [1380.0, 2050.0]]])
    model = {"path": "/a/long/path/to/runs/isbi-1024-two-stage/best.pt", "sha256": "ab" * 32, "kind": "two stages",
             "validation": {"val_mre_mm": 0.94}}
    page = page_input("images/001.jpg", landmarks, names, 0.1, "dataset", image=xray(), model=model,
                      tta={"global_views": 1, "local_starts": 5}, checks=[("Go", 3.1), ("Ar", 2.6), ("Po", 2.2)],
                      flagged_measures=["FHI", "SN_GoGn"])
    html_path = tmp_path / "page.html"
    html_path.write_text(render_patient_page(page), encoding="utf-8")
    pdf = tmp_path / "page.pdf"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
                    f"--print-to-pdf={pdf}", html_path.as_uri()], check=True, capture_output=True, timeout=120)
    data = pdf.read_bytes()
    pages = re.findall(rb"/Type\s*/Page(?!s)", data)
    assert 1 <= len(pages) <= 2, len(pages)
    box = re.search(rb"/MediaBox\s*\[\s*0\s+0\s+([\d.]+)\s+([\d.]+)\s*\]", data)
    assert box and abs(float(box.group(1)) - 595.3) < 2 and abs(float(box.group(2)) - 841.9) < 2  # A4 in points
