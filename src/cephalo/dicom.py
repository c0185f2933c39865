"""DICOM cephalograms: the pixels as grey uint8 and the pixel spacing from the header.

pydicom is an optional extra (``pip install "cephalo[dicom]"``), imported inside the functions that need it, so
that PNG/JPEG users never load it. Pixels go through what the file says about its display:

1. the Modality LUT (RescaleSlope / RescaleIntercept, or a Modality LUT Sequence: pydicom's ``apply_modality_lut``),
2. the VOI LUT or window (WindowCenter / WindowWidth: ``apply_voi_lut``) when the file has one, mapped from that
   transform's output range to 0..255; otherwise a min-max stretch of the values to 0..255 (like 16-bit PNGs),
3. MONOCHROME1 (low values bright) inverted, so that bone comes out bright as in MONOCHROME2.

Colour files (RGB; pydicom 3 returns YBR as RGB) are converted to grey with the luma weights.

Errors are :class:`DicomError` (a ``ValueError``) without the file name, which :mod:`cephalo.image_io` adds; a
missing pydicom is an ``ImportError`` naming the pip command.
"""

from __future__ import annotations

import io
import numbers
import os
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

DICOM_EXTENSIONS = (".dcm", ".dicom")
INSTALL_HINT = 'pip install "cephalo[dicom]"'
ANY_DECODER = '"pydicom[pixeldata]"'  # every decoder plugin pydicom 3 knows: all compressed syntaxes
_LIBJPEG, _OPENJPEG, _JPEGLS = ("pylibjpeg pylibjpeg-libjpeg", "python-gdcm"), ("pylibjpeg pylibjpeg-openjpeg",), (
    "pyjpegls", "python-gdcm")
# JPEG family Transfer Syntax UID 1.2.840.10008.1.2.4.<key> -> what to pip install (pydicom 3's decoder plugins):
# JPEG Baseline, Extended, Lossless (70: the usual lossless X-ray syntax), JPEG-LS, JPEG 2000, HTJ2K
DECODER_HINTS = {"50": ("pillow",), "51": _LIBJPEG, "57": _LIBJPEG, "70": _LIBJPEG, "80": _JPEGLS, "81": _JPEGLS,
                 "90": _OPENJPEG, "91": _OPENJPEG, "201": _OPENJPEG, "202": _OPENJPEG, "203": _OPENJPEG}
TOLERANCE = 0.01  # spacings that differ by more than 1 % are called different


class DicomError(ValueError):
    """A DICOM file whose image cannot be read; the message says why (the caller names the file)."""


def _pydicom():
    try:
        import pydicom
    except ImportError:  # also when sys.modules["pydicom"] is None (how the tests take it away)
        raise ImportError(f"reading DICOM images needs pydicom: {INSTALL_HINT}") from None
    return pydicom


def _processing():
    """pydicom's LUT functions: ``pydicom.pixels`` (3.x), else ``pydicom.pixel_data_handlers.util`` (2.x)."""
    _pydicom()
    try:
        from pydicom import pixels
    except ImportError:
        from pydicom.pixel_data_handlers import util as pixels
    return pixels


def pydicom_available() -> bool:
    try:
        return _pydicom() is not None
    except ImportError:
        return False


def is_dicom(data: bytes, path: str | os.PathLike | None = None) -> bool:
    """Whether file bytes are DICOM: the ``DICM`` magic after the 128-byte preamble, or a .dcm/.dicom name
    (which also admits old files without preamble)."""
    return data[128:132] == b"DICM" or (path is not None and Path(path).suffix.lower() in DICOM_EXTENSIONS)


def is_dicom_file(path: str | os.PathLike) -> bool:
    """:func:`is_dicom` for a file: its name, else its first 132 bytes (an unreadable file is not DICOM here)."""
    if Path(path).suffix.lower() in DICOM_EXTENSIONS:
        return True
    try:
        with open(path, "rb") as f:
            return is_dicom(f.read(132))
    except OSError:
        return False


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__  # pydicom's messages span lines and tabs


