"""Behaviour and speed of two source trees of cephalo, measured back to back with the product's own command
(``python -m cephalo train``, each tree's ``src`` first on ``PYTHONPATH``): what a refactoring of the engine must
keep.

    python benchmarks/engine_parity.py --tree before=/path/to/old/checkout --tree after=. --out parity/ [--main_job 2]

For each tree, in turn:
- **tiny**: a seeded 2-epoch global run on the synthetic dataset at 64² (full augmentation, EMA, 2 loader workers,
  ``--deterministic``): the SHA-256 of its final weights and EMA weights (``last.pt``);
- **refine**: a seeded 2-epoch global + 2-epoch local run (``--refine``, 32 px patches) at 64²: the same of the
  local stage's final weights (``local_last.pt``) and of ``best.pt``'s global weights;
- **main job** (``--main_job N`` times, trees alternating): the README's ``cephalo train --mixed_precision
  --channels_last``, its training images/s per epoch (epochs 2-20, from ``metrics.jsonl``) and final MRE.

``--old_jitter NAME`` runs NAME's **refine** arm once more with the local stage's jitter drawn as before the one
engine (from the process's random stream, per batch, in the step) instead of per (seed, epoch, image): if the local
weights then equal the old tree's, the jitter is the only difference between the two.

Writes ``parity.json`` into ``--out`` (updated after every run) and prints a table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

TINY = ["--image_size", "64", "64", "--epochs", "2", "--use_ema", "--deterministic", "--seed", "3", "--no_progress"]
REFINE = TINY + ["--refine", "--local_epochs", "2", "--patch_size", "32"]
MAIN_JOB = ["--mixed_precision", "--channels_last", "--no_progress"]


def digest(state: dict) -> str:
    """SHA-256 over a state dict's tensors (names and bytes, in name order)."""
    h = hashlib.sha256()
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


# The local stage's jitter as the engine drew it before 2026-12-05: in the step, per batch, from the process's
# random stream (the samples' own jitter is left unused)
OLD_JITTER = """
import sys
import cephalo.engine.stages.local_stage as local_stage
from cephalo.engine.step.local_patches import draw_jitter, local_inputs, local_loss
def loss(self, model, batch, augment=True):
    images, landmarks, spacing_mm, _ = batch
    jitter = draw_jitter(self.samples.jitter_pool_mm, len(images), None, local_stage.EXTRA_JITTER_MM)
    x, points = local_inputs(images, spacing_mm, landmarks, jitter, self.geometry, self.parts.device,
                             self.augment if augment else None, self.config.channels_last)
    return local_loss(model, self.codec, self.parts.precision, x, points, len(self.local_spec.landmark_names))
local_stage.LocalStage.loss = loss
from cephalo.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def run(tree: Path, out: Path, name: str, args: list[str], old_jitter: bool = False) -> tuple[Path, float]:
    """``cephalo train`` of ``tree`` into ``out/name``; returns the run folder and the wall time."""
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "CEPHALO_CACHE": str(out / "cache")}
    start = time.perf_counter()
    entry = ["-c", OLD_JITTER] if old_jitter else ["-m", "cephalo"]
    with open(out / f"{name}.log", "w") as log:
        subprocess.run([sys.executable, *entry, "train", *args, "--output_dir", str(out / "runs"),
                        "--run_name", name], env=env, cwd=tree, check=True, stdout=log, stderr=subprocess.STDOUT)
    return out / "runs" / name, time.perf_counter() - start


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", required=True, help="NAME=PATH of a checkout, twice or more")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--main_job", type=int, default=0, help="how many main-job runs per tree (alternating)")
    parser.add_argument("--old_jitter", metavar="NAME", help="a tree whose refine arm runs again with the old jitter")
    parser.add_argument("--skip", action="store_true", help="only what --old_jitter and --main_job ask for")
    args = parser.parse_args()
    trees = dict(t.split("=", 1) for t in args.tree)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "parity.json"
    results = json.loads(path.read_text()) if path.is_file() else {}

    def save() -> None:
        path.write_text(json.dumps(results, indent=2))

    for name, tree in ({} if args.skip else trees).items():
        tree = Path(tree).resolve()
        entry = results.setdefault(name, {"tree": str(tree), "commit": subprocess.run(
            ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()})
        run_dir, _ = run(tree, args.out, f"{name}-tiny", TINY)
        last = load(run_dir / "last.pt")
        entry["tiny"] = {"model": digest(last["model"]), "ema": digest(last["ema"]["module"]),
                         "val_mre_mm": last["metrics"]["val_mre_mm"]}
        run_dir, _ = run(tree, args.out, f"{name}-refine", REFINE)
        local, best = load(run_dir / "local_last.pt"), load(run_dir / "best.pt")
        entry["refine"] = {"local_model": digest(local["model"]), "local_ema": digest(local["ema"]["module"]),
                           "global_in_best": digest(best["frozen"]["global"]) if "frozen" in best else None,
                           "local_val_mre_mm": local["metrics"]["val_mre_mm"]}
        save()
    if args.old_jitter:
        run_dir, _ = run(Path(trees[args.old_jitter]).resolve(), args.out, f"{args.old_jitter}-refine-old-jitter",
                         REFINE, old_jitter=True)
        local = load(run_dir / "local_last.pt")
        results[args.old_jitter]["refine_old_jitter"] = {"local_model": digest(local["model"]),
                                                         "local_ema": digest(local["ema"]["module"])}
        save()
    for i in range(args.main_job):
        for name, tree in trees.items():
            run_dir, seconds = run(Path(tree).resolve(), args.out, f"{name}-main{i}", MAIN_JOB)
            rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
            speeds = [r["images_per_s"] for r in rows if r["epoch"] >= 2]
            results[name].setdefault("main_job", []).append(
                {"wall_s": seconds, "images_per_s_mean": statistics.mean(speeds), "images_per_s": speeds,
                 "val_mre_mm": rows[-1]["val_mre_mm"]})
            save()
    for name, entry in results.items():
        jobs = entry.get("main_job", [])
        speed = ", ".join(f"{j['images_per_s_mean']:.2f}" for j in jobs)
        print(f"{name} ({entry['commit']}): tiny {entry['tiny']}, refine {entry['refine']}, "
              f"old jitter {entry.get('refine_old_jitter')}, main job img/s {speed}")


if __name__ == "__main__":
    main()
