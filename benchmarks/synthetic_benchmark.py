"""Speed of the built-in synthetic dataset: rendering one cephalogram at a few sizes, and writing the default dataset.

``render_cephalogram`` is timed per image over distinct seeds after one warm-up render; ``write_synthetic_dataset``
is timed once for the default 48 / 16 / 16 split at 640 x 512 (render, PNG encoding, CSV and JSON) into a fresh
temporary folder. OpenCV keeps its default thread count, as in ``cephalo`` itself.

    PYTHONPATH=src python benchmarks/synthetic_benchmark.py
    PYTHONPATH=src python benchmarks/synthetic_benchmark.py --sizes 640x512 1024x1024 --images 40
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from cephalo.datasets.synthetic import DEFAULT_SPLITS, render_cephalogram, write_synthetic_dataset


def parse_size(text: str) -> tuple[int, int]:
    """``"640x512"`` -> ``(640, 512)`` (height x width)."""
    height, width = text.lower().split("x")
    return int(height), int(width)


def render_seconds(size: tuple[int, int], images: int, num_landmarks: int) -> np.ndarray:
    """Seconds per render of ``images`` distinct seeds at ``size``, after a warm-up render."""
    render_cephalogram(0, size, num_landmarks)  # warm-up: imports, allocator, OpenCV thread pool
    seconds = []
    for seed in range(1, images + 1):
        start = time.perf_counter()
        render_cephalogram(seed, size, num_landmarks)
        seconds.append(time.perf_counter() - start)
    return np.asarray(seconds)


def write_seconds(splits: dict[str, int], size: tuple[int, int], num_landmarks: int) -> float:
    """Seconds to write the dataset of ``splits`` at ``size`` into a new temporary folder."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        write_synthetic_dataset(Path(tmp) / "synthetic", splits, size, num_landmarks, progress=False)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=[(640, 512), (1024, 1024)],
                        help="render sizes, HEIGHTxWIDTH")
    parser.add_argument("--images", type=int, default=40, help="renders timed per size")
    parser.add_argument("--num_landmarks", type=int, default=19)
    parser.add_argument("--dataset_size", type=parse_size, default=(640, 512), help="image size of the written dataset")
    args = parser.parse_args()

    print(f"| machine | {platform.processor() or platform.machine()}, OpenCV threads {cv2.getNumThreads()} |")
    print("|---|---|\n")
    print("| what | size | images | ms / image (mean) | ms / image (median) | images/s |")
    print("|---|---|---|---|---|---|")
    for size in args.sizes:
        seconds = render_seconds(size, args.images, args.num_landmarks)
        print(f"| render_cephalogram | {size[0]}x{size[1]} | {len(seconds)} | {1000 * seconds.mean():.1f} "
              f"| {1000 * np.median(seconds):.1f} | {1 / seconds.mean():.1f} |")
    splits = dict(DEFAULT_SPLITS)
    count = sum(splits.values())
    total = write_seconds(splits, args.dataset_size, args.num_landmarks)
    split_text = " / ".join(str(n) for n in splits.values())
    print(f"| write_synthetic_dataset ({split_text}) | {args.dataset_size[0]}x{args.dataset_size[1]} | {count} "
          f"| {1000 * total / count:.1f} | - | {count / total:.1f} |")
    print(f"\nwrite_synthetic_dataset total: {total:.2f} s")


if __name__ == "__main__":
    main()
