"""Which images ``cephalo predict`` reads: INPUT arguments (image files, folders of images, datasets) -> images.

:func:`resolve_inputs` gives one :class:`InputImage` per file to predict, with ground truth and pixel spacing
where a dataset (Aariz, ISBI 2015, CSV) gives them; :func:`aligned_truth` puts that ground truth in a model's
landmark order.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cephalo.datasets.csv_dataset import CsvLayoutError
from cephalo.datasets.issues import DataIssue
from cephalo.datasets.sources import (
    DEFAULT_EVAL_SPLIT,
    available_splits,
    collect_records,
    csv_file,
    detect_format,
)
from cephalo.image_io import IMAGE_EXTENSIONS
from cephalo.preprocessing.options import DataOptions


@dataclass
class InputImage:
    """One image to predict.

    ``key`` is its ``image`` column in ``predictions.csv``: the path as given (``scans/001.png``), or for a dataset
    the path relative to the dataset root (the CSV's own entry for a CSV dataset), which ``cephalo evaluate``
    matches to the dataset's records. ``truth`` ``(K, 2)`` original pixels named by ``truth_names``.
    ``spacing_mm`` is the dataset's; an image without one gets ``--spacing_mm``, else its DICOM header's
    (:func:`cephalo.inference.spacing.image_spacing`).
    """

    path: Path
    key: str
    spacing_mm: float | None = None
    truth: np.ndarray | None = None
    truth_names: tuple[str, ...] = ()
    dataset: tuple[str, str, str] | None = None  # (the dataset input as given, its format, the split), if from one


def _is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _folder_images(folder: Path, raw: str, recursive: bool, exclude: Path | None) -> list[InputImage]:
    files = folder.rglob("*") if recursive else folder.iterdir()
    found = sorted(p for p in files if p.is_file() and _is_image_file(p))
    if exclude is not None:  # never predict our own overlays when --out lies inside an input folder
        found = [p for p in found if exclude not in p.resolve().parents]
    return [InputImage(path=p, key=os.path.join(raw, str(p.relative_to(folder)))) for p in found]


def dataset_images(path: str, fmt: str, split: str | None,
                   data: DataOptions | None = None) -> tuple[list[InputImage], list[DataIssue]]:
    """The images of one dataset split, with their ground truth and spacing; bad items come back as issues.
    ``data`` draws the splits of a CSV without a split column and the folds (``--seed``, ``--val_fraction``,
    ``--test_fraction``, ``--fold``, ``--test_fold``: the values training was given)."""
    split = split or DEFAULT_EVAL_SPLIT[fmt]
    spec = dataclasses.replace(data or DataOptions(), dataset_path=path, dataset_format=fmt).dataset_spec()
    if split not in available_splits(spec):
        raise ValueError(f"--split {split}: the {fmt} dataset {path} has splits {', '.join(available_splits(spec))}")
    records, issues = collect_records(spec, split)
    root = csv_file(path).parent if fmt == "csv" else Path(path)
    items = []
    for r in records:
        if fmt in ("csv", "synthetic"):
            key = r.case_id  # the CSV's own image entry: what evaluate matches first
        else:
            try:
                key = r.image_path.relative_to(root).as_posix()
            except ValueError:
                key = str(r.image_path)
        items.append(InputImage(path=r.image_path, key=key, spacing_mm=float(r.spacing_mm),
                                truth=np.asarray(r.landmarks, np.float64), truth_names=tuple(r.landmark_names),
                                dataset=(path, fmt, split)))
    return items, issues


def resolve_inputs(inputs: list[str], dataset_format: str | None = None, split: str | None = None,
                   recursive: bool = False, exclude: Path | None = None,
                   data: DataOptions | None = None) -> tuple[list[InputImage], list[DataIssue], list[str]]:
    """Every image the inputs name, in order, each file once.

    An input is an image file (read whatever its extension), a folder of images (sorted; ``recursive`` walks
    subfolders), or a dataset: a ``.csv`` file, or a folder :func:`detect_format` recognises (``dataset_format``
    forces it). A folder of images is not a dataset: detection fails on it and it is read as images. Returns
    ``(images, issues, notes)``: issues are inputs that do not exist and dataset items that cannot be read,
    notes say how each input was read.
    """
    items: list[InputImage] = []
    issues: list[DataIssue] = []
    notes: list[str] = []
    for raw in inputs:
        p = Path(raw)
        fmt = None
        if not p.exists():
            if raw == "synthetic" or dataset_format == "synthetic":
                fmt = "synthetic"
            else:
                issues.append(DataIssue(raw, "not found (expected an image file, a folder of images or a dataset)"))
                continue
        elif p.is_file():
            if p.suffix.lower() == ".csv":
                fmt = "csv"
            else:
                items.append(InputImage(path=p, key=raw))
                continue
        elif dataset_format:
            fmt = dataset_format
        else:
            try:
                fmt = detect_format(p)
            except ValueError:
                fmt = None  # no dataset layout: a plain folder of images
        if fmt is None:
            found = _folder_images(p, raw, recursive, exclude)
            notes.append(f"{raw}: folder, {len(found)} image(s)" + (" (recursive)" if recursive else ""))
            if not found:
                issues.append(DataIssue(raw, f"no images ({', '.join(IMAGE_EXTENSIONS)}) in the folder"
                                             + ("" if recursive else "; --recursive looks into subfolders")))
            items += found
            continue
        try:
            found, bad = dataset_images(raw, fmt, split, data)
        except CsvLayoutError as e:
            if not (p.is_dir() and dataset_format is None):
                raise
            found, bad = _folder_images(p, raw, recursive, exclude), []  # a folder of images beside an unrelated CSV
            notes.append(f"{raw}: its CSV is not a dataset ({e}); read as a folder of {len(found)} image(s)")
            items += found
            continue
        notes.append(f"{raw}: {fmt} dataset, split {split or DEFAULT_EVAL_SPLIT[fmt]}: {len(found)} image(s) with ground truth")
        items += found
        issues += bad
    return _unique(items), issues, notes


def _unique(items: list[InputImage]) -> list[InputImage]:
    """Each file once (the first mention wins), and distinct ``key`` values (``predictions.csv`` rows)."""
    seen: set[str] = set()
    unique = []
    for item in items:
        real = os.path.normcase(os.path.realpath(item.path))
        if real not in seen:
            seen.add(real)
            unique.append(item)
    counts = Counter(item.key for item in unique)
    for item in unique:
        if counts[item.key] > 1:  # two datasets with the same relative path: the full path tells them apart
            item.key = str(item.path)
    return unique


def aligned_truth(item: InputImage, names: tuple[str, ...]) -> np.ndarray | None:
    """The item's ground truth in the model's landmark order ``(K, 2)``, NaN where the dataset lacks a name."""
    if item.truth is None:
        return None
    index = {n: i for i, n in enumerate(item.truth_names)}
    if not any(n in index for n in names):
        return None
    out = np.full((len(names), 2), np.nan)
    for j, n in enumerate(names):
        if n in index:
            out[j] = item.truth[index[n]]
    return out
