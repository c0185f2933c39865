"""Milliseconds per batch of the on-device augmentation (``cephalo.engine.step.augment.augment``), per level.

Runs the training step's augmentation alone on random normalised images and landmarks, after one warm-up call, and
prints the best and median of ``--repeats`` calls (a shared machine: the best is the figure to compare).

    PYTHONPATH=src python benchmarks/augment_benchmark.py --batch 8 --size 512 --landmarks 19 --device cpu
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from cephalo.device import resolve_device, synchronize
from cephalo.engine.step.augment import AugmentConfig, augment
from cephalo.preprocessing.normalize import GREY_MEAN, GREY_STD


def time_level(level: str, x: torch.Tensor, landmarks: torch.Tensor, repeats: int) -> list[float]:
    cfg = AugmentConfig.for_level(level)
    generator = torch.Generator(x.device).manual_seed(0)
    augment(x, landmarks, cfg, generator)  # warm-up
    times = []
    for _ in range(repeats):
        synchronize(x.device)
        start = time.perf_counter()
        augment(x, landmarks, cfg, generator)
        synchronize(x.device)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=512, help="H = W of the network input")
    parser.add_argument("--landmarks", type=int, default=19)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    g = torch.Generator().manual_seed(0)
    x = ((torch.rand(args.batch, 1, args.size, args.size, generator=g) - GREY_MEAN) / GREY_STD).to(device)
    landmarks = (torch.rand(args.batch, args.landmarks, 2, generator=g) * (args.size - 1)).to(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device: {device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"batch {args.batch} x 1 x {args.size} x {args.size}, {args.landmarks} landmarks, {args.repeats} repeats\n")
    print("| level | best ms | median ms |\n|---|---:|---:|")
    for level in ("light", "full"):
        times = time_level(level, x, landmarks, args.repeats)
        print(f"| {level} | {min(times):.1f} | {statistics.median(times):.1f} |")


if __name__ == "__main__":
    main()
