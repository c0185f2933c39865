"""GPU memory of the user's setup at micro-batch 1, 2 and 4, with and without gradient checkpointing: each
measured in a fresh process (the caching allocator's peak only grows within one), with the step measurement of
``--auto_micro_batch`` (:func:`cephalo.engine.runtime.gpu_memory.cuda_step_peak`: a real forward + backward, plus AdamW's
moments and the EMA copy). "Does not fit" is a result, not a failure.

    python -m cephalo.doctor.memory '{"overrides": {...TrainConfig...}, "landmarks": 29, "micro_batch": 2}'

prints one JSON line: ``{"peak_bytes": ..., "reserved_bytes": ...}``, ``{"peak_bytes": null}`` out of memory, or
``{"error": ...}``.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Callable

import torch

from cephalo.bench.run import parse_worker_output, worker_environment
from cephalo.device import resolve_device
from cephalo.doctor.report import FAIL, INFO, PASS, Check, shown
from cephalo.engine.config import TrainConfig
from cephalo.engine.runtime.gpu_memory import MARGIN, apply_vram_budget, cuda_step_peak, state_bytes_after_step
from cephalo.models import create_model
from cephalo.precision import resolve_precision

SECTION = "memory"
MICRO_BATCHES = (1, 2, 4)
BUDGET_NOTE = (f"fits: peak within the budget less {MARGIN:.0%}, which is for what PyTorch's allocator does not "
               "count: the CUDA context (0.3-0.5 GB), fragmentation, and on a Windows desktop the display "
               "(DWM and the browser hold 0.3-1 GB of an 8 GB card)")

Measure = Callable[[dict], dict]  # worker spec -> worker result


def measure_step(spec: dict) -> dict:
    """In the worker process: the peak of one training step of the spec's model and micro-batch."""
    config = TrainConfig(**{**spec["overrides"], "image_size": tuple(spec["overrides"]["image_size"])})
    device = resolve_device(config.device)
    if config.vram_budget_gb:
        apply_vram_budget(device, config.vram_budget_gb)
    precision = resolve_precision(device, config.mixed_precision, config.amp_dtype)
    model = create_model(config.model, spec["landmarks"], in_chans=1, head_stride=config.head_stride)
    model.set_grad_checkpointing(config.gradient_checkpointing)
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    model.train()
    peak = cuda_step_peak(model, config, device, precision, state_bytes_after_step(model, config.use_ema))
    measured = peak(spec["micro_batch"])
    return {"peak_bytes": measured, "reserved_bytes": torch.cuda.max_memory_reserved(device)}


def measure_in_fresh_process(spec: dict, timeout_s: float = 600.0) -> dict:
    command = [sys.executable, "-m", "cephalo.doctor.memory", json.dumps(spec)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, errors="backslashreplace", timeout=timeout_s,
                              env=worker_environment())
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:g} s"}
    return parse_worker_output(done.stdout, done.stderr, done.returncode)


def memory_checks(base: TrainConfig, landmarks: int, per_update: int, budget_bytes: int,
                  measure: Measure = measure_in_fresh_process,
                  show: Callable[[Check], None] = lambda c: None) -> tuple[list[Check], dict]:
    """One line per micro-batch (dividing ``per_update``) and checkpointing setting, each passed to ``show`` when
    measured; also returns ``{(micro_batch, checkpointing): peak bytes or None (out of memory)}`` of those that ran."""
    checks, peaks = [], {}
    for checkpointing in (False, True):
        for micro in (b for b in MICRO_BATCHES if per_update % b == 0):
            overrides = dataclasses.replace(base, gradient_checkpointing=checkpointing).to_dict()
            result = measure({"overrides": overrides, "landmarks": landmarks, "micro_batch": micro})
            name = f"micro-batch {micro}" + (", checkpointing" if checkpointing else "")
            if "error" not in result:
                peaks[(micro, checkpointing)] = result.get("peak_bytes")
            checks.append(shown(show, _memory_line(name, result, micro, checkpointing, budget_bytes)))
    return checks, peaks


def _memory_line(name: str, result: dict, micro: int, checkpointing: bool, budget_bytes: int) -> Check:
    """A measurement's line: failed, out of memory, or its peak against the budget less the margin."""
    if "error" in result:
        return Check(SECTION, name, FAIL, f"the measurement failed: {result['error']}")
    limit = budget_bytes * (1 - MARGIN)
    peak = result.get("peak_bytes")
    figures = {"micro_batch": micro, "checkpointing": checkpointing, "peak_bytes": peak,
               "reserved_bytes": result.get("reserved_bytes"), "limit_bytes": limit}
    if peak is None:
        return Check(SECTION, name, INFO, f"does not fit: out of memory under the {budget_bytes / 2**30:.1f} GiB "
                     "budget", figures)
    fits = peak <= limit
    return Check(SECTION, name, PASS if fits else INFO, f"{peak / 2**30:.2f} GiB peak: "
                 + ("fits" if fits else "does not fit") + f" {budget_bytes / 2**30:.1f} GiB less {MARGIN:.0%} "
                 f"({limit / 2**30:.2f} GiB)", figures)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        result = measure_step(json.loads(argv[0]))
    except Exception as e:  # noqa: BLE001 -- the doctor reports it on its line and goes on
        result = {"error": f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:300]}"}
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
