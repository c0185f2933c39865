"""Drive the benchmark: prepare the synthetic data once, then run every row in its own worker process, one after
the other (rows must not compete for the machine), printing a line as each finishes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cephalo
from cephalo.bench.report import load_average, speedup_text
from cephalo.bench.techniques import ROW_NAMES, Row, build_rows, parse_techniques
from cephalo.checks import above, at_least, writable_folder
from cephalo.engine.config import TrainConfig
from cephalo.flags import option, option_fields

# The training options a bench run takes, spelled and checked as cephalo train's (TrainConfig is their one
# definition); bench's own defaults are the user's setup: HRNet-W18, batch 1 x accumulation 8.
TRAINING_FLAGS = ("model", "image_size", "batch_size", "gradient_accumulation_steps", "device", "num_workers",
                  "augmentation", "compile_mode", "vram_budget_gb", "cache_dir", "seed", "local_model", "patch_size",
                  "local_batch")
TRAINING_DEFAULTS = {"model": "hrnet_w18", "batch_size": 1, "gradient_accumulation_steps": 8}


@dataclass
class BenchOptions:
    """The ``cephalo bench`` flags: its own (below) plus ``training``, the :data:`TRAINING_FLAGS` values."""

    warmup_updates: int = option(2, "optimizer updates run first and timed apart ('first updates s': compile time "
                                 "included)", check=at_least(0))
    measure_updates: int = option(5, "optimizer updates images/s is measured over", check=at_least(1))
    techniques: str = option("all", f"'all' or a comma list of: {', '.join(ROW_NAMES)}")
    output_dir: str | None = option(None, "where bench.md and bench.json go (default: "
                                    "benchmarks/bench-<model>-<H>x<W>)", check=writable_folder)
    epoch_images: int = option(700, "images per epoch for the save-frequency figure (default 700: Aariz's "
                               "training split)", check=at_least(1))
    row_timeout_s: float = option(1800.0, "give up on a row after this long", check=above(0))
    training: dict = field(default_factory=lambda: {**{f.name: f.default for f in option_fields(
        TrainConfig, TRAINING_FLAGS)}, **TRAINING_DEFAULTS})

    @property
    def rows(self) -> list[str]:
        return parse_techniques(self.techniques)

    def settings(self) -> dict:
        """Every setting, flat (bench.json's ``settings``)."""
        own = {f.name: getattr(self, f.name) for f in option_fields(BenchOptions)}
        return {**self.training, **own, "techniques": self.rows}

    def common_overrides(self) -> dict:
        """TrainConfig values every row shares."""
        return {"dataset_path": "synthetic", **self.training, "image_size": list(self.training["image_size"]),
                "progress": False}


def prepare_data(options: BenchOptions) -> str:
    """Generate and cache the synthetic dataset at this size once, so the row processes do not race to create it."""
    from cephalo.engine.step.data import build_datasets

    common = options.common_overrides()
    config = TrainConfig(**{**common, "image_size": tuple(common["image_size"])})
    return build_datasets(config)[2]


def worker_environment() -> dict:
    """This process's environment, with cephalo's source folder importable in the worker."""
    env = dict(os.environ)
    src = str(Path(cephalo.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src, env["PYTHONPATH"]]) if env.get("PYTHONPATH") else src
    return env


def parse_worker_output(stdout: str, stderr: str, returncode: int) -> dict:
    """The worker's result: the last stdout line that is a JSON object; else an error naming how it ended."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                break
    last = next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "")
    how = f"killed by signal {-returncode}" if returncode < 0 else f"exit code {returncode}"
    return {"error": f"worker ended without a result ({how})" + (f": {last[:300]}" if last else "")}


def run_worker(spec: dict, timeout_s: float, timeout_hint: str = "") -> dict:
    """One training segment (``spec``: see :mod:`cephalo.bench.worker`) in a fresh ``python -m
    cephalo.bench.worker`` process: its result, or ``{"error": ...}`` (with the end of its stderr)."""
    command = [sys.executable, "-m", "cephalo.bench.worker", json.dumps(spec)]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, errors="backslashreplace",
                              timeout=timeout_s, env=worker_environment())
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:g} s{timeout_hint}", "wall_seconds": time.perf_counter() - start}
    result = parse_worker_output(done.stdout, done.stderr, done.returncode)
    result["wall_seconds"] = time.perf_counter() - start
    if "error" in result:
        result["stderr_tail"] = done.stderr[-4000:]
    return result


def run_row(row: Row, options: BenchOptions) -> dict:
    """Measure one row in a fresh worker process."""
    spec = {"row": row.name, "overrides": row.overrides, "warmup_updates": options.warmup_updates,
            "measure_updates": options.measure_updates, "time_save": row.time_save,
            "save_dir": str(Path(options.output_dir).resolve())}
    return run_worker(spec, options.row_timeout_s, " (--row_timeout_s)")


def progress_line(index: int, total: int, row: Row, result: dict | None, reference: dict | None) -> str:
    head = f"[{index}/{total}] {row.name}:"
    if row.name == "save_frequency":
        return f"{head} derived from the save timed in the current row (see the table)"
    if result is None:
        return f"{head} {row.note}"
    if "error" in result:
        return f"{head} error: {result['error']}"
    text = f"{head} {result['images_per_s']:.3g} img/s"
    if reference is not None and row.name != "current":
        text += f" ({speedup_text(result, reference)} vs current)"
    return text + f", first updates {result['first_updates_seconds']:.1f} s, row took {result['wall_seconds']:.0f} s"


def run_bench(options: BenchOptions, after_row: Callable[[list[Row], str, dict], None] = lambda *_: None,
              ) -> tuple[list[Row], str, dict]:
    """Run the rows; each row gets its worker's result in ``row.extra['result']`` (None: not timed). Also returns
    the data line and the load average before and after the rows (other work on the machine skews the figures).
    ``after_row(rows done, data line, load)`` runs after each row, so a run cut short keeps what it measured."""
    Path(options.output_dir).mkdir(parents=True, exist_ok=True)
    data_note = prepare_data(options)
    print(f"data: {data_note}", flush=True)
    rows = build_rows(options.rows, options.common_overrides(), options.training["gradient_accumulation_steps"],
                      options.training["compile_mode"])
    current, load = None, {"before": load_average()}
    for i, row in enumerate(rows, 1):
        result = run_row(row, options) if row.overrides is not None else None
        row.extra["result"] = result
        if row.name == "current" and result is not None and "error" not in result:
            current = result
        print(progress_line(i, len(rows), row, result, current), flush=True)
        after_row(rows[:i], data_note, {**load, "after": load_average()})
    load["after"] = load_average()
    return rows, data_note, load
