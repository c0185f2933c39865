"""Encode + decode throughput of :class:`cephalo.codec.HeatmapCodec` against a per-sample numpy codec.

The numpy codec is written here, in the style common to pose/landmark libraries: a Python loop over samples and
keypoints, each Gaussian rendered in a +-3 sigma window, and for decoding a per-keypoint argmax, a blur of the
whole map (cv2.GaussianBlur) and a DARK Taylor step. Both use the same coordinate convention, sigma and blur
kernel, so their decoded landmarks agree to well under a hundredth of a heatmap pixel.

Example::

    PYTHONPATH=src python benchmarks/codec_benchmark.py --batch 8 --landmarks 29 --size 1024 --strides 4 2
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time

import cv2
import numpy as np
import torch

from cephalo.codec import HeatmapCodec


class NumpyLoopCodec:
    """Reference codec: per-sample, per-keypoint numpy. Landmarks ``(B, K, 2)`` in input pixels."""

    def __init__(self, input_size: tuple[int, int], stride: int, sigma: float, blur_kernel: int) -> None:
        self.stride, self.sigma, self.blur_kernel = stride, sigma, blur_kernel
        self.size = (input_size[0] // stride, input_size[1] // stride)

    def render(self, landmarks: np.ndarray, heatmaps: np.ndarray) -> np.ndarray:
        """Draw ``(K, 2)`` landmarks into zeroed ``(K, Hh, Wh)`` float32 maps, one +-3 sigma window each."""
        h, w = self.size
        radius = 3 * self.sigma
        for k, (x, y) in enumerate(landmarks):
            cx, cy = (x + 0.5) / self.stride - 0.5, (y + 0.5) / self.stride - 0.5  # heatmap pixels
            if not (np.isfinite(cx) and np.isfinite(cy)):
                continue
            x0, x1 = max(0, math.ceil(cx - radius)), min(w, math.floor(cx + radius) + 1)
            y0, y1 = max(0, math.ceil(cy - radius)), min(h, math.floor(cy + radius) + 1)
            if x0 >= x1 or y0 >= y1:
                continue
            xs = np.arange(x0, x1, dtype=np.float32)[None, :] - cx
            ys = np.arange(y0, y1, dtype=np.float32)[:, None] - cy
            heatmaps[k, y0:y1, x0:x1] = np.exp(-(xs**2 + ys**2) / (2 * self.sigma**2))
        return heatmaps

    def encode(self, landmarks: np.ndarray, collate: bool = True) -> np.ndarray:
        """``(B, K, 2)`` -> ``(B, K, Hh, Wh)``.

        ``collate``: per-sample maps (as a dataset's ``__getitem__`` makes them), stacked into a batch as a collate
        function does. Without it the maps are drawn straight into one ``np.zeros`` batch, whose untouched
        (lazily zeroed) pages cost nothing here: that cost moves to whoever first reads the whole batch.
        """
        batch, num = landmarks.shape[:2]
        if collate:
            return np.stack([self.render(sample, np.zeros((num, *self.size), np.float32)) for sample in landmarks])
        out = np.zeros((batch, num, *self.size), np.float32)
        for b in range(batch):
            self.render(landmarks[b], out[b])
        return out

    def decode(self, heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        batch, num, h, w = heatmaps.shape
        coords = np.zeros((batch, num, 2), np.float32)
        scores = np.zeros((batch, num), np.float32)
        k = self.blur_kernel
        for b in range(batch):
            for n in range(num):
                hm = heatmaps[b, n]
                y, x = np.unravel_index(int(np.argmax(hm)), hm.shape)
                scores[b, n] = hm[y, x]
                px, py = float(x), float(y)
                if 1 <= x < w - 1 and 1 <= y < h - 1:
                    blurred = cv2.GaussianBlur(hm, (k, k), self.sigma, borderType=cv2.BORDER_REPLICATE) if k > 1 else hm
                    L = np.log(np.maximum(blurred[y - 1 : y + 2, x - 1 : x + 2], 1e-10))
                    grad = np.array([L[1, 2] - L[1, 0], L[2, 1] - L[0, 1]]) / 2
                    dxy = (L[2, 2] - L[2, 0] - L[0, 2] + L[0, 0]) / 4
                    hess = np.array([[L[1, 2] - 2 * L[1, 1] + L[1, 0], dxy], [dxy, L[2, 1] - 2 * L[1, 1] + L[0, 1]]])
                    det = np.linalg.det(hess)
                    if det > 0 and hess[0, 0] < 0:
                        ox, oy = np.clip(-np.linalg.inv(hess) @ grad, -1, 1)
                        px, py = px + ox, py + oy
                coords[b, n] = (px + 0.5) * self.stride - 0.5, (py + 0.5) * self.stride - 0.5
        return coords, scores


def _time_ms(fn, repeats: int, warmup: int) -> tuple[list[float], object]:
    """Wall times of ``repeats`` calls in ms, and the last result."""
    result = None
    for _ in range(warmup):
        result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1e3)
    return times, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--landmarks", type=int, default=29)
    parser.add_argument("--size", type=int, default=1024, help="square network input size (pixels)")
    parser.add_argument("--strides", type=int, nargs="+", default=[4, 2])
    parser.add_argument("--sigma", type=float, default=2.0, help="Gaussian sigma in heatmap pixels")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per measurement")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch and OpenCV threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-collate", action="store_true",
                        help="numpy: draw into one lazily zeroed batch array instead of stacking per-sample maps")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    rng = np.random.default_rng(args.seed)
    n_maps = args.batch * args.landmarks
    print(f"torch {torch.__version__}, numpy {np.__version__}, opencv {cv2.__version__}, "
          f"{platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE', 'unset')}")
    print(f"batch {args.batch} x {args.landmarks} landmarks, input {args.size}x{args.size}, sigma {args.sigma}, "
          f"numpy collate {'off' if args.no_collate else 'on'}; times are best of {args.repeats} "
          f"(median in brackets)\n")
    print("| codec | stride | heatmap | encode ms | decode ms | enc+dec ms | heatmaps/s | speed-up "
          "| mean err (hm px) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for stride in args.strides:
        codec = HeatmapCodec((args.size, args.size), stride=stride, sigma=args.sigma)
        ref = NumpyLoopCodec((args.size, args.size), stride, args.sigma, codec.blur_kernel)
        points = rng.uniform(-0.5, args.size - 0.5, (args.batch, args.landmarks, 2)).astype(np.float32)
        rows = []
        for name, enc, dec, pts in (
            ("torch HeatmapCodec", codec.encode, codec.decode, torch.from_numpy(points)),
            ("numpy per-keypoint loop", lambda p: ref.encode(p, not args.no_collate), ref.decode, points),
        ):
            t_enc, maps = _time_ms(lambda: enc(pts), args.repeats, args.warmup)
            t_dec, (decoded, _) = _time_ms(lambda m=maps: dec(m), args.repeats, args.warmup)
            del maps
            err = np.linalg.norm(np.asarray(decoded, np.float64) - points, axis=-1).mean() / stride
            rows.append((name, t_enc, t_dec, err))
        base = min(rows[1][1]) + min(rows[1][2])
        hh = args.size // stride
        for name, t_enc, t_dec, err in rows:
            best = min(t_enc) + min(t_dec)
            median = statistics.median(t_enc) + statistics.median(t_dec)
            print(f"| {name} | {stride} | {hh}x{hh} | {min(t_enc):.1f} ({statistics.median(t_enc):.1f}) | "
                  f"{min(t_dec):.1f} ({statistics.median(t_dec):.1f}) | {best:.1f} ({median:.1f}) | "
                  f"{n_maps / best * 1e3:,.0f} | {base / best:.1f}x | {err:.1e} |")


if __name__ == "__main__":
    main()
