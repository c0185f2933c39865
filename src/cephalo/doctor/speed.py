"""Training speed of eager, channels_last and each compile mode that passed its correctness check, at the
micro-batch the memory section chose: a few real updates each (:func:`cephalo.bench.worker.run_segment`), images/s
after a warm-up update that holds the compilation."""

from __future__ import annotations

import dataclasses

import torch

from cephalo.bench.worker import run_segment
from cephalo.doctor.report import FAIL, INFO, Check
from cephalo.engine.config import TrainConfig
from cephalo.engine.setup import build_training

SECTION = "speed"


def _images_per_s(config: TrainConfig, updates: int) -> dict:
    """A fresh training of ``config`` (freed on return, before the next variant is built)."""
    return run_segment(build_training(config), warmup_updates=1, measure_updates=updates)


def speed_checks(base: TrainConfig, variants: dict[str, dict], updates: int) -> tuple[list[Check], dict[str, float]]:
    """``variants``: name -> changes to ``base``. One line each; also returns name -> images/s of those that ran."""
    checks, speeds = [], {}
    for name, changes in variants.items():
        try:
            segment = _images_per_s(dataclasses.replace(base, **changes), updates)
        except torch.OutOfMemoryError:
            checks.append(Check(SECTION, name, INFO, "out of memory at this micro-batch"))
            continue
        except Exception as e:  # noqa: BLE001 -- one variant failing says something; the others still run
            checks.append(Check(SECTION, name, FAIL, f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"))
            continue
        finally:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        speeds[name] = segment["images_per_s"]
        first = segment["first_updates_seconds"]
        relative = f" ({speeds[name] / speeds['eager']:.2f}x eager)" if "eager" in speeds and name != "eager" else ""
        checks.append(Check(SECTION, name, INFO, f"{speeds[name]:.3g} images/s{relative}, first update {first:.1f} s",
                            {"images_per_s": speeds[name], "first_update_seconds": first, "changes": changes}))
    return checks, speeds
