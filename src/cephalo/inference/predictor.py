"""A trained model behind one interface: letterboxed uint8 images in, landmarks in original pixels out.

:class:`Predictor` holds what every kind of model file shares (the :class:`~cephalo.engine.checkpoint.StageSpec`:
landmark names, input size, heatmap stride and sigma) and decodes heatmaps with the codec; a subclass only says how
it computes heatmaps: :class:`~cephalo.inference.torch_predictor.TorchPredictor` for ``cephalo train``
checkpoints, :class:`~cephalo.inference.onnx_predictor.OnnxPredictor` for ``cephalo export`` files.
:func:`~cephalo.inference.loading.load_predictor` picks one by file type.
"""

from __future__ import annotations

import numpy as np
import torch

from cephalo.codec import HeatmapCodec
from cephalo.engine.checkpoint import StageSpec
from cephalo.preprocessing.letterbox import Letterbox, to_original


class Predictor:
    """Base: subclasses provide :meth:`heatmaps`."""

    def __init__(self, spec: StageSpec):
        self.spec = spec
        self.landmark_names: tuple[str, ...] = spec.landmark_names
        self.image_size: tuple[int, int] = spec.image_size
        self.codec = HeatmapCodec(spec.image_size, stride=spec.stride, sigma=spec.sigma)

    def heatmaps(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 1, H, W)`` uint8 letterboxed images -> ``(B, K, H / stride, W / stride)`` float32 heatmaps."""
        raise NotImplementedError

    def predict(self, images: torch.Tensor, letterboxes: list[Letterbox]) -> tuple[np.ndarray, np.ndarray]:
        """Landmarks ``(B, K, 2)`` in each image's original pixels and confidences ``(B, K)``."""
        landmarks, confidence = self.codec.decode(self.heatmaps(images))
        return to_original(landmarks.cpu().numpy(), letterboxes), confidence.cpu().numpy()
