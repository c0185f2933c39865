"""Reading a predictions CSV (the CSV dataset layout) and matching its rows to a dataset's records."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path, PurePath

import numpy as np

from cephalo.datasets.csv_dataset import CsvLayoutError, parse_header
from cephalo.datasets.issues import DataIssue, DatasetError
from cephalo.datasets.record import LandmarkRecord


@dataclass(frozen=True, eq=False)
class LandmarkTable:
    """A CSV in the landmarks layout (a dataset's or a prediction file): ``landmarks (N, K, 2)`` original pixels,
    ``spacing_mm`` None where the cell is empty (unknown)."""

    path: Path
    names: tuple[str, ...]
    images: list[str]
    landmarks: np.ndarray
    spacing_mm: list[float | None]


def read_landmark_table(path: Path | str) -> LandmarkTable:
    """Read every row of a landmarks CSV without opening its images; lists every bad row at once."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: landmarks CSV not found")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise CsvLayoutError(f"{path}: the file is empty")
        header = [c.strip() for c in header]
        names, _ = parse_header(header, path)
        col = {c: i for i, c in enumerate(header)}
        images, rows, spacing, issues = [], [], [], []
        for line_no, row in enumerate(reader, start=2):
            if not any(c.strip() for c in row):
                continue
            where = f"{path}, line {line_no}"
            try:
                values = [float(row[col[f"{n}_{a}"]]) for n in names for a in ("x", "y")]
                cell = row[col["spacing_mm"]].strip()
                spacing.append(float(cell) if cell else None)
            except (ValueError, IndexError):
                issues.append(DataIssue(where, "a landmark coordinate or the spacing is missing or not a number"))
                continue
            if spacing[-1] is not None and not (math.isfinite(spacing[-1]) and spacing[-1] > 0):
                issues.append(DataIssue(where, f"spacing_mm {cell}: must be a positive number of mm per pixel (or "
                                               "empty where it is unknown)"))
                spacing.pop()
                continue
            points = np.array(values, np.float64).reshape(len(names), 2)
            if not np.isfinite(points).all():
                issues.append(DataIssue(where, "non-finite coordinates"))
                spacing.pop()
                continue
            image = row[col["image"]].strip()
            if image in images:
                issues.append(DataIssue(where, f"image {image!r} is listed twice"))
            images.append(image)
            rows.append(points)
    if issues:
        raise DatasetError(issues, "landmarks table", hint="Fix the file; every row needs finite coordinates and a "
                           "positive spacing_mm (or none).")
    landmarks = np.stack(rows) if rows else np.zeros((0, len(names), 2))
    return LandmarkTable(path, names, images, landmarks, spacing)


def read_landmark_json(path: Path | str) -> LandmarkTable:
    """One image's ``<stem>.json`` as ``cephalo predict`` writes it (``image``, ``spacing_mm``, ``landmarks``:
    name -> ``{"x", "y", ...}`` original pixels), as a one-row table; ``ValueError`` naming the file and what is
    wrong where it is not one."""
    path = Path(path)
    return landmark_table_from_json(read_json(path), path)


def read_json(path: Path) -> object:
    """A JSON file's content; ``ValueError`` naming the file where it cannot be read."""
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"{path}: not a readable JSON file ({e})") from None


def landmark_table_from_json(content: object, path: Path) -> LandmarkTable:
    """:func:`read_landmark_json` of content already read from ``path``."""
    entries = content.get("landmarks") if isinstance(content, dict) else None
    if not isinstance(entries, dict) or not entries:
        raise ValueError(f"{path}: not a cephalo predict image JSON (it needs 'landmarks': name -> x, y)")
    try:
        points = np.array([[float(e["x"]), float(e["y"])] for e in entries.values()], np.float64)
        spacing = content.get("spacing_mm")
        spacing = None if spacing is None else float(spacing)
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{path}: every landmark needs numbers x and y, and spacing_mm must be a number or "
                         "null") from None
    if not np.isfinite(points).all():
        raise ValueError(f"{path}: non-finite coordinates")
    if spacing is not None and not (math.isfinite(spacing) and spacing > 0):
        raise ValueError(f"{path}: spacing_mm {spacing:g}: must be a positive number of mm per pixel (or null)")
    image = str(content.get("image") or path.stem)
    return LandmarkTable(path, tuple(entries), [image], points[None], [spacing])


