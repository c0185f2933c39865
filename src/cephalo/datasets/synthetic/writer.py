"""Writing the synthetic dataset on disk in the CSV layout (``landmarks.csv``, ``images/``, ``synthetic.json``):
the per-image seeds, the parameters that identify a dataset, and the idempotent, atomic
:func:`write_synthetic_dataset`."""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
import zlib
from pathlib import Path

import cv2
import numpy as np

from cephalo.console import progress_bar
from cephalo.datasets.csv_dataset import write_landmarks_csv

from .render import render_cephalogram
from .template import (
    DEFAULT_SPACING_MM,
    DEFAULT_SPLITS,
    EXTRA_LANDMARK_DESCRIPTIONS,
    GENERATOR_VERSION,
    REFERENCE_SIZE,
    check_k,
    check_size,
    landmark_names,
    spacing_for_size,
)

# --------------------------------------------------------------------------------------------------------------
# Dataset on disk


def image_seed(seed: int, split: str, index: int) -> int:
    """The render seed of image ``index`` of ``split`` in a dataset of ``seed`` (independent of the split sizes)."""
    seq = np.random.SeedSequence([abs(int(seed)), int(seed < 0), zlib.crc32(split.encode("utf-8")), int(index)])
    return int(seq.generate_state(1, np.uint64)[0])


def _params(splits, image_size, num_landmarks, seed, spacing_mm) -> dict:
    return {
        "generator": "cephalo.datasets.synthetic",
        "generator_version": GENERATOR_VERSION,
        "image_size": [int(image_size[0]), int(image_size[1])],
        "num_landmarks": int(num_landmarks),
        "seed": int(seed),
        "splits": {str(k): int(v) for k, v in splits.items()},
        "spacing_mm": float(spacing_mm),
    }


def _read_params(root: Path) -> dict | None:
    try:
        with open(root / "synthetic.json", encoding="utf-8") as f:
            params = json.load(f)
    except (OSError, ValueError):
        return None
    return params.get("parameters") if isinstance(params, dict) else None


def _is_complete(root: Path, params: dict) -> bool:
    return (root / "landmarks.csv").is_file() and _read_params(root) == params


def write_synthetic_dataset(
    root: Path | str,
    splits: dict[str, int] | None = None,
    image_size: tuple[int, int] = REFERENCE_SIZE,
    num_landmarks: int = 19,
    seed: int = 0,
    spacing_mm: float = DEFAULT_SPACING_MM,
    progress: bool = True,
) -> Path:
    """Write the synthetic dataset in the CSV layout under ``root``; returns the CSV path ``root/landmarks.csv``.

    Layout: ``root/landmarks.csv`` with the header ``image,spacing_mm,split,<name>_x,<name>_y,...`` (image paths
    relative to ``root``, like ``images/train_0000.png``) and ``root/images/<split>_<index:04d>.png``; the
    parameters are kept in ``root/synthetic.json``. ``splits`` maps split names to image counts (default
    48 / 16 / 16 for train / valid / test). Image ``i`` of split ``s`` is rendered with :func:`image_seed`
    ``(seed, s, i)``, so splits never share an image and growing one split leaves the others as they were.

    ``spacing_mm`` is the pixel spacing at the reference size 640 x 512; at another ``image_size`` the CSV holds
    :func:`spacing_for_size` ``(image_size, spacing_mm)`` (the head is the same physical size at any resolution).

    Idempotent and atomic: when ``root`` already holds a dataset made with the same parameters this returns at once;
    otherwise the dataset is built in a temporary sibling folder and moved into place (replacing an older synthetic
    dataset there). A non-empty ``root`` that is not a synthetic dataset is never touched (``FileExistsError``).
    """
    root = Path(root)
    splits = dict(DEFAULT_SPLITS if splits is None else splits)
    h, w = check_size(image_size)
    k = check_k(num_landmarks)
    _check_splits(splits)
    _check_spacing(spacing_mm)
    params = _params(splits, (h, w), k, seed, spacing_mm)
    csv_path = root / "landmarks.csv"
    if _is_complete(root, params):
        return csv_path
    _check_root(root)

    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(root, "tmp")
    try:
        _write_dataset(tmp, params, seed, progress_label=f"synthetic cephalograms -> {root}" if progress else None)
        if _is_complete(root, params):  # another process finished first
            return csv_path
        _replace_folder(root, tmp)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return csv_path


