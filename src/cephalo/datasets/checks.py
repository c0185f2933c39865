"""Checks shared by every dataset reader: each returns problems as text instead of raising, so that a reader can
collect all of them before stopping."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from cephalo.image_io import IMAGE_EXTENSIONS


def landmark_problems(landmarks: np.ndarray, names: tuple[str, ...] | list[str]) -> list[str]:
    """Problems with a ``(K, 2)`` landmark array: non-finite or negative coordinates, named by landmark."""
    problems = []
    bad = ~np.isfinite(landmarks).all(axis=1)
    if bad.any():
        problems.append("non-finite coordinates for " + ", ".join(n for n, b in zip(names, bad) if b))
    negative = np.isfinite(landmarks).all(axis=1) & (landmarks < -0.5).any(axis=1)
    if negative.any():
        problems.append("coordinates outside the image (negative) for " + ", ".join(n for n, b in zip(names, negative) if b))
    return problems


def outside_image_problem(
    landmarks: np.ndarray, names: tuple[str, ...] | list[str], image_size: tuple[int, int]
) -> str | None:
    """A problem text if any landmark ``(K, 2)`` lies outside an image of ``(height, width)``, else ``None``.

    The image covers ``[-0.5, width - 0.5] x [-0.5, height - 0.5]`` in pixel-centre coordinates.
    """
    h, w = image_size
    outside = (
        (landmarks[:, 0] < -0.5) | (landmarks[:, 0] > w - 0.5) | (landmarks[:, 1] < -0.5) | (landmarks[:, 1] > h - 0.5)
    )
    if not outside.any():
        return None
    listed = ", ".join(f"{n} ({x:.1f}, {y:.1f})" for n, (x, y), o in zip(names, landmarks, outside) if o)
    return f"landmarks outside the {w}x{h} image: {listed}"


def spacing_problem(spacing_mm: object) -> str | None:
    """A problem text if ``spacing_mm`` is not a positive finite number, else ``None``."""
    try:
        value = float(spacing_mm)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return f"pixel spacing {spacing_mm!r} is not a number"
    if not math.isfinite(value) or value <= 0:
        return f"pixel spacing {spacing_mm!r} must be a positive number of mm per pixel"
    return None


def find_child_case_insensitive(parent: Path, name: str) -> Path | None:
    """The child of ``parent`` called ``name`` ignoring case (``Train`` finds ``train``), or ``None``."""
    exact = parent / name
    if exact.exists():
        return exact
    if not parent.is_dir():
        return None
    matches = sorted(p for p in parent.iterdir() if p.name.lower() == name.lower())
    return matches[0] if matches else None


def images_by_stem(folder: Path) -> dict[str, list[Path]]:
    """Image files in ``folder`` (any supported extension, any case) grouped by stem."""
    found: dict[str, list[Path]] = {}
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS:
                found.setdefault(p.stem, []).append(p)
    return found
