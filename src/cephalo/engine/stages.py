"""``cephalo train``'s stages in order: the global model (:func:`~cephalo.engine.trainer.fit`), then with
``--refine`` the local one (:func:`~cephalo.engine.local_fit.fit_local`) in the same run folder; ``--refine_from``
the local one alone, on another run's global model. A resumed run goes on in the stage it was in, with the options
that stage started with."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

from cephalo.checks import format_duration
from cephalo.engine.budget import image_size_for
from cephalo.engine.checkpoint import load_checkpoint
from cephalo.engine.config import TrainConfig
from cephalo.engine.local_fit import LOCAL_LAST, fit_local
from cephalo.engine.resume import resume_source
from cephalo.engine.trainer import FitResult, fit, run_directory


def train(config: TrainConfig, given: set[str] | None = None) -> FitResult:
    """Run the stages ``config`` asks for; ``given``: the options set on the command line (see :func:`fit`)."""
    started = time.perf_counter()
    if (config.refine or config.refine_from) and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("--refine / --refine_from: the local stage trains in one process. Train the global model "
                         "with torchrun, then add the local stage without it: cephalo train --refine_from "
                         "RUN/best.pt ...")
    config = _budget_image_size(config, given)
    run_dir = resume_source(config) if config.resume else None
    if run_dir is not None and (run_dir / LOCAL_LAST).is_file():  # the local stage was under way
        tracker = fit_local(_local_config(config, run_dir / LOCAL_LAST), run_dir / "best.pt", run_dir,
                            resume=True)
        return FitResult(run_dir, tracker)
    if config.refine_from:
        config.check()
        run_dir = run_directory(config) if run_dir is None else run_dir
        return FitResult(run_dir, fit_local(config, Path(config.refine_from), run_dir, config.time_budget))
    if not config.refine:
        return fit(config, given=given)
    budget = config.time_budget
    result = fit(dataclasses.replace(config, time_budget=budget * config.global_share if budget else None), given=given)
    if result.interrupted or not result.best_written:
        return result
    left = max(1.0, budget - (time.perf_counter() - started)) if budget else None
    local = dataclasses.replace(result.config or config, refine=True, progress=config.progress)
    tracker = fit_local(local, result.run_dir / "best.pt", result.run_dir, left)
    return FitResult(result.run_dir, tracker, result.metrics, config=local)


def _budget_image_size(config: TrainConfig, given: set[str] | None) -> TrainConfig:
    """A new ``--time_budget`` run whose ``--image_size`` was not given gets the size measured best at its budget."""
    if config.time_budget is None or given is None or "image_size" in given or config.resume or config.refine_from:
        return config
    size = image_size_for(config.time_budget, config.refine)
    print(f"time budget {format_duration(config.time_budget)}: global input {size[0]}x{size[1]}, the size measured "
          f"best at this budget{' under a local stage' if config.refine else ''} (benchmarks/budget_cv.md); "
          f"--image_size sets another")
    return dataclasses.replace(config, image_size=size)


def _local_config(config: TrainConfig, local_last: Path) -> TrainConfig:
    """The local stage's own options, from its checkpoint; where and how to run (device, progress) as given now."""
    saved = TrainConfig.from_dict(load_checkpoint(local_last)["config"])
    return dataclasses.replace(saved, device=config.device, progress=config.progress)
