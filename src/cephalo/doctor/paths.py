"""Correctness of the fast paths: each one against the plain eager float32 path (TF32 off), on the same weights and
the same accumulation group of micro-batches, through the training step itself (:mod:`cephalo.engine.step.loop`), so
that what is checked is what trains.

A path passes when its forward heatmaps, its gradients and loss (summed over the whole group) and, for compiled
paths, the weight and EMA steps of two optimizer updates agree with the reference within the path's tolerance:
at least its fixed one, widened to a few rounding floors of its precision (:mod:`cephalo.engine.checks.agreement`), each
floor measured here, on this model and size. Steps, not weights: two small updates leave the weights within 1e-3
of where they started, so comparing weights would pass whatever the gradients were.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from cephalo.device import exact_fp32
from cephalo.doctor.report import FAIL, PASS, SKIPPED, Check, shown
from cephalo.engine.checks import agreement as rounding_floor
from cephalo.engine.checks.agreement import REDUCED_PRECISION, SAME_MATHS, Agreement, Tolerance, agreement, perturbed
from cephalo.engine.checks.compile_check import group_gradients
from cephalo.engine.config import TrainConfig
from cephalo.engine.runtime.finite import all_finite
from cephalo.engine.stages.global_stage import GlobalStage
from cephalo.engine.step.loop import accumulate, optimizer_update
from cephalo.preprocessing.normalize import to_model_input

SECTION = "correctness"
UPDATES = 2  # optimizer updates whose weight and EMA steps are compared (CUDA graphs replay state across them)


@dataclass(frozen=True)
class FastPath:
    """A way to train that must give the reference's results: ``changes`` to the reference config; ``rounding``: the
    precision its floor is measured at (a key of :data:`~cephalo.engine.checks.agreement.EPS`); ``exact``: run it with
    TF32 off too, so that only the path itself differs; ``updates``: also compare two updates' steps."""

    name: str
    changes: dict
    tolerance: Tolerance
    rounding: str = "fp32"
    exact: bool = True
    updates: bool = False


@dataclass
class Outcome:
    """What one path computed: ``heatmaps (B, K, h, w)`` of the first micro-batch (None for compiled paths: a
    no-grad forward would compile another graph), the gradients and the group's loss, the steps of two updates."""

    heatmaps: torch.Tensor | None
    gradients: list[torch.Tensor]
    weight_steps: list[torch.Tensor] | None = None
    ema_steps: list[torch.Tensor] | None = None


class PathSkipped(Exception):
    """The path could not be measured here (out of memory, overflow); the message says why."""


def fast_paths(device: torch.device, compile_modes: tuple[str, ...], compile_usable: str | None) -> list:
    """The paths to check on ``device``: :class:`FastPath` or, for one that cannot run here, a SKIPPED
    :class:`Check`. ``compile_usable``: None when torch.compile works here, else why not."""
    cuda = device.type == "cuda"
    paths: list = []
    if cuda and torch.cuda.get_device_properties(device).major >= 8:
        paths.append(FastPath("fp32 with TF32 (cuDNN's default)", {}, REDUCED_PRECISION, "tf32", exact=False))
    else:
        paths.append(Check(SECTION, "fp32 with TF32 (cuDNN's default)", SKIPPED, "TF32 needs an Ampere or later GPU"))
    if cuda:
        paths.append(FastPath("fp16 autocast + GradScaler", {"mixed_precision": True, "amp_dtype": "fp16"},
                              REDUCED_PRECISION, "fp16", exact=False))
    else:
        paths.append(Check(SECTION, "fp16 autocast + GradScaler", SKIPPED, "CUDA only (on CPU --mixed_precision is "
                           "bf16)"))
    if not cuda or torch.cuda.is_bf16_supported():
        paths.append(FastPath("bf16 autocast", {"mixed_precision": True, "amp_dtype": "bf16"}, REDUCED_PRECISION,
                              "bf16", exact=False))
    else:
        paths.append(Check(SECTION, "bf16 autocast", SKIPPED, "this GPU has no bf16"))
    paths.append(FastPath("channels_last", {"channels_last": True}, SAME_MATHS))
    paths.append(FastPath("gradient checkpointing", {"gradient_checkpointing": True}, SAME_MATHS))
    for mode in compile_modes:
        name = f"compile {mode}"
        if compile_usable is not None:
            paths.append(Check(SECTION, name, SKIPPED, compile_usable))
        elif mode == "reduce-overhead" and not cuda:
            paths.append(Check(SECTION, name, SKIPPED, "CUDA graphs need a CUDA GPU"))
        else:
            paths.append(FastPath(name, {"use_compile": True, "compile_mode": mode}, SAME_MATHS, updates=True))
    return paths


