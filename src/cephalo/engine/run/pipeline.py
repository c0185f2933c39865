"""``cephalo train``'s stages in order, each through the one fit loop (:func:`~cephalo.engine.run.fit.fit_stage`):
the global model, then with ``--refine`` the local one in the same run folder; ``--refine_from`` the local one
alone, on another run's global model. A resumed run finds the checkpoint that got furthest, and goes on in the
stage that checkpoint says it was training, with the options that stage may take on a resume.

The processes of a ``torchrun`` launch join once here and stay joined through every stage.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from cephalo.artifact.checkpoint import GLOBAL, LOCAL, STAGE_ORDER
from cephalo.checks import format_duration
from cephalo.engine.config import TrainConfig
from cephalo.engine.run.budget import image_size_for
from cephalo.engine.run.fit import FitResult, fit_stage, run_directory
from cephalo.engine.run.resume import resolve_resume
from cephalo.engine.runtime.distributed import cleanup, init_distributed
from cephalo.engine.stages.global_stage import GlobalStage
from cephalo.engine.stages.local_stage import LocalStage
from cephalo.engine.step.stage import TrainingStage


@dataclass(frozen=True)
class StageKind:
    """A stage a run can have: its name (the checkpoint's ``training_stage``) and how to build it from the run's
    options, the run folder, its share of a time budget (seconds or None) and a model that replaces the named one
    (tests)."""

    name: str
    build: Callable[[TrainConfig, Path, float | None, nn.Module | None], TrainingStage]


def _global(config: TrainConfig, run_dir: Path, budget_s: float | None, model: nn.Module | None) -> TrainingStage:
    return GlobalStage(dataclasses.replace(config, time_budget=budget_s), model, run_config=config)


def _local(config: TrainConfig, run_dir: Path, budget_s: float | None, model: nn.Module | None) -> TrainingStage:
    return LocalStage(config, config.refine_from or run_dir / "best.pt", budget_s)


GLOBAL_STAGE, LOCAL_STAGE = StageKind(GLOBAL, _global), StageKind(LOCAL, _local)


def plan(config: TrainConfig) -> list[StageKind]:
    """The stages ``config`` asks for, in order."""
    if config.refine_from:
        return [LOCAL_STAGE]
    return [GLOBAL_STAGE, LOCAL_STAGE] if config.refine else [GLOBAL_STAGE]


def train(config: TrainConfig, model: nn.Module | None = None, given: set[str] | None = None) -> FitResult:
    """Run the stages ``config`` asks for. ``model`` replaces the global one ``config.model`` names (tests use tiny
    ones); ``given``: the options set on the command line (they decide what a resumed run may change)."""
    return run_stages(config, None, model, given)


def run_stages(config: TrainConfig, stages: list[StageKind] | None = None, model: nn.Module | None = None,
               given: set[str] | None = None) -> FitResult:
    """Run ``stages`` (default: :func:`plan`'s for the run) one after the other in one run folder, each on the
    model its predecessor left in ``best.pt``; stops after a stage that was interrupted or wrote no best.pt."""
    started = time.perf_counter()  # a time budget counts setup and caching too
    config.check()
    config = _budget_image_size(config, given)
    order = tuple(s.name for s in stages) if stages else STAGE_ORDER
    config, resumed = resolve_resume(config, given, order)
    stages = stages or plan(config)  # the resumed run's (a resume may add --refine)
    names = [s.name for s in stages]
    if resumed is not None and resumed.stage not in names:
        raise ValueError(f"{resumed.path}: this checkpoint trains the {resumed.stage} stage, which this run does not "
                         f"have (its stages: {', '.join(names)})")
    todo = stages[names.index(resumed.stage):] if resumed is not None else stages
    run_dir = run_directory(config)
    budget = config.time_budget
    info, _ = init_distributed(config.device)
    try:
        for i, kind in enumerate(todo):
            stage_started = started if i == 0 else time.perf_counter()  # the first stage counts the run's setup
            share = _budget_share(config, kind.name, budget, time.perf_counter() - started, ran_before=i > 0)
            stage = kind.build(config, run_dir, share, model if kind.name == GLOBAL else None)
            result = fit_stage(stage, run_dir, resumed if i == 0 else None, stage_started)
            if result.interrupted or not result.best_written:
                return result
            config = result.config or config  # what the stage resolved (a measured micro-batch)
    finally:
        cleanup(info)
    return result


def _budget_share(config: TrainConfig, name: str, budget: float | None, elapsed: float, ran_before: bool
                  ) -> float | None:
    """A stage's share of ``--time_budget``: the global stage's ``--global_share`` of it when a local stage
    follows (else all of it); a stage after another in this process what is left of the budget; a local stage
    that starts a process (``--refine_from``, a resumed run) all of it or the global stage's complement."""
    if budget is None:
        return None
    if name == GLOBAL:
        return budget * config.global_share if config.refine else budget
    if ran_before:
        return max(1.0, budget - elapsed)
    return budget if config.refine_from else budget * (1.0 - config.global_share)


def _budget_image_size(config: TrainConfig, given: set[str] | None) -> TrainConfig:
    """A new ``--time_budget`` run whose ``--image_size`` was not given gets the size measured best at its budget."""
    if config.time_budget is None or given is None or "image_size" in given or config.resume or config.refine_from:
        return config
    size = image_size_for(config.time_budget, config.refine)
    print(f"time budget {format_duration(config.time_budget)}: global input {size[0]}x{size[1]}, the size measured "
          f"best at this budget{' under a local stage' if config.refine else ''} (5-fold CV on ISBI 2015); "
          f"--image_size sets another")
    return dataclasses.replace(config, image_size=size)
