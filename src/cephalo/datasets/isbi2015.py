"""The ISBI 2015 challenge dataset (19 landmarks, 1935 x 2400 px, 0.1 mm per pixel), read from its official layout::

    RawImage/TrainingData/001.bmp ... 150.bmp        split "train"
    RawImage/Test1Data/151.bmp ... 300.bmp           split "test1"
    RawImage/Test2Data/301.bmp ... 400.bmp           split "test2"
    AnnotationsByMD/400_senior/001.txt ... 400.txt
    AnnotationsByMD/400_junior/001.txt ... 400.txt

Each annotation has 19 lines ``x,y`` in :data:`ISBI2015_LANDMARKS` order, then 8 class-label lines (ignored).
Ground truth is the float mean of the annotators whose file exists. Images are not decoded here.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from cephalo.datasets.checks import find_child_case_insensitive, images_by_stem, landmark_problems
from cephalo.datasets.issues import DataIssue
from cephalo.datasets.record import LandmarkRecord

ISBI2015_LANDMARKS: tuple[str, ...] = (
    "S", "N", "Or", "Po", "A", "B", "Pog", "Me", "Gn", "Go", "LIT", "UIT", "UL", "LL", "Sn", "PogS", "PNS", "ANS", "Ar",
)
ISBI2015_SPLITS = ("train", "test1", "test2")
ISBI2015_SPLIT_FOLDERS = {"train": "TrainingData", "test1": "Test1Data", "test2": "Test2Data"}
ISBI2015_SPACING_MM = 0.1
ANNOTATORS = ("400_senior", "400_junior")

LAYOUT = (
    "Expected the ISBI 2015 layout: <root>/RawImage/{TrainingData,Test1Data,Test2Data}/<NNN>.bmp and "
    "<root>/AnnotationsByMD/{400_senior,400_junior}/<NNN>.txt."
)
_SEPARATOR = re.compile(r"[,;\s]+")


def looks_like_isbi2015(root: Path) -> bool:
    """Whether ``root`` has the ISBI 2015 folders ``RawImage/`` and ``AnnotationsByMD/`` (any case)."""
    root = Path(root)
    if not root.is_dir():
        return False
    children = [find_child_case_insensitive(root, name) for name in ("RawImage", "AnnotationsByMD")]
    return all(c is not None and c.is_dir() for c in children)


def read_isbi2015(root: Path, split: str) -> tuple[list[LandmarkRecord], list[DataIssue]]:
    """Read one split of ISBI 2015: every good record and a :class:`DataIssue` for every bad item.

    Raises ``FileNotFoundError`` / ``ValueError`` (naming the path and the expected layout) only when the layout
    itself is wrong: no root, unknown split, no RawImage/<split folder>, no annotation folders.
    """
    root = Path(root)
    name = split.lower() if isinstance(split, str) else split
    if name not in ISBI2015_SPLITS:
        raise ValueError(
            f"{root}: unknown ISBI 2015 split {split!r}; use one of "
            + ", ".join(f"{s} ({ISBI2015_SPLIT_FOLDERS[s]})" for s in ISBI2015_SPLITS)
        )
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: ISBI 2015 dataset folder not found. {LAYOUT}")
    image_dir = _required_child(_required_child(root, "RawImage"), ISBI2015_SPLIT_FOLDERS[name])
    ann_root = _required_child(root, "AnnotationsByMD")
    ann_dirs = [d for a in ANNOTATORS if (d := find_child_case_insensitive(ann_root, a)) is not None and d.is_dir()]
    if not ann_dirs:
        raise FileNotFoundError(f"{ann_root}: neither '400_senior' nor '400_junior' found there. {LAYOUT}")
    annotations = [_txt_by_stem(d) for d in ann_dirs]

    records, issues = [], []
    for case_id, image_paths in images_by_stem(image_dir).items():
        n_issues = len(issues)
        if len(image_paths) > 1:
            names = ", ".join(p.name for p in image_paths)
            issues.append(DataIssue(image_paths[0], f"{len(image_paths)} images with the same number {case_id!r}: {names}; keep one"))
        files = {d.name.split("_")[-1]: found[case_id] for d, found in zip(ann_dirs, annotations) if case_id in found}
        if not files:
            issues.append(DataIssue(
                image_paths[0], f"image without annotation: no {case_id}.txt in {' or '.join(str(d) for d in ann_dirs)}"
            ))
        arrays = []
        for paths in files.values():
            if len(paths) > 1:
                issues.append(DataIssue(paths[0], f"{len(paths)} files for one number: {', '.join(p.name for p in paths)}"))
            landmarks, problems = parse_isbi_annotation(paths[0])
            issues.extend(DataIssue(paths[0], p) for p in problems)
            if landmarks is not None:
                arrays.append(landmarks)
        if len(issues) > n_issues:
            continue
        records.append(LandmarkRecord(
            image_path=image_paths[0],
            landmarks=np.mean(np.stack(arrays), axis=0),
            spacing_mm=ISBI2015_SPACING_MM,
            landmark_names=ISBI2015_LANDMARKS,
            case_id=case_id,
            split=name,
            extra={"annotators": tuple(files)},
        ))
    return records, issues


def parse_isbi_annotation(path: Path) -> tuple[np.ndarray | None, list[str]]:
    """``(19, 2)`` float64 landmarks from the first 19 non-blank lines of an annotation, or ``None`` and the problems."""
    k = len(ISBI2015_LANDMARKS)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as e:
        return None, [f"cannot read the file ({e.strerror or e})"]
    except UnicodeDecodeError as e:
        return None, [f"not a text file ({e.reason} at byte {e.start})"]
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if len(lines) < k:
        return None, [f"only {len(lines)} non-blank line(s), expected {k} landmark lines 'x,y' (then 8 class labels)"]
    landmarks = np.empty((k, 2))
    bad = []
    for i, (n, line) in enumerate(lines[:k]):
        parts = [p for p in _SEPARATOR.split(line) if p]
        try:
            if len(parts) != 2:
                raise ValueError
            landmarks[i] = float(parts[0]), float(parts[1])
        except ValueError:
            bad.append(f"line {n} ({ISBI2015_LANDMARKS[i]}): {line[:40]!r}")
    if bad:
        return None, [f"expected 'x,y' numbers in the first {k} lines; bad: " + "; ".join(bad)]
    problems = landmark_problems(landmarks, ISBI2015_LANDMARKS)
    return (None, problems) if problems else (landmarks, [])


def _txt_by_stem(folder: Path) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() == ".txt":
            found.setdefault(p.stem, []).append(p)
    return found


def _required_child(parent: Path, name: str) -> Path:
    child = find_child_case_insensitive(parent, name)
    if child is None or not child.is_dir():
        present = sorted(p.name for p in parent.iterdir() if p.is_dir()) if parent.is_dir() else []
        raise FileNotFoundError(
            f"{parent / name}: folder not found (folders in {parent}: {', '.join(present) or 'none'}). {LAYOUT}"
        )
    return child
