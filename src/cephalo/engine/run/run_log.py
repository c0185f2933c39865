"""The run directory: resolved config, metrics per epoch (JSONL and CSV), TensorBoard when it is installed."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import sys
from pathlib import Path

from cephalo.atomic import WriteError, write_text


class RunLog:
    """``config.json``, then one row per epoch in ``metrics.jsonl`` (appended) and ``metrics.csv``.

    Rows differ: epochs without validation have no ``val_*`` values. The CSV's header is therefore every column any
    row has had, in order of first appearance, and the whole file is rewritten (atomically) from the JSONL rows
    whenever a row brings a new column; other rows are appended, with empty cells for what they lack.

    A row that cannot be written (a full disk) is taken back, so neither file keeps half a line, and training goes
    on with a warning; the CSV is rewritten whole at the next row that can be written.
    """

    def __init__(self, run_dir: Path, config: dict, enabled: bool = True, prefix: str = ""):
        """``enabled=False`` (ranks other than 0) writes nothing; ``prefix``: a later stage's files
        (``local_metrics.jsonl``)."""
        self.dir, self.enabled, self.tensorboard, self.prefix = Path(run_dir), enabled, None, prefix
        self.rows: list[dict] = []
        self.columns: list[str] = []
        self.csv_stale = False  # a CSV row could not be written: rewrite the whole file at the next chance
        if not enabled:
            return
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            write_text(self.dir / f"{prefix}config.json", json.dumps(config, indent=2, default=str))
        except OSError as e:
            raise WriteError(e.filename or self.dir, e, "the run folder cannot be written: choose another "
                             "--output_dir (or free space)") from None
        self.rows = _read_jsonl(self.dir / f"{prefix}metrics.jsonl")  # a resumed run's earlier epochs
        self.columns = _columns(self.rows)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(self.dir / "tensorboard" / (prefix.rstrip("_") or ".")))
        except Exception:  # tensorboard is optional; without it the JSONL/CSV logs are complete
            pass

    def log_epoch(self, row: dict) -> None:
        """Append one epoch's scalar metrics to metrics.jsonl and metrics.csv (and TensorBoard)."""
        if not self.enabled:
            return
        row = {k: v for k, v in row.items() if isinstance(v, (int, float, str)) or v is None}
        if not self._append(self.dir / f"{self.prefix}metrics.jsonl", json.dumps(row) + "\n"):
            return
        self.rows.append(row)
        csv_path = self.dir / f"{self.prefix}metrics.csv"
        new_columns = [k for k in row if k not in self.columns]
        self.columns += new_columns
        if new_columns or self.csv_stale or not csv_path.is_file():
            try:
                write_text(csv_path, _csv_text(self.columns, self.rows, header=True))
                self.csv_stale = False
            except OSError as e:
                self.csv_stale = True
                _warn(csv_path, e)
        elif not self._append(csv_path, _csv_text(self.columns, [row], header=False)):
            self.csv_stale = True
        if self.tensorboard is not None:
            for key, value in row.items():
                if isinstance(value, (int, float)) and key != "epoch":
                    self.tensorboard.add_scalar(key, value, row["epoch"])
            self.tensorboard.flush()

    @staticmethod
    def _append(path: Path, text: str) -> bool:
        """Append ``text`` whole or not at all; False (with a warning) when the disk refused it."""
        size = path.stat().st_size if path.exists() else 0
        try:
            with open(path, "a", encoding="utf-8", newline="") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())  # a full disk shows here at the latest, not at some later close
            return True
        except OSError as e:
            with contextlib.suppress(OSError):
                os.truncate(path, size)  # take back the part that made it to the disk
            _warn(path, e)
            return False

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


def _warn(path: Path, error: OSError) -> None:
    print(f"warning: could not write {path} ({error.strerror or error}); this epoch's row is left out of it, "
          "training goes on", file=sys.stderr, flush=True)


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