def first_heatmaps(stage: GlobalStage, images: torch.Tensor) -> torch.Tensor:
    """The model's heatmaps of ``images`` in training mode (batch statistics), without gradients."""
    parts = stage.parts
    with torch.no_grad(), parts.precision.autocast():
        return parts.model(to_model_input(images, parts.device, stage.config.channels_last)).float()


def update_steps(stage: GlobalStage, group: list) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
    """The change of every weight (and EMA weight) over :data:`UPDATES` updates on ``group``.

    With AdamW's ``eps`` raised to 1 (far above any gradient), its step is ``lr * m / (sqrt(v) + 1)``, about
    ``lr * m``: linear in the gradients. At the default 1e-8 the first step is ``lr * sign(g)`` for every weight,
    so a gradient of 1e-12 that is rounding noise moves its weight as far as a real one, and two correct paths
    would differ by ~30 % in their steps (measured). The optimizer's code runs all the same.
    """
    parts = stage.parts
    for group_ in parts.optimizer.param_groups:
        group_["eps"] = 1.0
    before = [p.detach().clone() for p in parts.raw_model.parameters()]
    for _ in range(UPDATES):
        if accumulate(stage, stage.new_progress(), group, sync=True, augment=False) is None:
            raise PathSkipped("out of memory")
        if not optimizer_update(parts):
            raise PathSkipped("an update was skipped: non-finite gradients")
    steps = [p.detach() - b for p, b in zip(parts.raw_model.parameters(), before)]
    ema = None if parts.ema is None else [e.detach() - b for e, b in zip(parts.ema.module.parameters(), before)]
    return steps, ema


def run_path(config: TrainConfig, weights: dict, updates: bool) -> Outcome:
    """Build ``config``'s training, load ``weights``, and compute its :class:`Outcome`."""
    try:
        stage = GlobalStage(config)
        parts = stage.parts
        parts.raw_model.load_state_dict(weights)
        if parts.ema is not None:
            parts.ema.module.load_state_dict(weights)
        group = stage.fixed_group()
        heatmaps = None if config.use_compile else first_heatmaps(stage, group[0][0][0])
        parts.raw_model.load_state_dict(weights)  # the forward moved the BatchNorm statistics
        gradients = group_gradients(stage, parts.model, group)
        if gradients is None:
            raise PathSkipped("out of memory")
        if parts.scaler.is_enabled():  # fp16: gradients of the scaled loss
            scale = parts.scaler.get_scale()
            gradients = [g / scale for g in gradients[:-1]] + gradients[-1:]
        if not all_finite(gradients):
            raise PathSkipped("the gradients are not finite (fp16 overflow at the first loss scale, which training "
                              "skips and lowers)")
        outcome = Outcome(heatmaps, gradients)
        if updates:
            parts.raw_model.load_state_dict(weights)
            outcome.weight_steps, outcome.ema_steps = update_steps(stage, group)
        return outcome
    except torch.OutOfMemoryError:
        raise PathSkipped("out of memory") from None


def compare(reference: Outcome, candidate: Outcome) -> dict[str, Agreement]:
    """Agreement of each part both outcomes have."""
    parts = {}
    if reference.heatmaps is not None and candidate.heatmaps is not None:
        parts["forward"] = agreement([reference.heatmaps], [candidate.heatmaps])
    parts["gradients"] = agreement(reference.gradients, candidate.gradients)
    if reference.weight_steps is not None and candidate.weight_steps is not None:
        parts[f"{UPDATES} updates"] = agreement(reference.weight_steps, candidate.weight_steps)
        if reference.ema_steps is not None and candidate.ema_steps is not None:
            parts["EMA"] = agreement(reference.ema_steps, candidate.ema_steps)
    return parts


