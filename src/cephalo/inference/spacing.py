"""Each image's pixel spacing for ``cephalo predict`` and where it came from: the dataset's, ``--spacing_mm``, a
DICOM header's, or unknown."""

from __future__ import annotations

from collections.abc import Callable

from cephalo.dicom import header_spacing_mm, spacings_differ, warn_stderr
from cephalo.inference.inputs import InputImage


def image_spacing(item: InputImage, spacing_mm: float | None,
                  warn: Callable[[str], None] = warn_stderr) -> float | None:
    """The spacing (mm per pixel) of one image (:func:`spacing_and_source`)."""
    return spacing_and_source(item, spacing_mm, warn)[0]


def spacing_and_source(item: InputImage, spacing_mm: float | None,
                       warn: Callable[[str], None] = warn_stderr) -> tuple[float | None, str]:
    """The spacing (mm per pixel) of one image and where it came from: the dataset's (``item.spacing_mm``, the CSV
    column), else ``spacing_mm`` (``--spacing_mm``), else the DICOM header's (PixelSpacing, or ImagerPixelSpacing
    over the magnification factor: :func:`cephalo.dicom.spacing_from_header`), else ``(None, "unknown")``.

    A given spacing that differs from the header's by more than 1 % is kept, with one ``warn``ing naming both and
    the file. Only a DICOM's header is read, never its pixels again.
    """
    given, source = (item.spacing_mm, "dataset") if item.spacing_mm is not None else (spacing_mm, "--spacing_mm")
    header = header_spacing_mm(item.path, warn)
    if given is None:
        return (header, "DICOM header") if header is not None else (None, "unknown")
    if header is not None and spacings_differ(given, header):
        named = "the dataset's spacing_mm" if source == "dataset" else source
        warn(f"{item.path}: {named} {given:g} mm differs from the DICOM header's {header:g} mm by more than 1 %; "
             f"using {given:g} mm")
    return given, source
