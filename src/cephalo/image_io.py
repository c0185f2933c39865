"""Reading cephalograms as greyscale uint8, whatever their file format, bit depth or path.

PNG, JPEG, BMP and TIFF go through OpenCV; DICOM (``.dcm``/``.dicom``, or any name with the ``DICM`` magic at byte
128) through :mod:`cephalo.dicom`, which needs the optional pydicom (``pip install "cephalo[dicom]"``).
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from cephalo.atomic import write_bytes
from cephalo.dicom import DICOM_EXTENSIONS, DicomError, decode_dicom, is_dicom

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", *DICOM_EXTENSIONS)


class ImageReadError(ValueError):
    """An image file that cannot be read as a cephalogram; the message names the file."""


def to_grey_uint8(image: np.ndarray) -> np.ndarray:
    """Convert a decoded image ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)`` of any integer depth to ``(H, W)`` uint8.

    Colour images are converted with the usual luma weights (cephalograms saved as RGB have three equal channels).
    Deeper images (16-bit X-rays, which often use only 12 bits) are stretched linearly from their own min..max to
    0..255, so a 12-bit image does not come out nearly black.
    """
    if image.ndim == 3:
        code = {3: cv2.COLOR_BGR2GRAY, 4: cv2.COLOR_BGRA2GRAY}.get(image.shape[2])
        if image.shape[2] in (1, 2):  # grey, or grey + alpha
            image = image[:, :, 0]
        elif code is None:
            raise ValueError(f"unsupported number of channels: {image.shape[2]}")
        else:
            image = cv2.cvtColor(image, code)
    if image.ndim != 2:
        raise ValueError(f"unsupported image shape {image.shape}")
    if image.dtype == np.uint8:
        return image
    values = image.astype(np.float32)
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros(image.shape, np.uint8)
    return np.round((values - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def read_bytes(path: str | os.PathLike) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def truncation_problem(data: bytes) -> str | None:
    """Truncated JPEG and BMP files still decode (the missing part comes out grey): catch them by their structure."""
    if data[:3] == b"\xff\xd8\xff" and b"\xff\xd9" not in data[-4096:]:
        return "truncated JPEG (no end-of-image marker): the file is incomplete"
    if data[:2] == b"BM" and len(data) >= 6 and int.from_bytes(data[2:6], "little") > len(data):
        return f"truncated BMP ({len(data)} of {int.from_bytes(data[2:6], 'little')} bytes)"
    return None


def decode_grey(data: bytes, path: str | os.PathLike = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes to ``(H, W)`` uint8; raises :class:`ImageReadError` naming ``path``.

    DICOM (by its magic, or a .dcm/.dicom ``path``) goes to :func:`cephalo.dicom.decode_dicom`; without pydicom
    that is an ``ImportError`` naming the file and the pip command (the environment's fault, not the file's: it
    stops a command once instead of marking every DICOM bad).
    """
    if len(data) == 0:
        raise ImageReadError(f"{path}: the file is empty (0 bytes)")
    if is_dicom(data, path):
        try:
            return decode_dicom(data)
        except DicomError as e:
            raise ImageReadError(f"{path}: {e}") from None
        except ImportError as e:
            raise ImportError(f"{path}: {e}") from None
    if problem := truncation_problem(data):
        raise ImageReadError(f"{path}: {problem}")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageReadError(f"{path}: not a readable image (corrupt, truncated or an unsupported format)")
    try:
        return to_grey_uint8(image)
    except ValueError as e:
        raise ImageReadError(f"{path}: {e}") from None


def read_grey(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as ``(H, W)`` uint8.

    Goes through ``np.fromfile``-style byte reading + ``cv2.imdecode`` instead of ``cv2.imread`` because
    ``cv2.imread`` cannot open non-ASCII paths on Windows.
    """
    try:
        data = read_bytes(path)
    except FileNotFoundError:
        raise ImageReadError(f"{path}: image file not found") from None
    except OSError as e:
        raise ImageReadError(f"{path}: cannot read the file ({e.strerror or e})") from None
    return decode_grey(data, path)


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an image (format from the extension) atomically, for any path (see :func:`read_grey`)."""
    path = Path(path)
    ok, encoded = cv2.imencode(path.suffix, image)
    if not ok:
        raise ValueError(f"{path}: OpenCV could not encode an image of shape {image.shape} as {path.suffix}")
    write_bytes(path, encoded.tobytes())
