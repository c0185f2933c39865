"""Small builders shared by tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cephalo.image_io import write_image


def write_csv_dataset(root: Path, n: int = 6, size=(80, 60), names=("S", "N", "Me"), seed=0, split_column=False):
    """A tiny CSV dataset with a bright dot under each landmark; returns (csv path, landmarks (n, K, 2))."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    h, w = size
    all_points = rng.uniform([3, 3], [w - 4, h - 4], (n, len(names), 2)).round(1)
    header = ["image", "spacing_mm"] + (["split"] if split_column else []) + [f"{k}_{a}" for k in names for a in "xy"]
    lines = [",".join(header)]
    for i in range(n):
        image = np.full((h, w), 20, np.uint8)
        for x, y in all_points[i]:
            image[int(round(y)), int(round(x))] = 255
        write_image(root / "images" / f"{i:03d}.png", image)
        split = ["train", "valid", "test"][i % 3] if split_column else None
        cells = [f"images/{i:03d}.png", "0.1"] + ([split] if split else []) + [f"{v:g}" for v in all_points[i].reshape(-1)]
        lines.append(",".join(cells))
    csv_path = root / "landmarks.csv"
    csv_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return csv_path, all_points
