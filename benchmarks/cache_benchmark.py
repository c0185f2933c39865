"""Images per second: decoding + letterboxing the originals vs reading the letterbox cache.

Both sides run in one thread (what one DataLoader worker does) over the same images, after one warm-up pass, so
both read from the OS page cache: the figure compares CPU work per image, not disk speed.

    python benchmarks/cache_benchmark.py --csv ../shared/data/isbi2015-train/landmarks.csv --image_size 1024 1024
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import cv2

from cephalo.datasets.csv_dataset import read_csv_dataset
from cephalo.image_io import read_grey
from cephalo.preprocessing.cache import LetterboxCache
from cephalo.preprocessing.cached_dataset import CachedLandmarkDataset
from cephalo.preprocessing.letterbox import Letterbox


def rate(fn, items, repeats: int) -> float:
    for item in items:  # warm-up: page cache, allocator
        fn(item)
    start = time.perf_counter()
    for _ in range(repeats):
        for item in items:
            fn(item)
    return repeats * len(items) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", type=Path, default=Path("../shared/data/isbi2015-train/landmarks.csv"))
    parser.add_argument("--image_size", type=int, nargs=2, default=[1024, 1024])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    cv2.setNumThreads(1)  # one worker's view; OpenCV would otherwise spread a resize over every core

    records, issues = read_csv_dataset(args.csv, "all")
    size = tuple(args.image_size)
    with tempfile.TemporaryDirectory() as tmp:
        cache = LetterboxCache(tmp, size)
        prepared = cache.prepare(records, progress=False)
        dataset = CachedLandmarkDataset(prepared.records, prepared.entries)

        def decode_and_letterbox(record):
            image = read_grey(record.image_path)
            return Letterbox(image.shape, size).apply(image)

        originals = rate(decode_and_letterbox, records, args.repeats)
        cached = rate(dataset.__getitem__, range(len(dataset)), args.repeats * 5)
    print(f"| machine | {platform.processor() or platform.machine()}, {len(records)} images, one thread |")
    print("| path | images/s |\n|---|---|")
    print(f"| decode original + letterbox to {size[0]}x{size[1]} | {originals:.1f} |")
    print(f"| read letterbox cache (dataset item) | {cached:.1f} |")
    print(f"| speed-up | {cached / originals:.1f}x |")


if __name__ == "__main__":
    main()
