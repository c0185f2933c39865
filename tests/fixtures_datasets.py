"""Builders of tiny Aariz and ISBI 2015 datasets in the official layouts, for the reader tests.

Aariz annotations start from the real example annotation (``shared/reference/aariz-example-annotation.json``; an
embedded copy of its symbols and coordinates is used where that file is not around), scaled by 1/30 so that every
landmark lies inside a 64 x 80 (width x height) image.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import random
from pathlib import Path

import cv2
import numpy as np

IMAGE_WIDTH, IMAGE_HEIGHT = 64, 80
AARIZ_SCALE = 1 / 30
SENIOR_JUNIOR_OFFSET = (1, -1)  # junior = senior + offset (whole pixels, as in the real files), so the mean is x.5

_EXAMPLE_NAME = "aariz-example-annotation.json"
# (symbol, x, y) of the real example annotation, in its file order: used when the reference file is absent.
_EXAMPLE_POINTS = [
    ("A", 1313, 1133), ("ANS", 1335, 1065), ("B", 1301, 1534), ("Me", 1263, 1761), ("N", 1165, 556),
    ("Or", 1043, 883), ("Pog", 1325, 1697), ("PNS", 790, 1217), ("Pn", 1579, 921), ("R", 499, 1352),
    ("S", 479, 888), ("Ar", 407, 1204), ("Co", 392, 1064), ("Gn", 1310, 1746), ("Go", 581, 1541),
    ("Po", 240, 1027), ("LPM", 1169, 1390), ("LIT", 1339, 1321), ("LMT", 1069, 1394), ("UPM", 1157, 1381),
    ("UIA", 1278, 1160), ("UIT", 1423, 1375), ("UMT", 1069, 1380), ("LIA", 1239, 1578), ("Li", 1538, 1437),
    ("Ls", 1547, 1239), ("N`", 1214, 546), ("Pog`", 1430, 1656), ("Sn", 1486, 1069),
]


def example_annotation() -> dict:
    """The real Aariz example annotation (or a copy rebuilt from the embedded points)."""
    here = Path(__file__).resolve().parent
    candidates = [here.parent / "shared" / "reference", here.parent.parent / "shared" / "reference"]
    if env := os.environ.get("CEPHALO_REFERENCE_DIR"):
        candidates.insert(0, Path(env))
    for folder in candidates:
        if (folder / _EXAMPLE_NAME).is_file():
            return json.loads((folder / _EXAMPLE_NAME).read_text(encoding="utf-8"))
    return {
        "ceph_id": "cks2ip8fq2a0j0yufdfssbc09",
        "landmarks": [
            {"landmark_id": f"lm{i}", "title": s, "symbol": s, "value": {"x": x, "y": y}}
            for i, (s, x, y) in enumerate(_EXAMPLE_POINTS)
        ],
    }


def aariz_annotation(case_id: str, *, junior: bool = False, seed: int = 0) -> dict:
    """One annotation JSON for ``case_id``: the example scaled into the tiny image, shifted per case (and by
    :data:`SENIOR_JUNIOR_OFFSET` for the junior copy), landmark list shuffled with ``seed``."""
    doc = copy.deepcopy(example_annotation())
    doc["ceph_id"] = case_id
    shift = sum(map(ord, case_id)) % 3  # a different position per case, still inside the image
    dx, dy = SENIOR_JUNIOR_OFFSET if junior else (0, 0)
    for lm in doc["landmarks"]:
        v = lm["value"]
        v["x"] = round(v["x"] * AARIZ_SCALE) + shift + dx
        v["y"] = round(v["y"] * AARIZ_SCALE) + shift + dy
    random.Random(f"{case_id}-{junior}-{seed}").shuffle(doc["landmarks"])
    return doc


def annotation_points(doc: dict, names: tuple[str, ...]) -> np.ndarray:
    """``(K, 2)`` coordinates of an annotation JSON in the order ``names``."""
    by_symbol = {lm["symbol"]: (lm["value"]["x"], lm["value"]["y"]) for lm in doc["landmarks"]}
    return np.array([by_symbol[n] for n in names], dtype=np.float64)


def write_image(path: Path, width: int = IMAGE_WIDTH, height: int = IMAGE_HEIGHT, value: int = 0) -> Path:
    """A tiny grey image; the format follows the extension (any case)."""
    image = np.full((height, width), value, np.uint8)
    image[::7] = 200
    ok, data = cv2.imencode(path.suffix.lower(), image)
    assert ok, path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.tobytes())
    return path


class AarizBuilder:
    """Writes an Aariz folder case by case; the mapping CSV is rewritten after each case.

    ``split_folders`` names the folder of each split on disk (``{"train": "Train"}`` tests case-insensitive lookup).
    """

    def __init__(self, root: Path, split_folders: dict[str, str] | None = None):
        self.root = Path(root)
        self.split_folders = {"train": "train", "valid": "valid", "test": "test"} | (split_folders or {})
        self.rows: list[list[str]] = []
        self.root.mkdir(parents=True, exist_ok=True)
        self.write_mapping()

    def split_dir(self, split: str) -> Path:
        return self.root / self.split_folders[split]

    def image_path(self, split: str, case_id: str, ext: str = ".png") -> Path:
        return self.split_dir(split) / "Cephalograms" / f"{case_id}{ext}"

    def annotation_path(self, split: str, case_id: str, who: str = "Senior") -> Path:
        return self.split_dir(split) / "Annotations" / "Cephalometric Landmarks" / f"{who} Orthodontists" / f"{case_id}.json"

    def cvm_path(self, split: str, case_id: str) -> Path:
        return self.split_dir(split) / "Annotations" / "CVM Stages" / f"{case_id}.json"

    def add_case(
        self,
        case_id: str,
        split: str = "train",
        *,
        ext: str = ".png",
        image: bool = True,
        senior: dict | str | None | bool = True,
        junior: dict | str | None | bool = True,
        cvm: int | object | None = 3,
        machine: str = "ART Plus",
        pixel_size: str | None = "0.1",
    ) -> dict[str, dict]:
        """Write one case. ``senior`` / ``junior``: ``True`` for the default annotation, a dict or raw text to
        write instead, ``None``/``False`` for no file. ``cvm``: a stage (or any JSON value to write as the stage),
        ``None`` for no file. ``pixel_size=None`` leaves the id out of the mapping CSV.
        Returns the annotation documents written, by ``"senior"`` / ``"junior"``."""
        written = {}
        if image:
            write_image(self.image_path(split, case_id, ext))
        for who, spec in (("Senior", senior), ("Junior", junior)):
            if spec is None or spec is False:
                continue
            doc = aariz_annotation(case_id, junior=who == "Junior") if spec is True else spec
            path = self.annotation_path(split, case_id, who)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(doc if isinstance(doc, str) else json.dumps(doc, indent=2), encoding="utf-8")
            if isinstance(doc, dict):
                written[who.lower()] = doc
        if cvm is not None:
            path = self.cvm_path(split, case_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"cvm_stage": {"value": cvm, "title": f"CVM-S{cvm}"}}), encoding="utf-8")
        if pixel_size is not None:
            self.rows.append([case_id, machine, pixel_size, ext.lstrip(".").upper(), "L"])
            self.write_mapping()
        return written

    def write_mapping(self) -> Path:
        path = self.root / "cephalogram_machine_mappings.csv"
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["cephalogram_id", "machine", "pixel_size", "image_format", "mode"])
            writer.writerows(self.rows)
        return path


# ------------------------------------------------------------------------------------------------ ISBI 2015

ISBI_SPLIT_FOLDERS = {"train": "TrainingData", "test1": "Test1Data", "test2": "Test2Data"}
ISBI_CLASS_LABELS = ["1", "2", "3", "1", "2", "3", "1", "2"]


def isbi_points(case_id: str, junior: bool = False) -> np.ndarray:
    """``(19, 2)`` integer-valued landmarks inside the tiny image, different per case; junior shifted by (1, 1)."""
    rng = np.random.default_rng(int(case_id))
    points = np.stack([rng.integers(2, IMAGE_WIDTH - 3, 19), rng.integers(2, IMAGE_HEIGHT - 3, 19)], axis=1)
    return points.astype(np.float64) + (1.0 if junior else 0.0)


def isbi_annotation_text(points: np.ndarray, newline: str = "\r\n", spaces: bool = False) -> str:
    """The 19 ``x,y`` lines followed by the 8 class-label lines."""
    sep = " , " if spaces else ","
    lines = [f"{int(x)}{sep}{int(y)}" for x, y in points] + ISBI_CLASS_LABELS
    return newline.join(lines) + newline


class IsbiBuilder:
    """Writes an ISBI 2015 folder case by case."""

    def __init__(self, root: Path):
        self.root = Path(root)
        for folder in ISBI_SPLIT_FOLDERS.values():
            (self.root / "RawImage" / folder).mkdir(parents=True, exist_ok=True)
        for who in ("senior", "junior"):
            (self.root / "AnnotationsByMD" / f"400_{who}").mkdir(parents=True, exist_ok=True)

    def image_path(self, split: str, case_id: str, ext: str = ".bmp") -> Path:
        return self.root / "RawImage" / ISBI_SPLIT_FOLDERS[split] / f"{case_id}{ext}"

    def annotation_path(self, case_id: str, who: str = "senior") -> Path:
        return self.root / "AnnotationsByMD" / f"400_{who}" / f"{case_id}.txt"

    def add_case(
        self,
        case_id: str,
        split: str = "train",
        *,
        ext: str = ".bmp",
        image: bool = True,
        senior: bool | str | None = True,
        junior: bool | str | None = True,
    ) -> None:
        """Write one case; ``senior`` / ``junior``: ``True`` for the default text, a string to write instead,
        ``None``/``False`` for no file."""
        if image:
            write_image(self.image_path(split, case_id, ext))
        for who, spec in (("senior", senior), ("junior", junior)):
            if spec is None or spec is False:
                continue
            text = isbi_annotation_text(isbi_points(case_id, junior=who == "junior")) if spec is True else spec
            self.annotation_path(case_id, who).write_bytes(text.encode("utf-8"))