def _transfer_syntax(ds):
    """The dataset's Transfer Syntax UID; a file without meta header (no preamble) gets the one it was read in."""
    uid = _pydicom().uid
    ts = ds.file_meta.get("TransferSyntaxUID")  # dcmread gives every dataset a file_meta, maybe empty
    if ts is None:
        implicit, little = getattr(ds, "original_encoding", None) or (ds.is_implicit_VR, ds.is_little_endian)
        ts = uid.ImplicitVRLittleEndian if implicit else uid.ExplicitVRLittleEndian if little else uid.ExplicitVRBigEndian
        ds.file_meta.TransferSyntaxUID = ts
    return uid.UID(str(ts))


def _check_decoder(ts) -> None:
    """Refuse compressed pixel data whose decoder is not installed, with what to install (one line)."""
    if not ts.is_encapsulated:
        return
    try:
        from pydicom.pixels import get_decoder  # pydicom 3; pydicom 2's own error is mapped in decode_dicom
        available = get_decoder(ts).is_available
    except ImportError:
        return
    except NotImplementedError:
        raise DicomError(f"its pixel data are compressed as {ts.name} ({ts}), which pydicom cannot decode") from None
    if not available:
        raise DicomError(_no_decoder(ts))


def _no_decoder(ts) -> str:
    """One line: the syntax and what to pip install, the lightest choice first."""
    choices = [*DECODER_HINTS.get(str(ts).removeprefix("1.2.840.10008.1.2.4."), ()), ANY_DECODER]
    others = ", or ".join(f"pip install {c}" for c in choices[1:])
    return (f"its pixel data are compressed as {ts.name} and no decoder for it is installed: pip install {choices[0]}"
            + (f" (or {others})" if others else ""))


def decode_dicom(data: bytes) -> np.ndarray:
    """DICOM file bytes -> ``(H, W)`` uint8 (module docstring: LUTs, window, MONOCHROME1, colour)."""
    pydicom = _pydicom()
    try:  # force: files without preamble and meta header (old ACR-NEMA style) still read
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as e:  # noqa: BLE001 -- pydicom raises many kinds for a damaged header
        raise DicomError(f"not a readable DICOM file ({_one_line(e)})") from None
    if "PixelData" not in ds:
        raise DicomError("a DICOM file without an image (no Pixel Data)")
    ts = _transfer_syntax(ds)
    _check_decoder(ts)
    try:
        pixels = ds.pixel_array
    except Exception as e:  # noqa: BLE001 -- truncated data, missing attributes, a failing decoder
        message = _one_line(e)
        if ts.is_encapsulated and ("missing" in message or "no pixel data handlers" in message):  # pydicom 2
            raise DicomError(_no_decoder(ts)) from None
        raise DicomError(f"its pixel data cannot be decoded ({message})") from None
    return pixels_to_grey(pixels, ds)


def pixels_to_grey(pixels: np.ndarray, ds) -> np.ndarray:
    """Decoded pixels ``(H, W)`` or ``(H, W, 3)`` of dataset ``ds`` -> ``(H, W)`` uint8 as the file is displayed."""
    pixels_module = _processing()
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise DicomError(f"{frames} frames: a cephalogram is one image (export the frame you want)")
    if photometric == "PALETTE COLOR":
        pixels = pixels_module.apply_color_lut(pixels, ds)
    if pixels.ndim == 3:  # colour: pydicom gives RGB
        rgb = np.ascontiguousarray(pixels[..., :3])
        grey = cv2.cvtColor(rgb if rgb.dtype == np.uint8 else rgb.astype(np.float32), cv2.COLOR_RGB2GRAY)
        return grey if grey.dtype == np.uint8 else _stretch(grey, float(grey.min()), float(grey.max()))
    if pixels.ndim != 2:
        raise DicomError(f"unsupported pixel array shape {pixels.shape}")
    values = pixels_module.apply_modality_lut(pixels, ds)
    values, (lo, hi) = _apply_voi(values, ds) or (values, (float(values.min()), float(values.max())))
    grey = _stretch(values, lo, hi)
    return 255 - grey if photometric == "MONOCHROME1" else grey


