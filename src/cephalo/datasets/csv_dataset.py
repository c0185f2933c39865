"""The plain CSV layout: ``image, spacing_mm[, split], <name>_x, <name>_y, ...``.

It is how users bring their own data and the layout of cephalo's predictions, so ``cephalo evaluate`` reads
both. Image paths are relative to the CSV's folder (absolute paths work too). An optional ``split`` column
fixes the split of each row; without it, splits are drawn by a seeded shuffle.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np

from cephalo.atomic import atomic_open
from cephalo.datasets.checks import landmark_problems, spacing_problem
from cephalo.datasets.issues import DataIssue
from cephalo.datasets.record import LandmarkRecord


class CsvLayoutError(ValueError):
    """The CSV header does not follow the layout; the message names the file and the expected header."""


def parse_header(header: list[str], path: Path) -> tuple[tuple[str, ...], bool]:
    """Landmark names from the ``<name>_x, <name>_y`` column pairs, and whether a ``split`` column exists."""
    expected = "expected a header like: image,spacing_mm,S_x,S_y,N_x,N_y,... (an optional 'split' column may follow spacing_mm)"
    columns = [c.strip() for c in header]
    missing = [c for c in ("image", "spacing_mm") if c not in columns]
    if missing:
        raise CsvLayoutError(f"{path}: missing column(s) {', '.join(missing)}; {expected}")
    coords = [c for c in columns if c not in ("image", "spacing_mm", "split")]
    names, problems = [], []
    for x_col, y_col in zip(coords[::2], coords[1::2]):
        if not (x_col.endswith("_x") and y_col.endswith("_y") and x_col[:-2] == y_col[:-2]):
            problems.append(f"{x_col!r}, {y_col!r}")
        names.append(x_col[:-2])
    if len(coords) % 2:
        problems.append(f"{coords[-1]!r} has no partner")
    if problems or not names:
        raise CsvLayoutError(
            f"{path}: landmark columns must come in <name>_x,<name>_y pairs; bad: {'; '.join(problems) or 'none found'}; {expected}"
        )
    if len(set(names)) != len(names):
        raise CsvLayoutError(f"{path}: duplicate landmark names in the header")
    return tuple(names), "split" in columns


def seeded_split(keys: list[str], seed: int, val_fraction: float, test_fraction: float) -> dict[str, str]:
    """Assign each key to train/valid/test by a seeded shuffle of the sorted keys (stable across row order)."""
    order = sorted(keys)
    rng = np.random.default_rng(seed)
    rng.shuffle(order)
    n_val, n_test = round(len(order) * val_fraction), round(len(order) * test_fraction)
    splits = ["valid"] * n_val + ["test"] * n_test + ["train"] * (len(order) - n_val - n_test)
    return dict(zip(order, splits))


def seeded_folds(keys: list[str], seed: int, folds: int) -> dict[str, int]:
    """Assign each key to one of ``folds`` folds (1..folds) by a seeded shuffle of the sorted keys: the folds
    differ in size by at most one, and a key's fold depends only on the keys, the seed and ``folds``."""
    order = sorted(keys)
    np.random.default_rng(seed).shuffle(order)
    return {key: 1 + i % folds for i, key in enumerate(order)}


def read_csv_dataset(
    csv_path: Path | str,
    split: str = "all",
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    seed: int = 0,
) -> tuple[list[LandmarkRecord], list[DataIssue]]:
    """Read a CSV dataset; returns the good records of ``split`` and an issue for every bad row.

    ``split="all"`` returns every row. Without a ``split`` column, rows are split by :func:`seeded_split`.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path}: CSV file not found")
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except UnicodeDecodeError as e:
        raise CsvLayoutError(f"{csv_path}: not UTF-8 text ({e.reason} at byte {e.start}); save the CSV as UTF-8") from None
    if not rows:
        raise CsvLayoutError(f"{csv_path}: the file is empty")
    header = [c.strip() for c in rows[0]]
    names, has_split = parse_header(header, csv_path)
    col = {c: i for i, c in enumerate(header)}
    root = csv_path.parent

    issues: list[DataIssue] = []
    parsed = []
    for line_no, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        where = f"{csv_path}, line {line_no}"
        if len(row) != len(header):
            issues.append(DataIssue(where, f"{len(row)} values for {len(header)} columns"))
            continue
        image = row[col["image"]].strip()
        if not image:
            issues.append(DataIssue(where, "empty image path"))
            continue
        image_path = Path(image) if os.path.isabs(image) else root / image
        problems = []
        if not image_path.is_file():
            problems.append(f"image file not found: {image_path}")
        spacing = row[col["spacing_mm"]].strip()
        if (p := spacing_problem(spacing if spacing else None)) is not None:
            problems.append(p if spacing else "missing pixel spacing (spacing_mm is empty)")
        values = []
        for name in names:
            for axis in ("x", "y"):
                cell = row[col[f"{name}_{axis}"]].strip()
                try:
                    values.append(float(cell))
                except ValueError:
                    values.append(math.nan)
                    problems.append(f"{name}_{axis} = {cell!r} is not a number")
        landmarks = np.array(values, dtype=np.float64).reshape(len(names), 2)
        if not any("is not a number" in p for p in problems):
            problems += landmark_problems(landmarks, names)
        if problems:
            issues.append(DataIssue(f"{where} ({image})", "; ".join(problems)))
            continue
        row_split = row[col["split"]].strip().lower() if has_split else ""
        parsed.append((image, image_path, float(spacing), landmarks, row_split))

    keys = [image for image, *_ in parsed]
    if len(set(keys)) != len(keys):
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        issues.append(DataIssue(csv_path, f"images listed more than once: {', '.join(dupes[:10])}"))
    assigned = {} if has_split else seeded_split(keys, seed, val_fraction, test_fraction)
    records = []
    for image, image_path, spacing, landmarks, row_split in parsed:
        record_split = row_split if has_split else assigned[image]
        if split != "all" and record_split != split:
            continue
        records.append(
            LandmarkRecord(
                image_path=image_path,
                landmarks=landmarks,
                spacing_mm=spacing,
                landmark_names=names,
                case_id=image,
                split=record_split,
            )
        )
    return records, issues


def write_landmarks_csv(
    path: Path | str,
    images: list[str],
    landmarks: np.ndarray | list[np.ndarray],
    spacing_mm: list[float | None] | np.ndarray,
    landmark_names: tuple[str, ...] | list[str],
    extra_columns: dict[str, list] | None = None,
) -> None:
    """Write ``landmarks (N, K, 2)`` in the CSV layout (atomically): the layout ``read_csv_dataset`` reads.

    A spacing of ``None`` or NaN (unknown, as for predictions on plain images) is written as an empty cell.
    """
    path = Path(path)
    extra_columns = extra_columns or {}
    header = ["image", "spacing_mm", *extra_columns] + [f"{n}_{a}" for n in landmark_names for a in ("x", "y")]
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for i, image in enumerate(images):
            coords = [f"{v:.3f}" for v in np.asarray(landmarks[i], dtype=np.float64).reshape(-1)]
            extras = [values[i] for values in extra_columns.values()]
            writer.writerow([image, _spacing_cell(spacing_mm[i]), *extras, *coords])


def _spacing_cell(spacing: float | None) -> str:
    """``0.1`` -> ``"0.1"``; an unknown spacing (``None`` or NaN) -> an empty cell."""
    if spacing is None or math.isnan(float(spacing)):
        return ""
    return f"{float(spacing):g}"
