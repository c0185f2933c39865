"""The run directory: resolved config, metrics per epoch (JSONL and CSV), TensorBoard when it is installed."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from cephalo.atomic import write_text


class RunLog:
    def __init__(self, run_dir: Path, config: dict, enabled: bool = True):
        """``enabled=False`` (ranks other than 0) writes nothing."""
        self.dir, self.enabled, self.tensorboard = Path(run_dir), enabled, None
        if not enabled:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        write_text(self.dir / "config.json", json.dumps(config, indent=2, default=str))
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(self.dir / "tensorboard"))
        except Exception:  # tensorboard is optional; without it the JSONL/CSV logs are complete
            pass

    def log_epoch(self, row: dict) -> None:
        """Append one epoch's scalar metrics to metrics.jsonl and metrics.csv (and TensorBoard)."""
        if not self.enabled:
            return
        row = {k: v for k, v in row.items() if isinstance(v, (int, float, str)) or v is None}
        with open(self.dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        csv_path = self.dir / "metrics.csv"
        new = not csv_path.exists()
        fields = list(row) if new else next(csv.reader(open(csv_path, encoding="utf-8")))
        with open(csv_path, "a", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)
        if self.tensorboard is not None:
            for key, value in row.items():
                if isinstance(value, (int, float)) and key != "epoch":
                    self.tensorboard.add_scalar(key, value, row["epoch"])
            self.tensorboard.flush()

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
