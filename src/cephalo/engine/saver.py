"""Writing checkpoints during a run: never non-finite weights, never a half-written file, and a failed write
(a full disk) costs a warning, not the previous checkpoint."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from cephalo.engine.checkpoint import save_checkpoint
from cephalo.engine.finite import NonFiniteError, all_finite
from cephalo.engine.progress import Progress, Tracker
from cephalo.engine.resume import checkpoint_state
from cephalo.engine.setup import Training


class CheckpointWriter:
    def __init__(self, run_dir: Path, t: Training):
        self.run_dir, self.t = Path(run_dir), t
        self.last_recovery_time = time.monotonic()
        self.last_recovery_update: int | None = None

    def save(self, name: str, progress: Progress, tracker: Tracker, metrics: dict) -> bool:
        """Write ``run_dir/name``; False (with a warning) if the disk refused, the previous file being intact.
        Only rank 0 writes."""
        if not self.t.dist.is_main:
            return True
        if not all_finite(list(self.t.raw_model.parameters())):
            raise NonFiniteError(f"the weights are not finite: {name} was not written, the previous one is intact")
        path = self.run_dir / name
        try:
            save_checkpoint(path, checkpoint_state(self.t, progress, tracker, metrics))
        except OSError as e:  # WriteError: a full disk, a read-only folder (torch's own errors included)
            print(f"warning: could not write {path} ({e.strerror or e}); the previous {name} is intact. Free disk "
                  "space: the next save tries again.", file=sys.stderr, flush=True)
            return False
        return True

    def recovery_due(self, progress: Progress) -> bool:
        c = self.t.config
        if c.recovery_interval > 0:
            return progress.updates % c.recovery_interval == 0 and progress.updates != self.last_recovery_update
        return time.monotonic() - self.last_recovery_time >= c.recovery_minutes * 60

    def recovery(self, progress: Progress, tracker: Tracker, metrics: dict) -> None:
        """``recovery.pt``, overwritten in place, so that a crash costs at most one interval of work."""
        self.save("recovery.pt", progress, tracker, metrics)
        self.last_recovery_time, self.last_recovery_update = time.monotonic(), progress.updates