def _apply_voi(values: np.ndarray, ds) -> tuple[np.ndarray, tuple[float, float]] | None:
    """The VOI LUT or window applied to modality ``values`` and the output range it maps to, or ``None``."""
    apply_voi_lut = _processing().apply_voi_lut
    lut = ds.get("VOILUTSequence")
    has_lut = bool(lut) and lut[0].get("LUTDescriptor") is not None and lut[0].get("LUTData") is not None
    has_window = _floats(ds.get("WindowCenter")) and _floats(ds.get("WindowWidth"))
    if not (has_lut or has_window):
        return None
    try:
        if has_lut:  # pydicom prefers the table too; its entries are what it can output
            first, count = int(lut[0].LUTDescriptor[1]), int(lut[0].LUTDescriptor[0]) or 2**16
            ends = apply_voi_lut(np.arange(first, first + count), ds)
            values = np.round(values).astype(np.int64) if values.dtype.kind == "f" else values
        else:  # inputs far outside the window give the ends of its output range (sigmoid: asymptotically)
            with np.errstate(over="ignore"):
                ends = apply_voi_lut(np.array([-1e30, 1e30]), ds)
        out = apply_voi_lut(values, ds)
    except (ValueError, NotImplementedError, AttributeError, IndexError, TypeError):
        return None  # a broken window or table (width < 1, bad descriptor): fall back to the plain stretch
    return out, (float(np.min(ends)), float(np.max(ends)))


def _stretch(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``values`` with ``lo -> 0`` and ``hi -> 255`` (clipped), uint8; a flat range gives black."""
    if not hi > lo:
        return np.zeros(values.shape, np.uint8)
    scaled = (np.asarray(values, np.float64) - lo) * (255.0 / (hi - lo))
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def _floats(value) -> list[float]:
    """A DICOM numeric value (one or several: a MultiValue) as floats; ``[]`` when absent or not numbers."""
    if value is None or value == "":
        return []
    try:  # DS values are floats (or Decimals), several of them a MultiValue
        return [float(v) for v in ([value] if isinstance(value, (str, bytes, numbers.Number)) else value)]
    except (TypeError, ValueError):
        return []


def spacings_differ(a: float, b: float) -> bool:
    """Whether two spacings differ by more than 1 % of the smaller one."""
    return abs(a - b) > TOLERANCE * min(a, b)


def warn_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def spacing_from_header(ds, where: str = "DICOM", warn: Callable[[str], None] = warn_stderr) -> float | None:
    """Pixel spacing at the patient in mm per pixel (isotropic) from a pydicom dataset, or ``None``.

    PixelSpacing is measured in the patient plane and wins. Otherwise ImagerPixelSpacing, which is measured at the
    detector, is divided by EstimatedRadiographicMagnificationFactor when the file has one (a cephalostat magnifies
    the skull by ~1.1, so detector spacing overstates distances at the patient by that much); without the factor
    it is used as it is. Row and column spacings that differ by more than 1 % are averaged, with a ``warn``ing
    naming ``where``; within 1 % they are averaged silently.
    """
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        pair = [v for v in _floats(ds.get(keyword)) if np.isfinite(v) and v > 0]
        if pair:
            break
    else:
        return None
    row, col = (pair + pair)[:2]  # a single value (malformed, VM 1) means square pixels
    spacing = (row + col) / 2
    if spacings_differ(row, col):
        warn(f"{where}: {keyword} rows {row:g} mm and columns {col:g} mm differ by more than 1 %; cephalo assumes "
             f"square pixels: the header's spacing is taken as their mean, {spacing:g} mm")
    if keyword == "ImagerPixelSpacing":
        factor = [f for f in _floats(ds.get("EstimatedRadiographicMagnificationFactor")) if np.isfinite(f) and f > 0]
        if factor:
            spacing /= factor[0]
    return spacing


def header_spacing_mm(path: str | os.PathLike, warn: Callable[[str], None] = warn_stderr) -> float | None:
    """The header spacing of a DICOM file (:func:`spacing_from_header`), or ``None`` for a file that is not DICOM or
    has none. Reads only the header: the pixel data are neither read nor decoded."""
    if not is_dicom_file(path):
        return None
    pydicom = _pydicom()
    try:
        with open(path, "rb") as f:  # our own handle: any path, as for images
            ds = pydicom.dcmread(f, stop_before_pixels=True, force=True)
    except Exception:  # noqa: BLE001 -- an unreadable header has no spacing; reading its pixels reports the error
        return None
    return spacing_from_header(ds, str(path), warn)