@dataclass(frozen=True, eq=False)
class PredictedFolder:
    """A ``cephalo predict`` output folder read back whole: each image's landmarks ``(K, 2)`` and heatmap peaks
    ``(K,)`` by its ``predictions.csv`` key, landmarks named ``names``."""

    path: Path
    names: tuple[str, ...]
    landmarks: dict[str, np.ndarray]
    peaks: dict[str, np.ndarray]


def read_predicted_folder(folder: Path | str) -> PredictedFolder:
    """Read a predict folder through its ``run.json`` (which maps each key to its ``<stem>.json``); ``ValueError``
    naming the folder and what is missing."""
    import json

    folder = Path(folder)
    try:
        record = json.loads((folder / "run.json").read_text(encoding="utf-8"))
        images = [(e["image"], e["output"]) for e in record["images"]]
    except FileNotFoundError:
        raise ValueError(f"{folder}: no run.json (predict it again with this cephalo version: run.json maps the "
                         "rows of predictions.csv to their per-image JSON files)") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{folder}/run.json: not a cephalo predict record ({e})") from None
    names, landmarks, peaks = None, {}, {}
    for key, stem in images:
        path = folder / f"{stem}.json"
        if not path.is_file():
            continue  # an image that failed, or a run stopped part way: run.json lists what it meant to write
        content = read_json(path)
        table = landmark_table_from_json(content, path)
        try:
            peak = np.array([float(e["confidence"]) for e in content["landmarks"].values()], np.float64)
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path}: every landmark needs its confidence (the heatmap peak)") from None
        if names is not None and table.names != names:
            raise ValueError(f"{path}: landmarks {', '.join(table.names)}, the folder's others have "
                             f"{', '.join(names)}")
        names = table.names
        landmarks[key], peaks[key] = table.landmarks[0], peak
    if names is None:
        raise ValueError(f"{folder}: none of the images run.json lists has its JSON file")
    return PredictedFolder(folder, names, landmarks, peaks)


def read_predictions(path: Path | str) -> tuple[tuple[str, ...], dict[str, np.ndarray]]:
    """Landmark names and ``{image: landmarks (K, 2)}`` from a predictions CSV; lists every bad row at once."""
    table = read_landmark_table(path)
    return table.names, dict(zip(table.images, table.landmarks))


def match_predictions(
    records: list[LandmarkRecord], predictions: dict[str, np.ndarray]
) -> tuple[list[int], list[str], list[str]]:
    """Pair prediction rows with records.

    A row's ``image`` matches a record when it equals the record's ``case_id``, or when the record's image path
    ends with it (``images/001.jpg``, ``001.jpg``), or when its file stem is the record's stem and that is unique.
    Returns ``(record_indices, image_keys, unmatched_keys)``: matched pairs in record order, and rows that match
    nothing.
    """
    by_case = {r.case_id: i for i, r in enumerate(records)}
    by_stem: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        by_stem.setdefault(r.image_path.stem, []).append(i)
    matched: dict[int, str] = {}
    unmatched = []
    for key in predictions:
        index = by_case.get(key)
        if index is None:
            path = PurePath(key.replace("\\", "/"))
            same_stem = by_stem.get(path.stem, [])
            same_tail = [i for i in same_stem if records[i].image_path.parts[-len(path.parts):] == path.parts]
            candidates = same_tail or same_stem
            index = candidates[0] if len(candidates) == 1 else None
        if index is None or index in matched:
            unmatched.append(key)
        else:
            matched[index] = key
    order = sorted(matched)
    return order, [matched[i] for i in order], unmatched
