"""``fit_stage``: the one fit loop of every stage -- epochs of training and validation, 'best', 'last' and recovery
checkpoints, early stopping, the time budget, resume, and a clean stop on Ctrl+C / SIGTERM."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from cephalo.checks import format_duration
from cephalo.engine.checks.compile_check import check_compiled_accumulation
from cephalo.engine.config import TrainConfig
from cephalo.engine.run.budget import Budget
from cephalo.engine.run.resume import Resumed, restore
from cephalo.engine.run.run_log import RunLog
from cephalo.engine.run.saver import CheckpointWriter
from cephalo.engine.run.signals import StopRequest
from cephalo.engine.runtime.distributed import any_rank, barrier
from cephalo.engine.runtime.monitor import memory_text
from cephalo.engine.step.loop import train_one_epoch
from cephalo.engine.step.oom import OutOfMemoryStop
from cephalo.engine.step.progress import Progress, Tracker
from cephalo.engine.step.stage import TrainingStage
from cephalo.engine.step.stats import epoch_stats

VALIDATION_KIND = "selection"  # in metrics.jsonl and best.pt: these images chose the best epoch
VALIDATION_NOTE = ("a validation figure: the best epoch was chosen on these images, so it flatters the model; "
                   "nested cross-validation estimates unseen images")


@dataclass
class FitResult:
    """How a stage ended: its folder, the tracker (best metric, why it stopped) and the last epoch's metrics."""

    run_dir: Path
    tracker: Tracker
    metrics: dict = field(default_factory=dict)
    interrupted: str | None = None  # the signal that stopped it; the stage's recovery file holds its state
    best_written: bool = True  # False: rank 0 ended without a best.pt (no validation ran, or every write failed)
    config: TrainConfig | None = None  # the run's options as the stage trained with them (a resumed run's)


def run_directory(config: TrainConfig) -> Path:
    if config.resume:
        return Path(config.resume).parent
    name = config.run_name or f"{config.model}-{Path(str(config.dataset_path)).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    return Path(config.output_dir) / name


@dataclass
class _Run:
    """What the fit loop carries between epochs: the stage, its files and how it stands."""

    stage: TrainingStage
    run_dir: Path
    log: RunLog
    writer: CheckpointWriter
    progress: Progress
    result: FitResult
    stop: StopRequest
    budget: Budget
    say: object

    @property
    def tracker(self) -> Tracker:
        return self.result.tracker


def fit_stage(stage: TrainingStage, run_dir: Path, resumed: Resumed | None = None,
              started: float | None = None) -> FitResult:
    """Train ``stage`` in ``run_dir``, from ``resumed`` (a checkpoint of this stage) when given; ``started``: when
    the stage's setup began (a time budget counts it).

    Under ``torchrun`` every rank runs this; rank 0 alone prints, logs and writes checkpoints, and decisions
    (stop, save a recovery checkpoint) are agreed between ranks at each update.
    """
    started = time.perf_counter() if started is None else started
    main = stage.parts.dist.is_main
    say = print if main else (lambda *args, **kwargs: None)
    log = RunLog(run_dir, stage.run_config.to_dict(), enabled=main, prefix=stage.files)
    writer = CheckpointWriter(run_dir, stage)
    progress, tracker = stage.new_progress(), stage.new_tracker()
    if resumed is not None:
        progress, tracker = restore(stage, resumed)
        say(f"resumed from {resumed.path} at {stage.label}epoch {progress.epoch + 1}, update {progress.updates}")
        for note in resumed.notes:
            say(f"note: {note}")
    say("\n".join([f"run: {run_dir}", *stage.describe(), *stage.notes]))
    if resumed is None:  # a resumed run was checked when it started
        note = check_compiled_accumulation(stage)
        if note:
            say(note)
    result = FitResult(run_dir, tracker, config=stage.run_config)
    try:
        with StopRequest() as stop:
            _epochs(_Run(stage, run_dir, log, writer, progress, result, stop,
                         Budget(stage.config, stage.parts, progress, started), say))
    except OutOfMemoryStop as e:
        saved = sorted(p.name for p in run_dir.glob("*.pt"))
        raise OutOfMemoryStop(f"{e}\n" + (f"Checkpoints kept in {run_dir}: {', '.join(saved)}; options like "
                                           f"--num_workers can change on cephalo train --resume {run_dir}"
                                           if saved else "No checkpoint had been written yet.")) from None
    finally:
        log.close()
    if result.interrupted:
        say(f"stopped ({result.interrupted}): state saved to {run_dir / writer.name('recovery')}\n"
            f"continue with: cephalo train --resume {run_dir}")
        return result
    if tracker.stopped_because:
        say(tracker.stopped_because)
    last_line = stage.finish(tracker, run_dir)
    barrier(stage.parts.dist)  # rank 0's best.pt is written before a next stage reads it
    result.best_written = (run_dir / "best.pt").is_file() or not main
    if last_line:
        say(last_line)
    elif result.best_written:
        say(f"best {tracker.monitor} {tracker.best:.4g} at epoch {tracker.best_epoch}: {run_dir / 'best.pt'} "
            f"({VALIDATION_NOTE})")
    if not result.best_written:
        print(f"error: no best.pt was written in {run_dir} (no validation ran before the run stopped, or the disk "
              "refused every write: see the warnings above)", file=sys.stderr)
    return result


