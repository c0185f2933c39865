"""Where ``cephalo predict``'s landmarks came from, written beside them as ``run.json``, and the earlier outputs a
reused ``--out`` would otherwise mix with the new ones.

``run.json`` holds cephalo's version, when and how predict ran, the model file (path, SHA-256, its stages and the
validation figure it was kept for), test-time augmentation, and for each image its output stem, pixel spacing and
where that spacing came from. It is written before the first image (listing every file the run will write, so
that an interrupted run can be cleaned up) and again at the end.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path

import cephalo
from cephalo.atomic import write_text

RUN_NAME = "run.json"
SPACING_SOURCES = ("dataset", "--spacing_mm", "DICOM header", "unknown")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_record(path: Path, predictor) -> dict:
    """The model file and what it holds, as ``run.json`` and the report pages show it."""
    def stage(spec) -> dict:
        return {"model": spec.model_name, "input": list(spec.image_size), "stride": spec.stride,
                **({"patch_mm_per_px": spec.mm_per_px} if getattr(spec, "mm_per_px", None) else {})}

    local = getattr(predictor, "local_spec", None)
    kind = "onnx" if path.suffix.lower() == ".onnx" else "two stages" if local is not None else "one stage"
    return {"path": str(path.resolve()), "sha256": sha256_of(path), "kind": kind, "global": stage(predictor.spec),
            "local": stage(local) if local is not None else None,
            "validation": getattr(predictor, "validation", None),
            "landmarks": list(predictor.landmark_names)}


def tta_record(predictor) -> dict | None:
    tta = getattr(predictor, "tta", None)
    return None if tta is None else {"global_views": len(tta.views), "local_starts": len(tta.local_offsets_mm)}


def run_record(*, command: list[str], model: dict, tta: dict | None, images: list[dict], outputs: list[str],
               finished: bool = False, failed: list[str] | None = None) -> dict:
    return {"cephalo": cephalo.__version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": command, "model": model, "tta": tta, "images": images, "outputs": outputs,
            "finished": finished, "failed": failed or []}


def write_run_record(out_dir: Path, record: dict) -> None:
    write_text(out_dir / RUN_NAME, json.dumps(record, indent=2))


def read_run_record(out_dir: Path) -> dict | None:
    """The ``run.json`` of an earlier predict in ``out_dir``; None where there is none or it cannot be read."""
    try:
        record = json.loads((out_dir / RUN_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def earlier_outputs(out_dir: Path) -> list[Path]:
    """What is already in ``out_dir`` (sorted): a non-empty ``--out`` is refused unless ``--overwrite``."""
    return sorted(out_dir.iterdir()) if out_dir.is_dir() else []


def clear_earlier_outputs(out_dir: Path) -> tuple[list[Path], list[Path]]:
    """Remove what an earlier ``cephalo predict`` wrote in ``out_dir`` -- the files its ``run.json`` lists, or
    (a folder from before run.json) its ``predictions.csv`` and the ``<stem>.json`` / ``<stem>_overlay.jpg`` of
    each row -- and nothing else. Returns ``(removed, kept)``."""
    record = read_run_record(out_dir)
    if record is not None:
        names = {str(name) for name in record.get("outputs", [])} | {RUN_NAME}
    else:
        names = {"predictions.csv"} | {p.name for p in out_dir.glob("*_overlay.jpg")}
        names |= {p.name for p in out_dir.glob("*.json") if _is_landmark_json(p)}
    removed, root = [], out_dir.resolve()
    for name in sorted(names):
        path = out_dir / name
        if root in path.resolve().parents and path.is_file():  # never follow a name out of --out
            path.unlink()
            removed.append(path)
    for folder in {p.parent for p in removed if p.parent != out_dir}:  # report/, once emptied
        if not any(folder.iterdir()):
            folder.rmdir()
    return removed, earlier_outputs(out_dir)


def _is_landmark_json(path: Path) -> bool:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(content, dict) and "landmarks" in content and "image" in content
