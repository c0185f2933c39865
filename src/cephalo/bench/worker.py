"""One benchmark row in a fresh process (peak RSS only grows within a process, and compiled code or allocator
caches must not leak from one row into the next).

    python -m cephalo.bench.worker '{"row": "current", "overrides": {...}, "warmup_updates": 2,
                                     "measure_updates": 5, "save_dir": null}'

prints one JSON line with the result, or ``{"error": ...}``. ``CEPHALO_BENCH_FAIL=<row>`` makes that row fail on
purpose (tests of the error path).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

from cephalo.artifact.checkpoint import save_checkpoint
from cephalo.device import synchronize
from cephalo.engine.config import TrainConfig
from cephalo.engine.run.resume import checkpoint_state
from cephalo.engine.run.saver import CheckpointWriter
from cephalo.engine.runtime.compile import CompileFallback
from cephalo.engine.runtime.monitor import peak_rss_bytes
from cephalo.engine.stages.global_stage import GlobalStage
from cephalo.engine.stages.local_stage import LocalStage
from cephalo.engine.step.loop import train_one_epoch
from cephalo.engine.step.progress import Progress, Tracker
from cephalo.engine.step.stage import TrainingStage

FAIL_ENV = "CEPHALO_BENCH_FAIL"


def current_rss_bytes() -> int | None:
    """Resident memory now, from /proc/self/statm (Linux); None elsewhere."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def device_info(device: torch.device) -> dict:
    if device.type != "cuda":
        return {"type": device.type, "name": "cpu"}
    props = torch.cuda.get_device_properties(device)
    return {"type": "cuda", "name": props.name, "total_memory_bytes": props.total_memory}


def run_segment(t: TrainingStage, warmup_updates: int, measure_updates: int) -> dict:
    """Train until ``warmup_updates`` + ``measure_updates`` optimizer updates are done (epochs as needed, without
    validation); times the warm-up and the measured updates separately, counting the images actually trained."""
    p, device = t.new_progress(), t.parts.device
    state = {"updates": 0, "images_before": 0}
    marks: dict[str, float | int] = {}
    stamps: list[tuple[float, int]] = []  # (time, images) after each measured update, for the spread

    def images_done(p: Progress) -> int:
        return state["images_before"] + p.seen

    def after_update(p: Progress) -> bool:
        state["updates"] += 1
        if state["updates"] > warmup_updates:
            stamps.append((time.perf_counter(), images_done(p)))  # no sync: only a rough spread
        if state["updates"] == warmup_updates:
            synchronize(device)
            marks["warm"], marks["warm_images"] = time.perf_counter(), images_done(p)
        if state["updates"] == warmup_updates + measure_updates:
            synchronize(device)
            marks["end"], marks["end_images"] = time.perf_counter(), images_done(p)
            return True
        return False

    synchronize(device)
    start = time.perf_counter()
    if warmup_updates == 0:
        marks["warm"], marks["warm_images"] = start, 0
    while "end" not in marks:
        if train_one_epoch(t, p, after_update):
            state["images_before"] += p.seen
            p.next_epoch(device)  # the synthetic split is small
    seconds = marks["end"] - marks["warm"]
    images = marks["end_images"] - marks["warm_images"]
    previous = [(marks["warm"], marks["warm_images"])] + stamps[:-1]
    rates = [(n - n0) / (t1 - t0) for (t0, n0), (t1, n) in zip(previous, stamps) if t1 > t0]
    return {"images_per_s": images / seconds, "measured_images": images, "measured_seconds": seconds,
            "measured_updates": measure_updates, "first_updates_seconds": marks["warm"] - start,
            "update_images_per_s": rates, "skipped_updates": p.skipped_updates, "progress": p}


def untrained_source(config: TrainConfig, folder: Path) -> Path:
    """A checkpoint of ``config``'s global model as initialised, for a local stage to train on: what the local stage
    costs per update does not depend on how good its global model is (only where its patches are cut)."""
    stage = GlobalStage(dataclasses.replace(config, refine=False, use_compile=False))
    path = folder / "best.pt"
    save_checkpoint(path, checkpoint_state(stage, stage.new_progress(), stage.new_tracker(), {}))
    return path


def time_checkpoint(t: TrainingStage, p: Progress, save_dir: str | None) -> dict:
    """One full ``last.pt`` write as training does it (finiteness check, torch.save, fsync, atomic rename), into a
    temporary folder on ``save_dir``'s disk."""
    try:
        with tempfile.TemporaryDirectory(prefix="bench-save-", dir=save_dir) as folder:
            writer = CheckpointWriter(folder, t)
            synchronize(t.parts.device)
            start = time.perf_counter()
            if not writer.save("last", p, Tracker(t.config.monitor), {}):
                return {"save_error": f"the checkpoint could not be written in {save_dir}"}
            seconds = time.perf_counter() - start
            size = os.path.getsize(os.path.join(folder, "last.pt"))
    except Exception as e:  # noqa: BLE001 -- the row's speed figures stay valid without the save time
        return {"save_error": error_result(e)["error"]}
    return {"save_seconds": seconds, "checkpoint_bytes": size}


def measure(spec: dict) -> dict:
    """Build the row's training, measure the segment, and the memory it took."""
    if os.environ.get(FAIL_ENV) == spec.get("row"):
        raise RuntimeError(f"failure forced by {FAIL_ENV}={spec.get('row')}")
    overrides = dict(spec["overrides"])
    overrides["image_size"] = tuple(overrides["image_size"])
    config = TrainConfig(**overrides)
    with tempfile.TemporaryDirectory(prefix="bench-source-") as folder:
        # applies --vram_budget_gb; with --refine the local stage, on an untrained global model
        t = LocalStage(config, untrained_source(config, Path(folder))) if config.refine else GlobalStage(config)
    device = t.parts.device
    result: dict = {"device": device_info(device), "notes": list(t.notes), "precision": str(t.parts.precision),
                    "stage": t.name}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)  # the segment's peak, weights and optimizer state included
    rss_before = current_rss_bytes()
    segment = run_segment(t, spec["warmup_updates"], spec["measure_updates"])
    p = segment.pop("progress")
    result.update(segment)
    if config.refine:  # each image brings one patch per landmark
        result["patches_per_s"] = result["images_per_s"] * len(t.local_spec.landmark_names)
    if device.type == "cuda":
        result["peak_memory_bytes"] = torch.cuda.max_memory_allocated(device)
        result["peak_reserved_bytes"] = torch.cuda.max_memory_reserved(device)  # what the card must hold
        result["memory_kind"] = "cuda_max_allocated"
    else:
        peak = peak_rss_bytes()
        result["peak_memory_bytes"] = peak
        result["memory_kind"] = "peak_rss"
        if peak is not None and rss_before is not None:
            result["rss_growth_bytes"] = peak - rss_before
    if isinstance(t.parts.model, CompileFallback) and not t.parts.model.compiled:
        result["notes"].append("torch.compile failed: this row ran in eager mode")
    if spec.get("time_save"):
        result.update(time_checkpoint(t, p, spec.get("save_dir")))
    return result


def error_result(e: BaseException) -> dict:
    if isinstance(e, torch.OutOfMemoryError):
        return {"error": "out of memory"}
    first = (str(e).strip().splitlines() or [""])[0][:300]
    return {"error": f"{type(e).__name__}: {first}" if first else type(e).__name__}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        result = measure(json.loads(argv[0]))
    except Exception as e:  # noqa: BLE001 -- any failure becomes this row's error; the bench goes on
        traceback.print_exc()
        result = error_result(e)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
