"""Writing a stage's checkpoints during a run: never non-finite weights, never a half-written file, and a failed
write (a full disk) costs a warning, not the previous checkpoint."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from cephalo.artifact.checkpoint import save_checkpoint
from cephalo.engine.run.resume import checkpoint_state
from cephalo.engine.runtime.finite import NonFiniteError, all_finite
from cephalo.engine.step.progress import Progress, Tracker
from cephalo.engine.step.stage import TrainingStage


class CheckpointWriter:
    """``best.pt`` (the run's product, both stages), and the stage's own ``last.pt`` / ``recovery.pt`` (prefixed
    with the stage's :attr:`~TrainingStage.files`: ``local_last.pt``)."""

    def __init__(self, run_dir: Path, stage: TrainingStage):
        self.run_dir, self.stage = Path(run_dir), stage
        self.last_recovery_time = time.monotonic()
        self.last_recovery_update: int | None = None

    def name(self, kind: str) -> str:
        """The file of ``kind`` ("last", "recovery", "best") for this stage."""
        if kind not in ("last", "recovery", "best"):
            raise ValueError(f"no checkpoint kind {kind!r}: last, recovery or best")
        return "best.pt" if kind == "best" else f"{self.stage.files}{kind}.pt"

    def save(self, kind: str, progress: Progress, tracker: Tracker, metrics: dict) -> bool:
        """Write the ``kind`` file; False (with a warning) if the disk refused, the previous file being intact.
        Only rank 0 writes."""
        if not self.stage.parts.dist.is_main:
            return True
        name = self.name(kind)
        if not all_finite(list(self.stage.parts.raw_model.parameters())):
            raise NonFiniteError(f"the weights are not finite: {name} was not written, the previous one is intact")
        path = self.run_dir / name
        try:
            save_checkpoint(path, checkpoint_state(self.stage, progress, tracker, metrics))
        except OSError as e:  # WriteError: a full disk, a read-only folder (torch's own errors included)
            print(f"warning: could not write {path} ({e.strerror or e}); the previous {name} is intact. Free disk "
                  "space: the next save tries again.", file=sys.stderr, flush=True)
            return False
        return True

    def recovery_due(self, progress: Progress) -> bool:
        c = self.stage.config
        if c.recovery_interval > 0:
            return progress.updates % c.recovery_interval == 0 and progress.updates != self.last_recovery_update
        return time.monotonic() - self.last_recovery_time >= c.recovery_minutes * 60

    def recovery(self, progress: Progress, tracker: Tracker, metrics: dict) -> None:
        """The recovery file, overwritten in place, so that a crash costs at most one interval of work."""
        self.save("recovery", progress, tracker, metrics)
        self.last_recovery_time, self.last_recovery_update = time.monotonic(), progress.updates
