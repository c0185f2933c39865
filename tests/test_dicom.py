"""DICOM input (cephalo.dicom through cephalo.image_io): pixels, spacing, detection, errors, and predict's round trip.

Every DICOM here is written by the test itself with pydicom (uncompressed 16-bit, Explicit VR Little Endian).
"""

from __future__ import annotations

import json
import re
import sys

import cv2
import numpy as np
import pytest
import torch

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000, ExplicitVRLittleEndian, JPEGLosslessSV1, generate_uid

from cephalo.dicom import header_spacing_mm, spacing_from_header
from cephalo.image_io import ImageReadError, decode_grey, read_bytes, read_grey, write_image
from cephalo.inference.inputs import InputImage, resolve_inputs
from cephalo.inference.outputs import predict_to_folder
from cephalo.inference.spacing import image_spacing
from cephalo.preprocessing.letterbox import Letterbox

RAMP = np.arange(12 * 10, dtype=np.uint16).reshape(12, 10) * 30 + 200  # stored values 200..3770 (12 bits)
from tests.helpers import KnownLandmarksPredictor


def write_dicom(path, stored=RAMP, photometric="MONOCHROME2", preamble=True, transfer_syntax=ExplicitVRLittleEndian,
                pixel_data=None, **attributes):
    """A one-frame DX DICOM of ``stored`` ``(H, W)`` uint16 (BitsStored 12) plus any header ``attributes``."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
    meta.MediaStorageSOPInstanceUID, meta.TransferSyntaxUID = generate_uid(), transfer_syntax
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID, "DX"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixel_data if pixel_data is not None else stored.astype("<u2").tobytes()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    if not preamble:  # an old-style file: no preamble, no "DICM", no meta header
        plain = pydicom.dcmread(path)
        del plain.file_meta
        plain.preamble = None
        path.unlink()
        plain.save_as(path, implicit_vr=False, little_endian=True)
    return path


def stretched(values) -> np.ndarray:
    values = np.asarray(values, np.float64)
    return np.round((values - values.min()) * 255 / (values.max() - values.min())).astype(np.uint8)


# ------------------------------------------------------------------------------------------------------- pixels


def test_monochrome2_is_stretched_and_monochrome1_inverted(tmp_path):
    """Bright bone must come out bright whatever the polarity: MONOCHROME1 stores it as low values."""
    mono2 = read_grey(write_dicom(tmp_path / "m2.dcm"))
    assert mono2.dtype == np.uint8 and mono2.shape == RAMP.shape
    np.testing.assert_array_equal(mono2, stretched(RAMP))  # no window: min-max of the stored range
    assert (mono2.min(), mono2.max()) == (0, 255)
    mono1 = read_grey(write_dicom(tmp_path / "m1.dcm", photometric="MONOCHROME1"))
    np.testing.assert_array_equal(mono1, 255 - mono2)


def test_rescale_slope_and_intercept_come_first(tmp_path):
    """A negative slope flips the values: only the Modality LUT applied before the stretch gets that right."""
    grey = read_grey(write_dicom(tmp_path / "r.dcm", RescaleSlope=-2, RescaleIntercept=1000))
    np.testing.assert_array_equal(grey, stretched(1000 - 2.0 * RAMP))
    assert grey[0, 0] == 255 and grey[-1, -1] == 0


def test_window_center_and_width_are_applied(tmp_path):
    """Window over modality values (HU-like after the rescale): below -> 0, above -> 255, linear in between."""
    grey = read_grey(write_dicom(tmp_path / "w.dcm", RescaleSlope=1, RescaleIntercept=-1000,
                                 WindowCenter=1000, WindowWidth=1001))
    modality = RAMP.astype(np.float64) - 1000  # -800 .. 2770
    expected = np.clip(np.round(((modality - 999.5) / 1000 + 0.5) * 255), 0, 255)  # DICOM's LINEAR window
    np.testing.assert_array_equal(grey, expected.astype(np.uint8))
    assert (grey == 0).sum() > 10 and (grey == 255).sum() > 10  # the window clips both ends
    mono1 = read_grey(write_dicom(tmp_path / "w1.dcm", photometric="MONOCHROME1", RescaleSlope=1,
                                  RescaleIntercept=-1000, WindowCenter=1000, WindowWidth=1001))
    np.testing.assert_array_equal(mono1, 255 - grey)


def test_colour_dicom_is_converted_to_grey(tmp_path):
    rgb = np.stack([RAMP % 256, RAMP // 16, 255 - RAMP % 256], axis=-1).astype(np.uint8)
    path = write_dicom(tmp_path / "rgb.dcm", RAMP, photometric="RGB", SamplesPerPixel=3, PlanarConfiguration=0,
                       BitsAllocated=8, BitsStored=8, HighBit=7, pixel_data=rgb.tobytes())
    np.testing.assert_array_equal(read_grey(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))


def test_extensionless_dicom_is_read_by_its_magic_and_old_files_by_their_name(tmp_path):
    path = write_dicom(tmp_path / "scan")  # no extension: the DICM magic at byte 128 says what it is
    data = read_bytes(path)
    assert data[128:132] == b"DICM"
    np.testing.assert_array_equal(read_grey(path), stretched(RAMP))
    np.testing.assert_array_equal(decode_grey(data), stretched(RAMP))  # the cache's path: bytes, no name needed
    old = write_dicom(tmp_path / "old.dcm", preamble=False)
    assert read_bytes(old)[128:132] != b"DICM"
    np.testing.assert_array_equal(read_grey(old), stretched(RAMP))


def test_csv_dataset_and_cache_read_an_extensionless_dicom(tmp_path):
    """A CSV row pointing at a DICOM without extension goes through the letterbox cache like any image."""
    from cephalo.datasets.csv_dataset import read_csv_dataset
    from cephalo.preprocessing.cache import LetterboxCache

    write_dicom(tmp_path / "scan")
    (tmp_path / "d.csv").write_text("image,spacing_mm,S_x,S_y\nscan,0.1,4,5\n", encoding="utf-8")
    records, issues = read_csv_dataset(tmp_path / "d.csv")
    result = LetterboxCache(tmp_path / "cache", (16, 16)).prepare(records, num_threads=1, progress=False)
    assert not issues and not result.issues and result.entries[0].source_size == RAMP.shape
    np.testing.assert_array_equal(result.entries[0].load(), Letterbox(RAMP.shape, (16, 16)).apply(stretched(RAMP)))


def test_bad_dicoms_name_the_file(tmp_path):
    (tmp_path / "junk.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x07" * 40)
    no_image = write_dicom(tmp_path / "short.dcm", pixel_data=RAMP.astype("<u2").tobytes()[:50])
    for path in (tmp_path / "junk.dcm", no_image):
        with pytest.raises(ImageReadError) as e:
            read_grey(path)
        assert str(path) in str(e.value) and "\n" not in str(e.value)


# ------------------------------------------------------------------------------------------------------ spacing


def test_spacing_from_pixel_spacing_or_imager_spacing_with_magnification(tmp_path):
    assert header_spacing_mm(write_dicom(tmp_path / "p.dcm", PixelSpacing=[0.1, 0.1],
                                         ImagerPixelSpacing=[0.11, 0.11])) == pytest.approx(0.1)  # patient plane wins
    assert header_spacing_mm(write_dicom(tmp_path / "i.dcm", ImagerPixelSpacing=[0.11, 0.11])) == pytest.approx(0.11)
    magnified = write_dicom(tmp_path / "m.dcm", ImagerPixelSpacing=[0.11, 0.11],
                            EstimatedRadiographicMagnificationFactor=1.1)
    assert header_spacing_mm(magnified) == pytest.approx(0.1)  # detector spacing / magnification = at the patient
    assert header_spacing_mm(write_dicom(tmp_path / "none.dcm")) is None
    png = tmp_path / "x.png"
    write_image(png, np.zeros((4, 4), np.uint8))
    assert header_spacing_mm(png) is None


def test_rows_and_columns_that_differ_by_more_than_1_percent_are_averaged_with_a_warning(tmp_path):
    warnings: list[str] = []
    ds = pydicom.Dataset()
    ds.PixelSpacing = [0.1, 0.1005]  # 0.5 %: the same, silently
    assert spacing_from_header(ds, "a.dcm", warnings.append) == pytest.approx(0.10025) and not warnings
    ds.PixelSpacing = [0.1, 0.12]
    assert spacing_from_header(ds, "b.dcm", warnings.append) == pytest.approx(0.11)
    assert len(warnings) == 1 and "b.dcm" in warnings[0] and "0.1" in warnings[0] and "0.12" in warnings[0]


def test_spacing_precedence_dataset_then_flag_then_header_with_one_warning(tmp_path, capsys):
    path = write_dicom(tmp_path / "s.dcm", PixelSpacing=[0.1, 0.1])
    warnings: list[str] = []
    assert image_spacing(InputImage(path, "s.dcm"), None, warnings.append) == pytest.approx(0.1)  # header
    assert image_spacing(InputImage(path, "s.dcm"), 0.1005, warnings.append) == 0.1005 and not warnings  # < 1 %
    assert image_spacing(InputImage(path, "s.dcm"), 0.2, warnings.append) == 0.2  # the flag wins, with a warning
    assert image_spacing(InputImage(path, "s.dcm", spacing_mm=0.15), 0.2, warnings.append) == 0.15  # dataset wins
    assert len(warnings) == 2 and all(str(path) in w and "0.1 mm" in w for w in warnings)
    assert "--spacing_mm 0.2" in warnings[0] and "spacing_mm 0.15" in warnings[1]
    image_spacing(InputImage(path, "s.dcm"), 0.2)  # by default: a warning line on stderr
    assert capsys.readouterr().err.startswith(f"warning: {path}: --spacing_mm 0.2 mm differs")


# ----------------------------------------------------------------------------------------------- what is missing


def test_without_pydicom_one_error_names_the_pip_command(tmp_path, monkeypatch):
    path = write_dicom(tmp_path / "a.dcm")
    monkeypatch.setitem(sys.modules, "pydicom", None)
    with pytest.raises(ImportError, match=r'pip install "cephalo\[dicom\]"') as e:
        read_grey(path)
    assert str(path) in str(e.value)
    with pytest.raises(ImportError, match=r'1 DICOM image.*pip install "cephalo\[dicom\]"'):  # predict: once, early
        predictor = KnownLandmarksPredictor((16, 16), ("S", "N"), {})
        predict_to_folder(predictor, [InputImage(path, "a.dcm")], tmp_path / "out", progress=False)


@pytest.mark.parametrize("syntax, package", [(JPEGLosslessSV1, "pylibjpeg-libjpeg"), (JPEG2000, "pylibjpeg-openjpeg")])
def test_compressed_pixels_without_a_decoder_say_what_to_install(tmp_path, monkeypatch, syntax, package):
    from pydicom.pixels import get_decoder
    from pydicom.pixels.decoders.base import Decoder

    if get_decoder(syntax).is_available:  # pillow decodes JPEG 2000: take the installed plugins away
        monkeypatch.setattr(Decoder, "is_available", property(lambda self: not self.UID.is_encapsulated))
    path = write_dicom(tmp_path / "c.dcm", transfer_syntax=syntax, pixel_data=encapsulate([b"\xff\xd8 not a JPEG"]))
    with pytest.raises(ImageReadError, match=re.escape(syntax.name) + f".*no decoder.*pip install .*{package}") as e:
        read_grey(path)
    assert str(e.value).startswith(str(path)) and "\n" not in str(e.value)
    assert 'pip install "pydicom[pixeldata]"' in str(e.value)


# ------------------------------------------------------------------------------------------ predict's round trip


def test_a_dicom_folder_is_listed_by_predict(tmp_path):
    write_dicom(tmp_path / "in" / "b.dcm"), write_dicom(tmp_path / "in" / "a.DICOM")
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    items, issues, _ = resolve_inputs([str(tmp_path / "in")])
    assert [item.path.name for item in items] == ["a.DICOM", "b.dcm"] and not issues


def test_monochrome1_dicom_with_rescale_predicts_like_the_png_with_its_spacing_in_a_csv(tmp_path, capsys):
    """The issue's round trip: same uint8 pixels, same landmarks, same mm, header spacing vs the CSV column."""
    h, w = 90, 70
    yy, xx = np.mgrid[0:h, 0:w]
    shown = ((xx * 3 + yy * 2) % 256).astype(np.uint8)  # the picture as displayed: every value 0..255
    shown[0, 0], shown[0, 1] = 0, 255
    stored = (255 - shown).astype(np.uint16) * 8 + 100  # MONOCHROME1: bright bone stored low; 12 bits
    dicom = write_dicom(tmp_path / "in" / "ceph.dcm", stored, photometric="MONOCHROME1", RescaleSlope=0.5,
                        RescaleIntercept=-1024, PixelSpacing=[0.1, 0.1])
    (tmp_path / "png").mkdir()  # the same image as a 16-bit PNG, in display polarity:
    write_image(tmp_path / "png" / "ceph.png", shown.astype(np.uint16) * 8 + 300)
    (tmp_path / "png" / "data.csv").write_text("image,spacing_mm,S_x,S_y,N_x,N_y\nceph.png,0.1,10,20,50,70\n")
    np.testing.assert_array_equal(read_grey(dicom), shown)
    np.testing.assert_array_equal(read_grey(tmp_path / "png" / "ceph.png"), shown)

    letterbox, truth = Letterbox((h, w), (64, 64)), np.array([[12.3, 25.6], [48.2, 66.1]])
    key = KnownLandmarksPredictor.key(torch.from_numpy(letterbox.apply(shown))[None])
    predictor = KnownLandmarksPredictor((64, 64), ("S", "N"), {key: letterbox.forward(truth)})
    results = {}
    for name, inputs, workers in [("dicom", [str(tmp_path / "in")], 1), ("csv", [str(tmp_path / "png" / "data.csv")], 0)]:
        items, issues, _ = resolve_inputs(inputs)  # the DICOM folder as predict lists it; read in a DataLoader worker
        summary = predict_to_folder(predictor, items, tmp_path / name, num_workers=workers, progress=False)
        assert not issues and not summary.failures and len(summary.predicted) == 1
        results[name] = json.loads((tmp_path / name / "ceph.json").read_text())
    assert results["dicom"]["spacing_mm"] == pytest.approx(0.1) and results["csv"]["spacing_mm"] == 0.1
    for landmark in ("S", "N"):
        dcm, png = results["dicom"]["landmarks"][landmark], results["csv"]["landmarks"][landmark]
        assert dcm == png and {"x_mm", "y_mm"} <= set(dcm)
    assert abs(results["dicom"]["landmarks"]["S"]["x_mm"] - 1.23) < 0.05  # 12.3 px at 0.1 mm, to the codec's precision
    assert "warning" not in capsys.readouterr().err
