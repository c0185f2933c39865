"""The batched prediction loop: image files -> landmarks in original pixels, in input order.

:func:`iter_predictions`: DataLoader workers read and letterbox the images (:class:`LetterboxedImages`; an
unreadable image becomes a failure marker, not an exception, so one bad file does not stop the others), the
:class:`~cephalo.inference.predictor.Predictor` runs per batch (tests inject a stub), and results come back in
input order. Which images to read is :mod:`cephalo.inference.inputs`; what is written for them,
:mod:`cephalo.inference.outputs`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from cephalo.console import progress_bar
from cephalo.image_io import ImageReadError, read_grey
from cephalo.inference.predictor import Predictor
from cephalo.preprocessing.letterbox import Letterbox
from cephalo.preprocessing.rescale import Rescale


class LetterboxedImages(Dataset):
    """Image files -> letterboxed ``(1, H, W)`` uint8 tensors, read in DataLoader workers.

    A sample is a dict: ``index``, ``image``, ``letterbox`` (the exact coordinate map back to the original) and,
    with ``keep_original``, the original ``(h, w)`` uint8 image (for overlays); or ``index`` and ``error`` (the
    message, naming the file) when the file cannot be read. Holds only paths and sizes, so it pickles to workers.
    """

    def __init__(self, paths: list[Path | str], image_size: tuple[int, int], keep_original: bool = False,
                 patch_mm: float | None = None, spacings: list[float | None] | None = None,
                 default_spacing_mm: float | None = None):
        """``patch_mm`` (a model with a local stage): each sample also carries ``scaled``, the original resampled to
        that scale from its spacing (``spacings[i]``, else ``default_spacing_mm``), with its :class:`Rescale`."""
        self.paths = [str(p) for p in paths]
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.keep_original = keep_original
        self.patch_mm, self.default_spacing_mm = patch_mm, default_spacing_mm
        self.spacings = list(spacings) if spacings is not None else [None] * len(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        path = self.paths[index]
        try:
            return image_sample(read_grey(path), index, self.image_size, self.keep_original, self.patch_mm,
                                self.spacings[index] or self.default_spacing_mm)
        except ImageReadError as e:
            return {"index": index, "error": str(e)}
        except Exception as e:  # noqa: BLE001 -- e.g. an image too large for OpenCV or for memory: report it, go on with the rest
            return {"index": index, "error": f"{path}: {type(e).__name__}: {e}"}


def image_sample(image: np.ndarray, index: int, image_size: tuple[int, int], keep_original: bool = False,
                 patch_mm: float | None = None, spacing_mm: float | None = None) -> dict:
    """One greyscale uint8 image ``(h, w)`` as a sample of :class:`LetterboxedImages`."""
    letterbox = Letterbox(tuple(image.shape), image_size)
    sample = {"index": index, "image": torch.from_numpy(letterbox.apply(image))[None], "letterbox": letterbox}
    if keep_original:
        sample["original"] = torch.from_numpy(image)
    if patch_mm is not None:
        rescale = Rescale(tuple(image.shape), spacing_mm, patch_mm)
        sample["scaled"] = (torch.from_numpy(rescale.apply(image)), rescale)
    return sample


def collate_images(samples: list[dict]) -> dict:
    """A batch of the readable samples (``images`` ``(b, 1, H, W)`` or ``None``) and the failures among them."""
    ok = [s for s in samples if "error" not in s]
    return {
        "images": torch.stack([s["image"] for s in ok]) if ok else None,
        "indices": [s["index"] for s in ok],
        "letterboxes": [s["letterbox"] for s in ok],
        "originals": [s.get("original") for s in ok],
        "scaled": [s["scaled"] for s in ok] if ok and "scaled" in ok[0] else None,
        "failures": [(s["index"], s["error"]) for s in samples if "error" in s],
    }


@dataclass
class ImageResult:
    """Landmarks ``(K, 2)`` in original pixels and confidences ``(K,)`` of image ``index``; ``image_size`` (h, w)."""

    index: int
    landmarks: np.ndarray
    confidence: np.ndarray
    image_size: tuple[int, int]
    original: np.ndarray | None = None


@dataclass
class ImageFailure:
    index: int
    message: str


@dataclass
class LoopStats:
    images: int = 0
    failed: int = 0
    model_seconds: float = 0.0  # predictor time (model + decoding), without reading and letterboxing


def iter_predictions(predictor: Predictor, paths: list[Path | str], batch_size: int = 4, num_workers: int = 2,
                     progress: bool = True, keep_originals: bool = False, stats: LoopStats | None = None,
                     spacings: list[float | None] | None = None) -> Iterator[ImageResult | ImageFailure]:
    """Predict every image of ``paths``; yields an :class:`ImageResult` or :class:`ImageFailure` per path, in order.
    ``spacings`` (mm per pixel, None where unknown) place a local stage's patches at their scale."""
    if batch_size < 1:
        raise ValueError(f"--batch_size must be at least 1, got {batch_size}")
    if num_workers < 0:
        raise ValueError(f"--num_workers must be 0 or more, got {num_workers}")
    stats = stats if stats is not None else LoopStats()
    device = getattr(predictor, "device", None)
    patch_mm = getattr(predictor, "patch_mm", None)
    local = getattr(predictor, "local_spec", None)
    dataset = LetterboxedImages(paths, predictor.image_size, keep_original=keep_originals, patch_mm=patch_mm,
                                spacings=spacings, default_spacing_mm=local.default_spacing_mm if local else None)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=min(num_workers, len(paths)),
                        collate_fn=collate_images, pin_memory=getattr(device, "type", None) == "cuda")
    with progress_bar(total=len(paths), unit="img", desc="predict", enabled=progress, leave=True) as bar:
        for batch in loader:
            outcomes: list[ImageResult | ImageFailure] = [ImageFailure(i, m) for i, m in batch["failures"]]
            if batch["images"] is not None:
                start = time.perf_counter()
                if batch["scaled"] is not None:
                    landmarks, confidence = predictor.predict(batch["images"], batch["letterboxes"], batch["scaled"])
                else:
                    landmarks, confidence = predictor.predict(batch["images"], batch["letterboxes"])
                stats.model_seconds += time.perf_counter() - start
                for j, index in enumerate(batch["indices"]):
                    original = batch["originals"][j]
                    outcomes.append(ImageResult(
                        index=index, landmarks=np.asarray(landmarks[j], np.float64),
                        confidence=np.asarray(confidence[j], np.float64),
                        image_size=tuple(batch["letterboxes"][j].source_size),
                        original=None if original is None else original.numpy()))
            stats.images += len(batch["indices"])
            stats.failed += len(batch["failures"])
            bar.update(len(outcomes))
            if batch["failures"]:
                bar.set_postfix(failed=stats.failed)
            yield from sorted(outcomes, key=lambda o: o.index)