def check_path(path: FastPath, base: TrainConfig, weights: dict, reference: Outcome,
               floor: dict[str, Agreement]) -> Check:
    """Run ``path`` and judge each part against ``reference``, within the path's tolerance widened by
    ``floor`` (the reference's distance from itself with rounding-sized noise in its weights)."""
    config = dataclasses.replace(base, **path.changes)
    try:
        with exact_fp32() if path.exact else nullcontext():
            outcome = run_path(config, weights, path.updates)
    except PathSkipped as e:
        return Check(SECTION, path.name, SKIPPED, str(e))
    parts = compare(reference, outcome)
    tolerances = {name: path.tolerance.widened(floor[name], rounding_floor.FLOORS[path.rounding]) if name in floor
                  else path.tolerance for name in parts}
    useless = {name: floor[name] for name, tol in tolerances.items() if not tol.useful}
    if useless:
        return Check(SECTION, path.name, SKIPPED, f"rounding alone ({path.rounding}) moves this model's "
                     + ", ".join(f"{name} by {a.rel_l2:.2g}" for name, a in useless.items())
                     + ": too ill-conditioned at this size for the check to mean anything; use a larger --image_size",
                     {"ill_conditioned": True})
    bad = [name for name, a in parts.items() if not a.within(tolerances[name])]
    detail = "; ".join(f"{name} {a}" + (f" (needs {tolerances[name]})" if name in bad else "")
                       for name, a in parts.items())
    figures = {name: {"cosine": a.cosine, "rel_l2": a.rel_l2, "min_cosine": tolerances[name].min_cosine,
                      "max_rel_l2": tolerances[name].max_rel_l2} for name, a in parts.items()}
    figures["rounding"] = path.rounding
    return Check(SECTION, path.name, FAIL if bad else PASS, detail, figures)


def floor_check(rounding: str, floor: dict[str, Agreement]) -> Check:
    """A line saying what rounding alone does on this model (the scale every tolerance of that precision uses)."""
    detail = "; ".join(f"{name} {a}" for name, a in floor.items())
    return Check(SECTION, f"rounding floor ({rounding})", "INFO", f"weights x (1 + {rounding_floor.EPS[rounding]:.1e} N(0,1)): "
                 f"{detail}", {name: {"cosine": a.cosine, "rel_l2": a.rel_l2} for name, a in floor.items()})


def correctness_checks(base: TrainConfig, paths: list, show: Callable[[Check], None] = lambda c: None) -> list[Check]:
    """Every path of ``paths`` (see :func:`fast_paths`) against the reference: ``base`` as it is, eager, float32 with
    TF32 off, weights drawn once (``base.seed``) and shared by every path; then one rounding floor per precision
    the paths use, each a line of the table. ``show`` sees each check as it is made (a cold compile takes minutes)."""
    reference_config = dataclasses.replace(base, mixed_precision=False, channels_last=False,
                                           gradient_checkpointing=False, use_compile=False)
    weights = {k: v.detach().cpu().clone()
               for k, v in GlobalStage(reference_config).parts.raw_model.state_dict().items()}
    to_check = [p for p in paths if isinstance(p, FastPath)]
    try:
        with exact_fp32():
            reference = run_path(reference_config, weights, updates=True)
            floors = {key: compare(reference, run_path(reference_config, perturbed(weights, rounding_floor.EPS[key], base.seed + 1),
                                                       updates=True))
                      for key in dict.fromkeys(p.rounding for p in to_check)}
    except PathSkipped as e:
        why = f"the reference (eager fp32) could not run: {e}; try a smaller --image_size"
        return [shown(show, p if isinstance(p, Check) else Check(SECTION, p.name, SKIPPED, why)) for p in paths]
    checks = [shown(show, floor_check(key, floor)) for key, floor in floors.items()]
    return checks + [shown(show, p if isinstance(p, Check) else check_path(p, base, weights, reference,
                                                                            floors[p.rounding])) for p in paths]
