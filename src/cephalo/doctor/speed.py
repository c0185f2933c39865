"""Training speed of eager, channels_last and each compile mode that passed its correctness check, at the
micro-batch the memory section chose: a few real updates each (:func:`cephalo.bench.worker.run_segment`), images/s
after a warm-up update that holds the compilation."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from cephalo.bench.run import run_worker
from cephalo.bench.worker import run_segment
from cephalo.doctor.report import FAIL, INFO, Check, shown
from cephalo.engine.config import TrainConfig
from cephalo.engine.stages.global_stage import GlobalStage

SECTION = "speed"


def _images_per_s(config: TrainConfig, updates: int) -> dict:
    """A fresh training of ``config`` (freed on return, before the next variant is built)."""
    return run_segment(GlobalStage(config), warmup_updates=1, measure_updates=updates)


def speed_checks(base: TrainConfig, variants: dict[str, dict], updates: int,
                 show: Callable[[Check], None] = lambda c: None) -> tuple[list[Check], dict[str, float]]:
    """``variants``: name -> changes to ``base``. One line each, passed to ``show`` when measured; also returns
    name -> images/s of those that ran."""
    checks, speeds = [], {}
    for name, changes in variants.items():
        checks.append(shown(show, _speed_line(name, base, changes, updates, speeds)))
    return checks, speeds


def _speed_line(name: str, base: TrainConfig, changes: dict, updates: int, speeds: dict[str, float]) -> Check:
    """Measure one variant (its images/s lands in ``speeds``) and say how it went."""
    try:
        segment = _images_per_s(dataclasses.replace(base, **changes), updates)
    except torch.OutOfMemoryError:
        return Check(SECTION, name, INFO, "out of memory at this micro-batch")
    except Exception as e:  # noqa: BLE001 -- one variant failing says something; the others still run
        return Check(SECTION, name, FAIL, f"{type(e).__name__}: {str(e).splitlines()[0][:200]}")
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    speeds[name] = segment["images_per_s"]
    first = segment["first_updates_seconds"]
    relative = f" ({speeds[name] / speeds['eager']:.2f}x eager)" if "eager" in speeds and name != "eager" else ""
    return Check(SECTION, name, INFO, f"{speeds[name]:.3g} images/s{relative}, first update {first:.1f} s",
                 {"images_per_s": speeds[name], "first_update_seconds": first, "changes": changes})


def local_stage_check(base: TrainConfig, changes: dict, updates: int, timeout_s: float = 1800) -> Check:
    """The local stage's training step (``--refine``: ``--local_model`` on patches of ``--patch_size``,
    ``--local_batch`` images each bringing one patch per landmark) with ``changes`` (the recommended precision and
    layout), a few updates after one warm-up in a fresh process: its speed and, on CUDA, its peak memory."""
    overrides = {**base.to_dict(), **changes, "refine": True, "progress": False}
    result = run_worker({"row": "doctor-local", "overrides": overrides, "warmup_updates": 1,
                         "measure_updates": updates}, timeout_s)
    name = f"local stage ({base.local_model}, {base.patch_size} px patches, --local_batch {base.local_batch})"
    if "error" in result:
        return Check(SECTION, name, FAIL, result["error"], result)
    memory = ""
    if result.get("memory_kind") == "cuda_max_allocated":
        memory = (f", {result['peak_memory_bytes'] / 2**30:.2f} GiB peak "
                  f"({result['peak_reserved_bytes'] / 2**30:.2f} reserved)")
    return Check(SECTION, name, INFO, f"{result['images_per_s']:.3g} images/s ({result['patches_per_s']:.4g} "
                 f"patches/s){memory}, first update {result['first_updates_seconds']:.1f} s", result)
