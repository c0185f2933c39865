"""The local stage's training samples: each image at the patch scale with its landmarks and the jitter its patches
are cut with this epoch.

The jitter of image ``i`` in epoch ``e`` is drawn from a generator seeded by ``(seed, e, i)`` alone, so it is the
same whichever process, worker or micro-batch takes the image: several processes train as one with their batches
added up, an out-of-memory recovery redoes a group with the same patches, and a resumed epoch goes on as it was.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from cephalo.engine.step.local_patches import draw_jitter
from cephalo.preprocessing.patch_scale import ScaledImages
from cephalo.preprocessing.rescale import stack_padded

PatchSample = tuple[Tensor, Tensor, Tensor, Tensor, int]


class PatchSamples(Dataset):
    """Items keyed ``(epoch, index)`` (an :class:`~cephalo.engine.step.data.EpochSampler` with ``keyed=True``):
    ``image (h, w)`` uint8 at the patch scale, ``landmarks (K, 2)`` in its pixels, ``spacing_mm ()``,
    ``jitter_mm (K, 2)``: where the patch centres lie relative to the truth, and ``index``.

    ``jitter_pool_mm (N, K, 2)``: the global model's errors on its validation images, drawn per landmark, plus
    Gaussian noise of ``extra_mm``. Pickles without the images' pixels (workers, Windows' spawn): they are
    memory-mapped again where they are unpickled (:class:`ScaledImages`).
    """

    def __init__(self, images: ScaledImages, jitter_pool_mm: Tensor, extra_mm: float, seed: int):
        self.images, self.extra_mm, self.seed = images, extra_mm, seed
        self.jitter_pool_mm = jitter_pool_mm.detach().to("cpu", torch.float32)

    def __len__(self) -> int:
        return len(self.images)

    def jitter(self, epoch: int, index: int) -> Tensor:
        """``(K, 2)`` mm: image ``index``'s jitter in ``epoch``."""
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) * 1_000_003 + index)
        return draw_jitter(self.jitter_pool_mm, 1, generator, self.extra_mm)[0]

    def __getitem__(self, key: tuple[int, int]) -> PatchSample:
        epoch, index = key
        image = torch.from_numpy(np.array(self.images.arrays[index]))
        return (image, self.images.landmarks[index], self.images.spacing_mm[index], self.jitter(epoch, index),
                index)


def collate_patch_samples(items: list[PatchSample]) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``images (B, 1, H, W)`` uint8 (padded right and bottom, which leaves pixel coordinates unchanged),
    ``landmarks (B, K, 2)``, ``spacing_mm (B,)``, ``jitter_mm (B, K, 2)``, ``index (B,)``."""
    images, landmarks, spacing, jitter, index = zip(*items)
    return (stack_padded(images), torch.stack(landmarks), torch.stack(spacing), torch.stack(jitter),
            torch.tensor(index))
