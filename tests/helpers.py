"""Small builders shared by tests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cephalo.artifact.checkpoint import StageSpec
from cephalo.image_io import write_image
from cephalo.inference.predictor import Predictor


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


class TinyBackbone(nn.Module):
    """Two strided convs: ``(B, 1, H, W) -> [(B, 8, H / 4, W / 4)]``, the feature list a heatmap head reads."""

    def __init__(self, in_chans: int = 1):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(in_chans, 8, 3, stride=2, padding=1), nn.ReLU(),
                                 nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU())
        self.out_channels = (8,)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.net(x)]

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        pass


class TinyHead(nn.Module):
    """A 1x1 conv from the last feature map to the heatmaps at stride 4."""

    def __init__(self, num_landmarks: int):
        super().__init__()
        self.final = nn.Conv2d(8, num_landmarks, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.final(features[-1])

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        pass


class TinyUpHead(nn.Module):
    """Heatmaps at stride 2 from TinyBackbone's stride-4 features (the local stage's stride)."""

    def __init__(self, num_landmarks: int):
        super().__init__()
        self.final = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(8, num_landmarks, 1))

    def forward(self, features):
        return self.final(features[-1])

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        pass


TINY_MODELS = ("tiny_global", "tiny_local")


def register_tiny_models() -> None:
    """``tiny_global`` (stride 4) and ``tiny_local`` (stride 2, the local stage's) in the model registry, so that a
    two-stage run builds them by name; :func:`unregister_tiny_models` takes them out again."""
    from cephalo.models.registry import register_model

    register_model("tiny_global", backbone=lambda in_chans=1: TinyBackbone(in_chans),
                   head=lambda backbone, num_landmarks, head_stride: TinyHead(num_landmarks))
    register_model("tiny_local", backbone=lambda in_chans=1: TinyBackbone(in_chans),
                   head=lambda backbone, num_landmarks, head_stride: TinyUpHead(num_landmarks))


def unregister_tiny_models() -> None:
    from cephalo.models.registry import unregister

    for name in TINY_MODELS:
        unregister(name)


def tiny_heatmap_model(num_landmarks: int = 3):
    """A :class:`~cephalo.models.HeatmapModel` of a few hundred parameters (stride 4), for checkpoint fixtures."""
    from cephalo.models import HeatmapModel

    return HeatmapModel(TinyBackbone(), TinyHead(num_landmarks), num_landmarks, stride=4)


class TinyHeatmapNet(nn.Module):
    """No BatchNorm: its outputs do not depend on how samples are grouped into batches."""

    def __init__(self, num_landmarks: int = 3, stride: int = 4):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.ReLU(),
                                 nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, num_landmarks, 1))

    def forward(self, x):
        return self.net(x)


class KnownLandmarksPredictor(Predictor):
    """A perfect model: for each letterboxed image (found by its bytes, :meth:`key`) the heatmaps of the landmarks it
    was told, so what comes back depends only on the pixels it is given."""

    def __init__(self, image_size, names: tuple[str, ...], truth_by_image: dict[str, np.ndarray]):
        super().__init__(StageSpec("stub", names, image_size, stride=4, sigma=2.0))
        self.truth_by_image = truth_by_image

    @staticmethod
    def key(image: torch.Tensor) -> str:
        return hashlib.sha1(image.contiguous().numpy().tobytes()).hexdigest()

    def heatmaps(self, images: torch.Tensor) -> torch.Tensor:
        truth = np.stack([self.truth_by_image[self.key(im)] for im in images])
        return self.codec.encode(torch.as_tensor(truth, dtype=torch.float32))


class CheckpointedBackbone(nn.Module):
    """Two conv-BatchNorm-ReLU blocks, stride 4, the second recomputed in backward when checkpointing is on (as
    the real backbones do): the fast paths of training all act on it, in milliseconds."""

    def __init__(self, in_chans: int = 1):
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(in_chans, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.block2 = nn.Sequential(nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.out_channels, self.checkpointing = (8,), False

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.block1(x)
        if self.checkpointing and self.training and torch.is_grad_enabled():
            return [torch.utils.checkpoint.checkpoint(self.block2, x, use_reentrant=False)]
        return [self.block2(x)]

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.checkpointing = enable


def raise_on_call(fn, n: int):
    """A stand-in for ``fn`` that stops like Ctrl+C at its ``n``-th call and calls ``fn`` at the others (patch it in
    with monkeypatch)."""
    calls = []

    def stand_in(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt
        return fn(*args, **kwargs)

    return stand_in


def interrupted_at_epoch(epoch: int):
    """A stand-in for ``cephalo.engine.run.fit.train_one_epoch`` that stops like Ctrl+C when this process starts
    its ``epoch``-th epoch (patch it in with monkeypatch; the real one runs the others)."""
    from cephalo.engine.step.loop import train_one_epoch

    return raise_on_call(train_one_epoch, epoch)


def flip_byte(path: Path, where: str, seed: int = 0) -> None:
    """Flip one byte of a checkpoint at a seeded position of ``where``: its zip header, its central directory, or
    inside the data of its largest tensor (stored uncompressed: the zip's own CRC of it is never checked by
    torch.load)."""
    import random
    import zipfile

    data = bytearray(path.read_bytes())
    rng = random.Random(seed)
    if where == "zip header":
        position = rng.randrange(0, 4)
    elif where == "central directory":
        position = len(data) - rng.randrange(30, 60)
    else:
        with zipfile.ZipFile(path) as archive:
            entry = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
        header = entry.header_offset  # the local header: 30 bytes, then the name and the extra field
        name, extra = (int.from_bytes(data[header + o:header + o + 2], "little") for o in (26, 28))
        position = header + 30 + name + extra + rng.randrange(0, entry.file_size)
    data[position] ^= 0x5A
    path.write_bytes(bytes(data))