def _check_splits(splits: dict[str, int]) -> None:
    """``ValueError`` unless every split has a plain name (usable in a file name and a CSV cell) and a count >= 0."""
    for name, count in splits.items():
        if not isinstance(name, str) or not name or any(c in name for c in "/\\,\"'\n") or int(count) < 0:
            raise ValueError(f"bad split {name!r}: {count!r} (expected a plain name and a count >= 0)")


def _check_spacing(spacing_mm) -> None:
    try:
        spacing_ok = math.isfinite(float(spacing_mm)) and float(spacing_mm) > 0
    except (TypeError, ValueError):
        spacing_ok = False
    if not spacing_ok:
        raise ValueError(f"spacing_mm must be a positive number, got {spacing_mm!r}")


def _check_root(root: Path) -> None:
    """``FileExistsError`` if ``root`` is a file, or a non-empty folder that holds no synthetic dataset."""
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"{root}: exists and is not a folder")
    if root.is_dir() and any(root.iterdir()) and not (root / "synthetic.json").is_file():
        raise FileExistsError(
            f"{root}: the folder is not empty and holds no synthetic dataset (no synthetic.json); "
            "choose an empty or new folder"
        )


def _sibling(root: Path, kind: str) -> Path:
    """A hidden, unique sibling of ``root`` (``.<name>.<kind>-<pid>-<random>``)."""
    return root.parent / f".{root.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _write_dataset(folder: Path, params: dict, seed: int, progress_label: str | None) -> None:
    """Render every image of ``params`` (from :func:`_params`) into ``folder/images`` and write ``landmarks.csv``
    and ``synthetic.json``; ``seed`` is the dataset seed as the caller gave it (``params`` holds it as an int)."""
    (folder / "images").mkdir(parents=True)
    size, k = tuple(params["image_size"]), params["num_landmarks"]
    names = landmark_names(k)
    pixel_spacing = spacing_for_size(size, params["spacing_mm"])
    jobs = [(split, i) for split, count in params["splits"].items() for i in range(count)]
    images, landmarks = _render_images(folder, jobs, size, k, seed, progress_label)
    write_landmarks_csv(folder / "landmarks.csv", images, landmarks, [pixel_spacing] * len(images), names,
                        extra_columns={"split": [split for split, _ in jobs]})
    info = {
        "parameters": params,
        "landmark_names": list(names),
        "pixel_spacing_mm": pixel_spacing,
        "extra_landmarks": {n: EXTRA_LANDMARK_DESCRIPTIONS.get(n, "a point on a drawn contour") for n in names[19:]},
    }
    with open(folder / "synthetic.json", "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2)


def _render_images(
    folder: Path, jobs: list[tuple[str, int]], size: tuple[int, int], k: int, seed: int, progress_label: str | None
) -> tuple[list[str], list[np.ndarray]]:
    """Render image ``i`` of ``split`` for every ``(split, i)`` of ``jobs`` and save it as
    ``folder/images/<split>_<i:04d>.png``; returns the image paths relative to ``folder`` and the ``(k, 2)``
    landmarks of each. ``progress_label``: the label of a progress bar, ``None`` for none."""
    images, landmarks = [], []
    with progress_bar(total=len(jobs), desc=progress_label or "", unit="img", enabled=progress_label is not None) as bar:
        for split, i in jobs:
            image, points = render_cephalogram(image_seed(seed, split, i), size, k)
            rel = f"images/{split}_{i:04d}.png"
            ok, data = cv2.imencode(".png", image)
            if not ok:
                raise OSError(f"could not encode {rel}")
            with open(folder / rel, "wb") as f:
                f.write(data.tobytes())
            images.append(rel)
            landmarks.append(points)
            bar.update(1)
    return images, landmarks


def _replace_folder(root: Path, new: Path) -> None:
    """Move the folder ``new`` to ``root``, replacing what is there (moved aside first, then deleted)."""
    old = None
    if root.exists():
        old = _sibling(root, "old")
        os.replace(root, old)
    os.replace(new, root)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
