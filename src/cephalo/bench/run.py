"""Drive the benchmark: prepare the synthetic data once, then run every row in its own worker process, one after
the other (rows must not compete for the machine), printing a line as each finishes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cephalo
from cephalo.bench.report import load_average, speedup_text
from cephalo.bench.techniques import Row, build_rows
from cephalo.engine.config import TrainConfig


@dataclass
class BenchOptions:
    """The ``cephalo bench`` flags."""

    model: str = "hrnet_w18"
    image_size: tuple[int, int] = (256, 256)
    batch_size: int = 1
    gradient_accumulation_steps: int = 8
    device: str = "auto"
    num_workers: int = 2
    augmentation: str = "full"
    compile_mode: str = "default"
    warmup_updates: int = 2
    measure_updates: int = 5
    techniques: tuple[str, ...] = ()
    output_dir: str = "benchmarks/bench"
    vram_budget_gb: float | None = None
    cache_dir: str | None = None
    seed: int = 0
    epoch_images: int = 700
    row_timeout_s: float = 1800.0

    def common_overrides(self) -> dict:
        """TrainConfig values every row shares."""
        return {"dataset_path": "synthetic", "image_size": list(self.image_size), "model": self.model,
                "batch_size": self.batch_size, "gradient_accumulation_steps": self.gradient_accumulation_steps,
                "device": self.device, "num_workers": self.num_workers, "augmentation": self.augmentation,
                "vram_budget_gb": self.vram_budget_gb, "cache_dir": self.cache_dir, "seed": self.seed,
                "progress": False}


def prepare_data(options: BenchOptions) -> str:
    """Generate and cache the synthetic dataset at this size once, so the row processes do not race to create it."""
    from cephalo.engine.data import build_datasets

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


def run_row(row: Row, options: BenchOptions) -> dict:
    """Measure one row in a fresh ``python -m cephalo.bench.worker`` process."""
    spec = {"row": row.name, "overrides": row.overrides, "warmup_updates": options.warmup_updates,
            "measure_updates": options.measure_updates, "time_save": row.time_save,
            "save_dir": str(Path(options.output_dir).resolve())}
    command = [sys.executable, "-m", "cephalo.bench.worker", json.dumps(spec)]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, errors="backslashreplace",
                              timeout=options.row_timeout_s, env=worker_environment())
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {options.row_timeout_s:g} s (--row_timeout_s)",
                "wall_seconds": time.perf_counter() - start}
    result = parse_worker_output(done.stdout, done.stderr, done.returncode)
    result["wall_seconds"] = time.perf_counter() - start
    if "error" in result:
        result["stderr_tail"] = done.stderr[-4000:]
    return result


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


def run_bench(options: BenchOptions) -> tuple[list[Row], str, dict]:
    """Run the rows; each row gets its worker's result in ``row.extra['result']`` (None: not timed). Also returns
    the data line and the load average before and after the rows (other work on the machine skews the figures)."""
    Path(options.output_dir).mkdir(parents=True, exist_ok=True)
    data_note = prepare_data(options)
    print(f"data: {data_note}", flush=True)
    rows = build_rows(list(options.techniques), options.common_overrides(), options.gradient_accumulation_steps,
                      options.compile_mode)
    current, load = None, {"before": load_average()}
    for i, row in enumerate(rows, 1):
        result = run_row(row, options) if row.overrides is not None else None
        row.extra["result"] = result
        if row.name == "current" and result is not None and "error" not in result:
            current = result
        print(progress_line(i, len(rows), row, result, current), flush=True)
    load["after"] = load_average()
    return rows, data_note, load
