"""The Aariz dataset (29 landmarks, 7 devices, a CVM stage per image), read from its official layout::

    Aariz/
      cephalogram_machine_mappings.csv           cephalogram_id,machine,pixel_size,image_format,mode
      train/ valid/ test/                        (matched ignoring case: the official loader asks for "Train")
        Cephalograms/<id>.<png|jpg|jpeg|bmp>
        Annotations/
          Cephalometric Landmarks/
            Senior Orthodontists/<id>.json
            Junior Orthodontists/<id>.json
          CVM Stages/<id>.json                   {"cvm_stage": {"value": 1..6, ...}}

Ground truth is the float mean of the senior and junior annotation (the one that exists where only one does);
landmarks are matched by ``symbol``, never by position in the list. Images are not decoded here.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from cephalo.datasets.checks import (
    find_child_case_insensitive,
    images_by_stem,
    landmark_problems,
    spacing_problem,
)
from cephalo.datasets.issues import DataIssue
from cephalo.datasets.record import LandmarkRecord

# The order of the official code's config.py. The real annotations spell subnasale "Sn" (no backtick) while
# soft-tissue nasion and pogonion are "N`" and "Pog`".
AARIZ_LANDMARKS: tuple[str, ...] = (
    "A", "ANS", "B", "Me", "N", "Or", "Pog", "PNS", "Pn", "R", "S", "Ar", "Co", "Gn", "Go",
    "Po", "LPM", "LIT", "LMT", "UPM", "UIA", "UIT", "UMT", "LIA", "Li", "Ls", "N`", "Pog`", "Sn",
)
AARIZ_SPLITS = ("train", "valid", "test")
MAPPING_CSV = "cephalogram_machine_mappings.csv"
ANNOTATORS = ("Senior Orthodontists", "Junior Orthodontists")
CVM_STAGES = range(1, 7)
_CONFLICT = object()  # marks an id listed twice in the mapping CSV with different pixel sizes

# Other spellings of the soft-tissue symbols (apostrophe or typographic prime instead of a backtick, and "Sn`").
_SYMBOL_ALIASES = {"Sn`": "Sn", "Sn'": "Sn"} | {
    name[:-1] + prime: name for name in ("N`", "Pog`") for prime in ("'", "\u2032", "\u2019")
}
_INDEX = {name: i for i, name in enumerate(AARIZ_LANDMARKS)}

LAYOUT = (
    "Expected the Aariz layout: <root>/cephalogram_machine_mappings.csv and <root>/{train,valid,test}/ each with "
    "Cephalograms/<id>.<png|jpg|jpeg|bmp> and Annotations/Cephalometric Landmarks/{Senior,Junior} Orthodontists/<id>.json "
    "(plus the optional Annotations/CVM Stages/<id>.json)."
)


def looks_like_aariz(root: Path) -> bool:
    """Whether ``root`` looks like an Aariz folder: the machine mapping CSV, or a split with Cephalograms/ and Annotations/."""
    root = Path(root)
    if not root.is_dir():
        return False
    mapping = find_child_case_insensitive(root, MAPPING_CSV)
    if mapping is not None and mapping.is_file():
        return True
    for split in AARIZ_SPLITS:
        split_dir = find_child_case_insensitive(root, split)
        if split_dir is not None and split_dir.is_dir() and _is_split_folder(split_dir):
            return True
    return False


def read_aariz(root: Path, split: str) -> tuple[list[LandmarkRecord], list[DataIssue]]:
    """Read one split of Aariz: every good record and a :class:`DataIssue` for every bad item.

    Raises ``FileNotFoundError`` / ``ValueError`` (naming the path and the expected layout) only when the layout
    itself is wrong: no root, unknown split, no split folder, no Cephalograms/ or annotation folders, no mapping CSV.
    """
    root = Path(root)
    split_name = _check_split(root, split)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: Aariz dataset folder not found. {LAYOUT}")
    split_dir = _split_folder(root, split_name)
    spacing_table = _read_mapping(_mapping_csv(root))
    ceph_dir = _required_child(split_dir, "Cephalograms")
    ann_dir = _required_child(split_dir, "Annotations")
    lm_dir = _required_child(ann_dir, "Cephalometric Landmarks")
    annotator_dirs = {name: find_child_case_insensitive(lm_dir, name) for name in ANNOTATORS}
    if not any(d is not None and d.is_dir() for d in annotator_dirs.values()):
        raise FileNotFoundError(
            f"{lm_dir}: neither 'Senior Orthodontists' nor 'Junior Orthodontists' found there. {LAYOUT}"
        )
    cvm_dir = find_child_case_insensitive(ann_dir, "CVM Stages")

    images = images_by_stem(ceph_dir)
    annotations = {name: _json_by_stem(d) for name, d in annotator_dirs.items()}
    cvm_files = _json_by_stem(cvm_dir)

    records: list[LandmarkRecord] = []
    issues: list[DataIssue] = []
    case_ids = sorted(set(images).union(*annotations.values()))
    for case_id in case_ids:
        record = _read_case(case_id, split_name, images.get(case_id, []), annotations, cvm_files, spacing_table,
                            ceph_dir, lm_dir, issues)
        if record is not None:
            records.append(record)
    return records, issues


# ----------------------------------------------------------------------------------------------- one case


def _read_case(
    case_id: str,
    split: str,
    image_paths: list[Path],
    annotations: dict[str, dict[str, list[Path]]],
    cvm_files: dict[str, list[Path]],
    spacing_table: dict[str, tuple[object, str, Path]],
    ceph_dir: Path,
    lm_dir: Path,
    issues: list[DataIssue],
) -> LandmarkRecord | None:
    """One record, or ``None`` after adding an issue for everything wrong with the case."""
    n_issues = len(issues)
    files = {name: _one(found[case_id], issues) for name, found in annotations.items() if case_id in found}
    if not image_paths:
        for path in files.values():
            issues.append(DataIssue(path, f"annotation without an image: no {case_id}.<png|jpg|jpeg|bmp> in {ceph_dir}"))
        return None
    if len(image_paths) > 1:
        names = ", ".join(p.name for p in image_paths)
        issues.append(DataIssue(image_paths[0], f"{len(image_paths)} images with the same id {case_id!r}: {names}; keep one"))
    image_path = image_paths[0]
    if not files:
        issues.append(DataIssue(image_path, f"image without annotation: no {case_id}.json under {lm_dir}/{{Senior,Junior}} Orthodontists"))

    arrays = []
    for path in files.values():
        landmarks, problems = parse_landmark_annotation(path)
        issues.extend(DataIssue(path, p) for p in problems)
        if landmarks is not None:
            arrays.append(landmarks)

    spacing_mm, machine = _spacing(case_id, spacing_table, image_path, issues)
    cvm_stage = _cvm_stage(_one(cvm_files[case_id], issues) if case_id in cvm_files else None, issues)
    if len(issues) > n_issues:
        return None
    return LandmarkRecord(
        image_path=image_path,
        landmarks=np.mean(np.stack(arrays), axis=0),
        spacing_mm=spacing_mm,
        landmark_names=AARIZ_LANDMARKS,
        case_id=case_id,
        split=split,
        cvm_stage=cvm_stage,
        extra={"machine": machine, "annotators": tuple(n.split()[0].lower() for n in files)},
    )


def parse_landmark_annotation(path: Path) -> tuple[np.ndarray | None, list[str]]:
    """``(29, 2)`` float64 landmarks of one annotation JSON in :data:`AARIZ_LANDMARKS` order, or ``None`` and the problems."""
    data, problem = _load_json(path)
    if problem:
        return None, [problem]
    entries = data.get("landmarks") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        found = "a JSON object without 'landmarks'" if isinstance(data, dict) else f"a JSON {type(data).__name__}"
        return None, [f"wrong structure: expected an object with a 'landmarks' list, found {found}"]

    landmarks = np.full((len(AARIZ_LANDMARKS), 2), np.nan)
    seen: set[str] = set()
    filled: list[int] = []  # rows given a point (checked for non-finite / negative values even when other problems exist)
    problems, unknown, duplicate = [], [], []
    for i, entry in enumerate(entries):
        symbol = entry.get("symbol") if isinstance(entry, dict) else None
        if not isinstance(symbol, str):
            problems.append(f"landmarks[{i}]: no 'symbol' string")
            continue
        name = _SYMBOL_ALIASES.get(symbol.strip(), symbol.strip())
        if name not in _INDEX:
            unknown.append(symbol)
            continue
        if name in seen:
            duplicate.append(symbol)
            continue
        seen.add(name)
        xy, problem = _point(entry.get("value"))
        if problem:
            problems.append(f"landmark {symbol!r}: {problem}")
            continue
        landmarks[_INDEX[name]] = xy
        filled.append(_INDEX[name])
    if unknown:
        problems.append("unknown landmark symbol(s): " + ", ".join(map(repr, unknown)))
    if duplicate:
        problems.append("duplicate landmark symbol(s): " + ", ".join(map(repr, duplicate)))
    missing = [n for n in AARIZ_LANDMARKS if n not in seen]
    if missing:
        problems.append(
            f"wrong count: {len(seen)} of the {len(AARIZ_LANDMARKS)} Aariz landmarks; missing: {', '.join(missing)}"
        )
    filled.sort()
    problems += landmark_problems(landmarks[filled], [AARIZ_LANDMARKS[i] for i in filled])
    return (None, problems) if problems else (landmarks, [])


def _point(value: object) -> tuple[tuple[float, float] | None, str | None]:
    if not isinstance(value, dict):
        return None, "no 'value' object with 'x' and 'y'"
    coords = []
    for axis in ("x", "y"):
        if axis not in value:
            return None, f"no {axis!r} in 'value'"
        v = value[axis]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return None, f"{axis!r} is {v!r}, not a number"
        coords.append(float(v))
    return (coords[0], coords[1]), None


def _cvm_stage(path: Path | None, issues: list[DataIssue]) -> int | None:
    """The CVM stage 1..6, ``None`` without a file; adds an issue for a bad file."""
    if path is None:
        return None
    data, problem = _load_json(path)
    if problem is None:
        stage = data.get("cvm_stage") if isinstance(data, dict) else None
        value = stage.get("value") if isinstance(stage, dict) else None
        if isinstance(value, int) and not isinstance(value, bool) and value in CVM_STAGES:
            return value
        problem = (
            "CVM stage must be {\"cvm_stage\": {\"value\": 1..6}}, found "
            + (f"value {value!r}" if isinstance(stage, dict) else "no 'cvm_stage' object")
        )
    issues.append(DataIssue(path, problem))
    return None


def _spacing(
    case_id: str, table: dict[str, tuple[object, str, Path]], image_path: Path, issues: list[DataIssue]
) -> tuple[float, str]:
    entry = table.get(case_id)
    if entry is None:
        issues.append(DataIssue(image_path, f"no row for cephalogram_id {case_id!r} in {MAPPING_CSV}: pixel spacing unknown"))
        return math.nan, ""
    pixel_size, machine, csv_path = entry
    if pixel_size is _CONFLICT:
        problem = "listed more than once with different pixel_size values"
    else:
        problem = spacing_problem(pixel_size)
    if problem:
        issues.append(DataIssue(csv_path, f"cephalogram_id {case_id!r}: {problem}"))
        return math.nan, machine
    return float(pixel_size), machine  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------- files


def _load_json(path: Path) -> tuple[object, str | None]:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as e:
        return None, f"cannot read the file ({e.strerror or e})"
    except UnicodeDecodeError as e:
        return None, f"not UTF-8 text ({e.reason} at byte {e.start})"
    if not text.strip():
        return None, "the file is empty"
    try:
        return json.loads(text), None
    except json.JSONDecodeError as e:
        return None, f"invalid JSON: {e.msg} at line {e.lineno}, column {e.colno}"


def _json_by_stem(folder: Path | None) -> dict[str, list[Path]]:
    """``<id>.json`` files of ``folder`` grouped by id (any case of extension)."""
    found: dict[str, list[Path]] = {}
    if folder is not None and folder.is_dir():
        for p in sorted(folder.iterdir()):
            if p.is_file() and p.suffix.lower() == ".json":
                found.setdefault(p.stem, []).append(p)
    return found


def _one(paths: list[Path], issues: list[DataIssue]) -> Path:
    """The only file of an id; an issue when there are several (``x.json`` and ``x.JSON``)."""
    if len(paths) > 1:
        issues.append(DataIssue(paths[0], f"{len(paths)} files for one id: {', '.join(p.name for p in paths)}; keep one"))
    return paths[0]


def _read_mapping(csv_path: Path) -> dict[str, tuple[object, str, Path]]:
    """``cephalogram_id -> (pixel_size as written, machine, csv_path)``; ids listed twice with different sizes map
    to a marker that :func:`_spacing` reports."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except UnicodeDecodeError as e:
        raise ValueError(f"{csv_path}: not UTF-8 text ({e.reason} at byte {e.start}); restore the file from the Aariz archive") from None
    except (OSError, csv.Error) as e:
        raise ValueError(f"{csv_path}: cannot read the machine mapping CSV ({e}); restore it from the Aariz archive") from None
    header = [c.strip().lower() for c in rows[0]] if rows else []
    missing = [c for c in ("cephalogram_id", "pixel_size") if c not in header]
    if missing:
        raise ValueError(
            f"{csv_path}: missing column(s) {', '.join(missing)}; expected the header "
            f"cephalogram_id,machine,pixel_size,image_format,mode. Restore the file from the Aariz archive."
        )
    i_id, i_size = header.index("cephalogram_id"), header.index("pixel_size")
    i_machine = header.index("machine") if "machine" in header else None
    table: dict[str, tuple[object, str, Path]] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        cells = [c.strip() for c in row] + [""] * len(header)
        case_id, size = cells[i_id], cells[i_size] or None
        machine = cells[i_machine] if i_machine is not None else ""
        if case_id in table and table[case_id][0] != size:
            table[case_id] = (_CONFLICT, machine, csv_path)
        elif case_id not in table:
            table[case_id] = (size, machine, csv_path)
    return table


