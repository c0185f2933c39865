"""Before a compiled run trains: one accumulation group of a fixed batch through the eager and the compiled model,
their gradients compared. Where they disagree, the run warns and trains eager, as it does where compiling fails:
CUDA graphs (``--compile_mode reduce-overhead``) with gradient accumulation have produced wrong accumulated
gradients upstream, and a wrong gradient trains without an error, only to a worse model.

The check is not part of training: the model's weights and BatchNorm statistics, every random generator and the
gradients are as before it; it is neither an update nor part of the first update's ``compile_seconds``; out of
memory it is skipped (the run's own out-of-memory recovery is not triggered); a resumed run does not repeat it.
"""

from __future__ import annotations

import random
import time
import warnings

import numpy as np
import torch
from torch import nn

from cephalo.engine.checks.agreement import EPS, FLOORS, SAME_MATHS, agreement, perturbed, rounding
from cephalo.engine.runtime.compile import CompileFallback
from cephalo.engine.runtime.distributed import all_gather
from cephalo.engine.runtime.finite import all_finite
from cephalo.engine.step.loop import accumulate
from cephalo.engine.step.stage import Group, TrainingStage


def compiled_part(model: nn.Module) -> CompileFallback | None:
    """The :class:`CompileFallback` that ``model`` is or wraps (DDP), if it still runs compiled."""
    inner = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    return inner if isinstance(inner, CompileFallback) and inner.compiled else None


def group_gradients(stage: TrainingStage, model: nn.Module, group: Group) -> list[torch.Tensor] | None:
    """Every parameter's gradient ``(..)`` after ``group`` through ``model`` (not augmented, no all-reduce: each
    rank checks alone; still scaled by the GradScaler, the same for both paths), then the loss; None out of memory.
    Gradients are zeroed afterwards."""
    loss = accumulate(stage, stage.new_progress(), group, sync=True, model=model, augment=False)
    grads = None
    if loss is not None:
        grads = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in stage.parts.raw_model.parameters()]
        grads.append(loss)
    stage.parts.optimizer.zero_grad(set_to_none=True)
    return grads


class _Untouched:
    """Restores the model's state (BatchNorm statistics move in a training forward) and every generator."""

    def __init__(self, stage: TrainingStage):
        self.parts = stage.parts

    def __enter__(self):
        device = self.parts.device
        self.state = {k: v.detach().clone() for k, v in self.parts.raw_model.state_dict().items()}
        self.rng = (random.getstate(), np.random.get_state(), torch.get_rng_state(),
                    torch.cuda.get_rng_state(device) if device.type == "cuda" else None)
        return self

    def reset_model(self) -> None:
        self.parts.raw_model.load_state_dict(self.state)

    def __exit__(self, *exc) -> None:
        self.reset_model()
        self.parts.optimizer.zero_grad(set_to_none=True)
        random.setstate(self.rng[0])
        np.random.set_state(self.rng[1])
        torch.set_rng_state(self.rng[2])
        if self.rng[3] is not None:
            torch.cuda.set_rng_state(self.rng[3], self.parts.device)


def check_compiled_accumulation(stage: TrainingStage) -> str | None:
    """Compare the compiled model with the eager one over one accumulation group; returns a line for the log, or
    None when the run is not compiled. On a disagreement (any rank's) the run falls back to eager, with a warning.
    """
    parts = stage.parts
    compiled = compiled_part(parts.model)
    if compiled is None:
        return None
    c, start = stage.config, time.perf_counter()
    precision = rounding(parts.precision.dtype, parts.device)
    with _Untouched(stage) as untouched:
        group = stage.fixed_group()
        eager = group_gradients(stage, parts.raw_model, group)
        parts.raw_model.load_state_dict(perturbed(untouched.state, EPS[precision]))  # the rounding floor
        floor = group_gradients(stage, parts.raw_model, group) if eager is not None else None
        untouched.reset_model()
        fast = group_gradients(stage, compiled, group) if floor is not None else None
    result = None
    if fast is None:
        if parts.device.type == "cuda":
            torch.cuda.empty_cache()
        skipped = "out of GPU memory for it (the run trains compiled, unchecked)"
    elif not compiled.compiled:
        skipped = "compiling failed (see the warning): the run trains eager"
    elif not all_finite(eager):
        skipped = "the eager gradients are not finite at the first loss scale (the run trains compiled, unchecked)"
    else:
        tolerance = SAME_MATHS.widened(agreement(eager, floor), FLOORS[precision])
        skipped, result = None, agreement(eager, fast)
        if not tolerance.useful:
            skipped, result = ("rounding alone moves this model's gradients too far at this size to tell (the run "
                               "trains compiled, unchecked)"), None
    wrong = result is not None and not result.within(tolerance)
    if not any(all_gather(wrong, parts.dist)):  # every rank decides alike
        if skipped:
            return f"{stage.label}compile check skipped: {skipped}"
        return (f"{stage.label}compile check passed: --compile_mode {c.compile_mode} against eager over one "
                f"accumulation group of {c.gradient_accumulation_steps} x {c.batch_size} images: {result} "
                f"({time.perf_counter() - start:.0f} s, compilation included)")
    compiled.disable()
    evaluated = compiled_part(parts.eval_forward)
    if evaluated is not None:
        evaluated.disable()
    found = f"{result}; needed {tolerance}" if wrong else "on another process"
    warnings.warn(f"torch.compile (--compile_mode {c.compile_mode}) gives wrong accumulated gradients on this machine "
                  f"({found}); the {stage.name} stage continues in eager mode. `cephalo doctor` checks each compile "
                  "mode")
    return f"{stage.label}compile check failed ({found}): eager mode from here"
