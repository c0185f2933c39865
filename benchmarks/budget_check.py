"""Does ``--time_budget`` end a run within its budget on this machine? The wall time of ``cephalo train`` with a
budget, one stage and two (``--refine``), measured from outside the process (the product's own command), against
the budget. The tests check the plan's mechanics; a wall-clock figure belongs here.

    PYTHONPATH=src python benchmarks/budget_check.py --budget 60 --out budget_check/ [--dataset_path synthetic]

Writes ``budget_check.json`` into ``--out`` and prints one line per arm: budget, wall time, over or under.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ARMS = {"one stage": [], "two stages": ["--refine"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=60.0, help="seconds")
    parser.add_argument("--dataset_path", default="synthetic")
    parser.add_argument("--image_size", type=int, default=128)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CEPHALO_CACHE": str(args.out / "cache")}
    common = ["--dataset_path", args.dataset_path, "--image_size", str(args.image_size), str(args.image_size),
              "--mixed_precision", "--channels_last", "--no_progress", "--output_dir", str(args.out / "runs")]
    # the data cached once, so that the arms time training, not decoding (the budget counts both)
    subprocess.run([sys.executable, "-m", "cephalo", "train", *common, "--refine", "--max_updates", "1",
                    "--local_epochs", "1", "--run_name", "warm"], env=env, check=True, capture_output=True)
    results = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
               "date": time.strftime("%Y-%m-%d %H:%M"), "budget_s": args.budget, "arms": {}}
    for name, flags in ARMS.items():
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "cephalo", "train", *common, *flags, "--time_budget",
                               f"{args.budget:g}s", "--run_name", name.replace(" ", "_")], env=env,
                              capture_output=True, text=True)
        wall = time.perf_counter() - start
        results["arms"][name] = {"wall_s": wall, "over_s": wall - args.budget, "returncode": done.returncode}
        print(f"{name}: budget {args.budget:g} s, wall {wall:.1f} s ({wall - args.budget:+.1f} s)", flush=True)
        (args.out / "budget_check.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
