"""Do the targets learn at the user's resolution? Validation MRE against optimizer updates for the target width
given in heatmap pixels (today's `--sigma 2`) and in mm (`--sigma_mm`), at several input sizes, with the product's
own command (`cephalo train`), the same number of updates per arm.

The arms are named here, before they run (issue "Accuracy that holds on unseen images", its first Build point):
hrnet_w18_small on the shared ISBI images (the seeded 120/30 split), lr 2e-3, batch 8, 160 updates (validated after
every epoch of 15 updates and at the end), bf16 + channels_last, no EMA (the raw learning curve), seed 0:

- `<size>-px2`: `--sigma 2` heatmap pixels (today's default; 3.75 mm of anatomy at 256², 0.94 mm at 1024²)
- `<size>-mm3.75`: `--sigma_mm 3.75` (today's 256² width, kept at every size)
- `<size>-mm2`: `--sigma_mm 2`
- `768-px2-stride4`: `--sigma 2 --head_stride 4` at 768²

for sizes 256, 512 and 768. Each arm's run folder holds its metrics; a finished arm is not run again (the script
resumes across sessions), and the table is rewritten after every arm.

    PYTHONPATH=src python benchmarks/target_width.py --dataset_path ../shared/data/isbi2015-train --work /work/tw \\
        --out benchmarks/target_width.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

SIZES = (256, 512, 768)
UPDATES, BATCH, LR = 160, 8, 2e-3


def arms() -> dict[str, list[str]]:
    out = {}
    for size in SIZES:
        base = ["--image_size", str(size), str(size)]
        out[f"{size}-px2"] = [*base, "--sigma", "2"]
        out[f"{size}-mm3.75"] = [*base, "--sigma_mm", "3.75"]
        out[f"{size}-mm2"] = [*base, "--sigma_mm", "2"]
    out["768-px2-stride4"] = ["--image_size", "768", "768", "--sigma", "2", "--head_stride", "4"]
    return out


def curve(run: Path) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["updates"], r["val_mre_mm"]) for r in rows if r.get("val_mre_mm") is not None]


def table(results: dict[str, list[tuple[int, float]]]) -> str:
    checkpoints = sorted({u for points in results.values() for u, _ in points})
    head = "| arm | " + " | ".join(f"{u} upd." for u in checkpoints) + " |"
    lines = [head, "|---|" + "---:|" * len(checkpoints)]
    for arm, points in results.items():
        by = dict(points)
        lines.append(f"| {arm} | " + " | ".join(f"{by[u]:.2f}" if u in by else "" for u in checkpoints) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset_path", required=True)
    parser.add_argument("--work", type=Path, required=True, help="run folders (resumable)")
    parser.add_argument("--out", type=Path, required=True, help="the markdown table (and a .json beside it)")
    parser.add_argument("--arms", default="all", help="a comma list of arm names, or all")
    args = parser.parse_args()
    chosen = arms() if args.arms == "all" else {k: v for k, v in arms().items() if k in args.arms.split(",")}
    results = {}
    for arm, flags in chosen.items():
        run = args.work / arm
        if not (run / "done").is_file():
            command = [sys.executable, "-m", "cephalo", "train", "--dataset_path", args.dataset_path,
                       "--model", "hrnet_w18_small", "--batch_size", str(BATCH), "--lr", str(LR),
                       "--max_updates", str(UPDATES), "--epochs", "100", "--mixed_precision", "--channels_last",
                       "--augmentation", "full", "--seed", "0", *flags, "--output_dir", str(args.work),
                       "--run_name", arm, "--no_progress", "--resume", "auto"]
            print("$ " + " ".join(command[2:]), flush=True)
            subprocess.run(command, check=True)
            (run / "done").write_text("done\n")
        results[arm] = curve(run)
        args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        args.out.write_text(f"<!-- written by benchmarks/target_width.py; arms finished: {len(results)} -->\n\n"
                            "Validation MRE (mm) after N optimizer updates (validation figures: the 30-image split)\n\n"
                            + table(results) + "\n", encoding="utf-8")
        print(table(results), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