def _mapping_csv(root: Path) -> Path:
    path = find_child_case_insensitive(root, MAPPING_CSV)
    if path is None or not path.is_file():
        raise FileNotFoundError(
            f"{root / MAPPING_CSV}: not found; it gives each image's pixel spacing (mm per pixel). "
            f"{LAYOUT} Restore the file from the Aariz archive."
        )
    return path


def _check_split(root: Path, split: str) -> str:
    name = split.lower() if isinstance(split, str) else split
    if name not in AARIZ_SPLITS:
        raise ValueError(f"{root}: unknown Aariz split {split!r}; use one of {', '.join(AARIZ_SPLITS)}")
    return name


def _split_folder(root: Path, split: str) -> Path:
    folder = find_child_case_insensitive(root, split)
    if folder is not None and folder.is_dir():
        return folder
    present = sorted(p.name for p in root.iterdir() if p.is_dir())
    hint = ""
    if _is_split_folder(root):
        hint = f" {root} itself looks like a split folder: give its parent folder as the dataset root."
    raise FileNotFoundError(
        f"{root / split}: Aariz split folder not found (looked for {split!r} in any case; folders there: "
        f"{', '.join(present) or 'none'}).{hint} {LAYOUT}"
    )


def _required_child(parent: Path, name: str) -> Path:
    child = find_child_case_insensitive(parent, name)
    if child is None or not child.is_dir():
        raise FileNotFoundError(f"{parent / name}: folder not found. {LAYOUT}")
    return child


def _is_split_folder(folder: Path) -> bool:
    return all(
        (child := find_child_case_insensitive(folder, name)) is not None and child.is_dir()
        for name in ("Cephalograms", "Annotations")
    )