def _epochs(run: _Run) -> None:
    """Epochs until the stage's ``--epochs`` (or those of its time budget), early stopping, ``--max_updates`` or a
    signal; ``run.result`` follows along."""
    stage, c, progress, tracker, budget = run.stage, run.stage.config, run.progress, run.tracker, run.budget
    while progress.epoch < budget.epochs() and not tracker.stopped_because:
        start, seen = time.perf_counter(), progress.seen
        # a run resumed after the plan's last update (stopped before its end of epoch) has only that end left
        if not budget.reached(progress) and not train_one_epoch(stage, progress, lambda p: _after_update(run, p)) \
                and run.result.interrupted:
            run.writer.save("recovery", progress, tracker, run.result.metrics)
            return
        metrics = epoch_stats(progress, stage.parts, time.perf_counter() - start, progress.seen - seen)
        progress.next_epoch(stage.parts.device)
        last = progress.epoch >= budget.epochs()
        # while planning (the first epoch, or a budget that ended it) the epoch is validated: the plan measures it
        if progress.epoch % c.val_every == 0 or last or budget.planning:
            start = time.perf_counter()
            metrics.update(stage.validate(progress))
            metrics["val_seconds"] = time.perf_counter() - start
            metrics["val_kind"] = VALIDATION_KIND
            if tracker.update(metrics, c.min_delta, c.patience if c.early_stopping else None):
                run.writer.save("best", progress, tracker, metrics)
        run.result.metrics = metrics
        if progress.epoch % c.save_frequency == 0 or last or tracker.stopped_because:
            run.writer.save("last", progress, tracker, metrics)
        run.log.log_epoch({**metrics, "best": tracker.best, "stopped_because": tracker.stopped_because})
        run.say(_epoch_line(stage, metrics))
        # after the first epoch has been measured whole (its checkpoints and log too); last.pt then keeps the plan
        plan = None if tracker.stopped_because else budget.plan(progress, metrics)
        if plan:
            run.writer.save("last", progress, tracker, metrics)
            run.say(f"{stage.label}stage {plan}" if stage.label else plan)


def _after_update(run: _Run, p: Progress) -> bool:
    """After each update, agreed by every rank: stop (a signal, ``--max_updates``, a budget spent in the first
    epoch, the plan's last update), or write the recovery file when it is due."""
    c, tracker, budget = run.stage.config, run.tracker, run.budget
    stop_now, save_now, out_of_time = any_rank([run.stop.requested is not None, run.writer.recovery_due(p),
                                                budget.out_of_time()], run.stage.parts.dist, run.stage.parts.device)
    if stop_now:
        run.result.interrupted = run.stop.requested or "a signal to another rank"
        tracker.stopped_because = f"{run.result.interrupted} received"
    elif c.max_updates and p.updates >= c.max_updates:
        tracker.stopped_because = f"reached --max_updates {c.max_updates}"
    elif out_of_time:
        tracker.stopped_because = (f"the {run.stage.label}time budget ({format_duration(c.time_budget)}) ran out "
                                   "during the first epoch; what was trained is validated and kept")
    elif save_now:
        run.writer.recovery(p, tracker, run.result.metrics)
    # a budget's last epoch can be partial: it ends at the plan's last update, then validates as usual
    return tracker.stopped_because is not None or budget.reached(p)


def _epoch_line(stage: TrainingStage, m: dict) -> str:
    text = f"{stage.label}epoch {m['epoch']:>3}: loss {m['train_loss']:.4g}, {m['images_per_s']:.1f} img/s"
    if "compile_seconds" in m:
        text += f" (after the first update: {m['compile_seconds']:.0f} s with compilation)"
    if "val_mre_mm" in m:
        text += stage.validation_text(m)
    return text + f" | {memory_text(stage.parts.device)}"
