"""Is the local stage's patch pipeline a bottleneck? Times, on real images, per image and per update:
decoding + resampling to the patch scale (once per run), cutting all K patches of a batch (grid_sample),
jitter + cut + augmentation (``local_inputs``), and the local model's forward + backward.

    PYTHONPATH=src python benchmarks/patch_benchmark.py --dataset_path ../shared/data/isbi2015-train/landmarks.csv
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time

import numpy as np
import torch

from cephalo.codec import HeatmapCodec
from cephalo.codec.patches import PatchGeometry
from cephalo.datasets.sources import DatasetSpec, load_records
from cephalo.engine.step.augment import AugmentConfig
from cephalo.engine.step.local_patches import draw_jitter, local_inputs, local_loss
from cephalo.models import create_model
from cephalo.precision import resolve_precision
from cephalo.preprocessing.cache import PatchScaleCache
from cephalo.preprocessing.patch_scale import ScaledImages


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset_path", required=True)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--mm_per_px", type=float, default=0.2)
    parser.add_argument("--batch_images", type=int, default=4)
    parser.add_argument("--model", default="hrnet_w18_small")
    parser.add_argument("--context", type=int, default=0, help="--patch_context: a second channel at N x coarser")
    args = parser.parse_args()
    records = load_records(DatasetSpec(args.dataset_path), "all")[: args.images]
    with tempfile.TemporaryDirectory() as cache:  # a fresh cache: every image decoded and resampled, as timed
        scaled, per_image_s = ScaledImages.read(records, PatchScaleCache(cache, args.mm_per_px), progress=False)
        scaled = dataclasses.replace(scaled, arrays=tuple(np.array(a) for a in scaled.arrays))  # off the deleted files
    k = len(records[0].landmark_names)
    geometry = PatchGeometry(args.patch, args.mm_per_px, args.context)
    cpu = torch.device("cpu")
    rows = torch.arange(args.batch_images)
    pool = torch.randn(100, k, 2) * 1.5
    images = scaled.images(rows).float()
    cut_s = timed(lambda: geometry.cut(images, scaled.landmarks[rows], scaled.spacing_mm[rows]), 20)
    cfg = AugmentConfig.for_level("light")
    inputs = lambda: local_inputs(scaled.images(rows), scaled.spacing_mm[rows], scaled.landmarks[rows],  # noqa: E731
                                  draw_jitter(pool, args.batch_images), geometry, cpu, cfg, channels_last=True)
    inputs_s = timed(inputs, 20)
    model = create_model(args.model, k, in_chans=len(geometry.channel_scales), head_stride=2)
    model = model.to(memory_format=torch.channels_last)
    codec = HeatmapCodec((args.patch, args.patch), stride=2, sigma=2.0)
    precision = resolve_precision(cpu, True, "auto")
    x, points = inputs()

    def step():
        local_loss(model, codec, precision, x, points, k).backward()

    step_s = timed(step, 5)
    print(f"# Local-stage patch pipeline ({len(records)} ISBI images, {k} landmarks, patch {args.patch} px at "
          f"{args.mm_per_px} mm/px{f', context x{args.context}' if args.context else ''}, {args.batch_images} images "
          f"per update = {args.batch_images * k} patches)\n")
    print("| what | time | per image |\n|---|---:|---:|")
    print(f"| decode + resample to the patch scale (once, into the cache) | | {per_image_s * 1000:.1f} ms |")
    print(f"| cut all patches of a batch (grid_sample) | {cut_s * 1000:.1f} ms | "
          f"{cut_s * 1000 / args.batch_images:.2f} ms |")
    print(f"| jitter + cut + light augmentation (local_inputs) | {inputs_s * 1000:.1f} ms | "
          f"{inputs_s * 1000 / args.batch_images:.2f} ms |")
    print(f"| {args.model} forward + backward, bf16 autocast, channels_last | {step_s * 1000:.0f} ms | "
          f"{step_s * 1000 / args.batch_images:.0f} ms |")
    print(f"\npatch preparation is {100 * inputs_s / (inputs_s + step_s):.1f} % of an update; the model step alone "
          f"would run {args.batch_images / step_s:.1f} images/s ({args.batch_images * k / step_s:.0f} patches/s)")


if __name__ == "__main__":
    main()
