"""Finding and reading a dataset: format detection, split names, and one entry point for every source."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from cephalo.datasets.csv_dataset import seeded_folds, seeded_split
from cephalo.datasets.issues import DataIssue, OnBad, resolve_issues
from cephalo.datasets.record import LandmarkRecord

FORMATS = ("aariz", "isbi2015", "csv", "synthetic")
SPLITS = {
    "aariz": ("train", "valid", "test"),
    "isbi2015": ("train", "test1", "test2"),
    "csv": ("train", "valid", "test", "all"),
    "synthetic": ("train", "valid", "test"),
}
# The split a command scores or predicts when none is given: the held-out test split (ISBI 2015: Test1), every row
# of a CSV; evaluate, predict and baseline agree on it, so a predict output is scored with no --split either.
DEFAULT_EVAL_SPLIT = {"aariz": "test", "isbi2015": "test1", "csv": "all", "synthetic": "test"}
SYNTHETIC_NAME = "synthetic"


def default_cache_dir() -> Path:
    """``$CEPHALO_CACHE`` or the user's cache folder (``~/.cache/cephalo``, ``%LOCALAPPDATA%\\cephalo`` on Windows)."""
    if env := os.environ.get("CEPHALO_CACHE"):
        return Path(env)
    if os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "cephalo"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cephalo"


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset is and how to read it.

    ``path`` is a dataset folder, a CSV file, or ``synthetic`` (the built-in dataset, generated on first use).
    """

    path: str
    format: str | None = None
    seed: int = 0
    val_fraction: float = 0.2
    test_fraction: float = 0.0
    synthetic_size: tuple[int, int] = (640, 512)
    synthetic_landmarks: int = 19
    synthetic_images: tuple[int, int, int] = (48, 16, 16)
    cache_dir: Path | None = None
    fold: tuple[int, int] | None = None  # (k, n): 'valid' is fold k of the training split, 'train' the other folds
    # (k, n): 'test' is fold k of the training split; 'train' and 'valid' (val_fraction) are drawn from the others
    test_fold: tuple[int, int] | None = None

    @property
    def resolved_format(self) -> str:
        return self.format or detect_format(self.path)


def detect_format(path: str | Path) -> str:
    """Guess the dataset format from ``path``; the error says which layouts were looked for."""
    if str(path) == SYNTHETIC_NAME:
        return "synthetic"
    from cephalo.datasets.aariz import looks_like_aariz
    from cephalo.datasets.isbi2015 import looks_like_isbi2015

    p = Path(path)
    if p.is_file() and p.suffix.lower() == ".csv":
        return "csv"
    if not p.exists():
        raise FileNotFoundError(
            f"{p}: dataset not found. Give a dataset folder (Aariz or ISBI 2015 layout), a CSV file, "
            f"or '{SYNTHETIC_NAME}' for the built-in synthetic dataset."
        )
    if (p / "synthetic.json").is_file():
        return "csv"  # a generated synthetic dataset is read as it is, never regenerated
    if looks_like_aariz(p):
        return "aariz"
    if looks_like_isbi2015(p):
        return "isbi2015"
    if p.is_dir() and len(list(p.glob("*.csv"))) == 1:
        return "csv"
    raise ValueError(
        f"{p}: cannot tell the dataset format. Expected an Aariz folder (cephalogram_machine_mappings.csv, "
        f"train/valid/test with Cephalograms/ and Annotations/), an ISBI 2015 folder (RawImage/, AnnotationsByMD/), "
        f"or a folder with exactly one CSV (image,spacing_mm,<name>_x,<name>_y,...). "
        f"Pass --dataset_format {'|'.join(FORMATS)} to say which."
    )


def csv_file(path: str | Path) -> Path:
    """The CSV of a CSV dataset given as the file itself or as its folder."""
    p = Path(path)
    if p.is_dir():
        csvs = sorted(p.glob("*.csv"))
        if len(csvs) != 1:
            raise ValueError(f"{p}: expected exactly one .csv file in the folder, found {len(csvs)}; give the CSV file itself")
        return csvs[0]
    return p


def synthetic_root(spec: DatasetSpec) -> Path:
    """The folder of the built-in synthetic dataset, generated there on first use."""
    from cephalo.datasets.synthetic import write_synthetic_dataset

    if spec.path == SYNTHETIC_NAME:
        (h, w), k, (n_train, n_val, n_test) = spec.synthetic_size, spec.synthetic_landmarks, spec.synthetic_images
        name = f"{h}x{w}_k{k}_n{n_train}-{n_val}-{n_test}_seed{spec.seed}"
        root = (spec.cache_dir or default_cache_dir()) / "synthetic" / name
    else:
        root = Path(spec.path)
    splits = dict(zip(("train", "valid", "test"), spec.synthetic_images))
    write_synthetic_dataset(root, splits=splits, image_size=spec.synthetic_size,
                            num_landmarks=spec.synthetic_landmarks, seed=spec.seed)
    return root


def available_splits(spec: DatasetSpec) -> tuple[str, ...]:
    """The splits of ``spec``'s format, with ``valid`` under ``spec.fold`` and ``valid`` and ``test`` under
    ``spec.test_fold`` (drawn from the training split)."""
    splits = SPLITS[spec.resolved_format]
    return (*splits, *(s for s in _drawn_splits(spec) if s not in splits))


def _drawn_splits(spec: DatasetSpec) -> tuple[str, ...]:
    """The splits a fold option draws from the training split besides ``train``: the held-out fold last."""
    return ("valid", "test") if spec.test_fold else ("valid",) if spec.fold else ()


def collect_records(spec: DatasetSpec, split: str) -> tuple[list[LandmarkRecord], list[DataIssue]]:
    """Read one split: every good record and an issue for every bad item (nothing raised for bad items).

    With ``spec.fold = (k, n)``, ``train`` and ``valid`` are folds of the dataset's training split (a seeded
    n-fold split of its records): ``valid`` is fold k, ``train`` the others. With ``spec.test_fold = (k, n)``,
    ``test`` is fold k and ``valid`` a seeded ``val_fraction`` of the other folds, ``train`` the rest: a nested
    split, whose held-out fold neither trains nor picks the best epoch. Every command reading the same options
    gets the same folds; the dataset's own split of that name is not read.
    """
    fmt = spec.resolved_format
    if fmt not in FORMATS:
        raise ValueError(f"unknown dataset format {fmt!r}; expected one of {', '.join(FORMATS)}")
    drawn = _drawn_splits(spec)
    if drawn and split in ("train", *drawn):
        k, n = spec.fold or spec.test_fold
        records, issues = _read_split(spec, fmt, "train")
        if n > len(records):  # some folds would be empty: fold k might hold nothing, or hold what another n holds
            flag = "fold" if spec.fold else "test_fold"
            raise ValueError(f"--{flag} {k}/{n}: the training split of {spec.path} has {len(records)} usable images, "
                             f"too few for {n} folds; use at most {len(records)} folds")
        fold_of = seeded_folds([r.case_id for r in records], spec.seed, n)
        rest = [r for r in records if fold_of[r.case_id] != k]
        if split == drawn[-1]:  # the held-out fold
            chosen = [r for r in records if fold_of[r.case_id] == k]
        elif spec.fold:
            chosen = rest
        else:  # --test_fold: validation is drawn from the other folds
            role = seeded_split([r.case_id for r in rest], spec.seed, spec.val_fraction, 0.0)
            chosen = [r for r in rest if role[r.case_id] == split]
        return [dataclasses.replace(r, split=split) for r in chosen], issues
    if split not in SPLITS[fmt]:
        raise ValueError(f"{spec.path}: split {split!r} does not exist in the {fmt} format; splits: "
                         f"{', '.join(available_splits(spec))}")
    return _read_split(spec, fmt, split)


def _read_split(spec: DatasetSpec, fmt: str, split: str) -> tuple[list[LandmarkRecord], list[DataIssue]]:
    if fmt == "aariz":
        from cephalo.datasets.aariz import read_aariz

        return read_aariz(Path(spec.path), split)
    if fmt == "isbi2015":
        from cephalo.datasets.isbi2015 import read_isbi2015

        return read_isbi2015(Path(spec.path), split)
    from cephalo.datasets.csv_dataset import read_csv_dataset

    path = csv_file(synthetic_root(spec) if fmt == "synthetic" else spec.path)
    # under a fold, a CSV's training split holds every row but the test rows: the folds split it
    val_fraction = 0.0 if spec.fold or spec.test_fold else spec.val_fraction
    return read_csv_dataset(path, split, val_fraction, spec.test_fraction, spec.seed)


def load_records(spec: DatasetSpec, split: str, on_bad: OnBad = "error") -> list[LandmarkRecord]:
    """Read one split and stop on bad items (listing all of them), or skip them with a warning."""
    records, issues = collect_records(spec, split)
    resolve_issues(issues, on_bad, context=f"{spec.resolved_format} dataset {spec.path} ({split})")
    return records
