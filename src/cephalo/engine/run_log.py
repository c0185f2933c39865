"""The run directory: resolved config, metrics per epoch (JSONL and CSV), TensorBoard when it is installed."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from cephalo.atomic import write_text


class RunLog:
    """``config.json``, then one row per epoch in ``metrics.jsonl`` (appended) and ``metrics.csv``.

    Rows differ: epochs without validation have no ``val_*`` values. The CSV's header is therefore every column any
    row has had, in order of first appearance, and the whole file is rewritten (atomically) from the JSONL rows
    whenever a row brings a new column; other rows are appended, with empty cells for what they lack.
    """

    def __init__(self, run_dir: Path, config: dict, enabled: bool = True):
        """``enabled=False`` (ranks other than 0) writes nothing."""
        self.dir, self.enabled, self.tensorboard = Path(run_dir), enabled, None
        self.rows: list[dict] = []
        self.columns: list[str] = []
        if not enabled:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        write_text(self.dir / "config.json", json.dumps(config, indent=2, default=str))
        self.rows = _read_jsonl(self.dir / "metrics.jsonl")  # a resumed run's earlier epochs
        self.columns = _columns(self.rows)
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
        self.rows.append(row)
        csv_path = self.dir / "metrics.csv"
        new_columns = [k for k in row if k not in self.columns]
        if new_columns or not csv_path.is_file():
            self.columns += new_columns
            write_text(csv_path, _csv_text(self.columns, self.rows, header=True))
        else:
            with open(csv_path, "a", newline="", encoding="utf-8") as f:
                f.write(_csv_text(self.columns, [row], header=False))
        if self.tensorboard is not None:
            for key, value in row.items():
                if isinstance(value, (int, float)) and key != "epoch":
                    self.tensorboard.add_scalar(key, value, row["epoch"])
            self.tensorboard.flush()

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


def _read_jsonl(path: Path) -> list[dict]:
    """The rows of ``path``; a line cut off by a crash is left out."""
    if not path.is_file():
        return []
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return [r for r in rows if isinstance(r, dict)]


def _columns(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(k for row in rows for k in row))


def _csv_text(columns: list[str], rows: list[dict], header: bool) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
