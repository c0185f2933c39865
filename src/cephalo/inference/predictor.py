"""A trained model behind one interface: letterboxed uint8 images in, landmarks in original pixels out.

:class:`Predictor` holds what every kind of model file shares (the :class:`~cephalo.artifact.checkpoint.StageSpec`:
landmark names, input size, heatmap stride and sigma) and decodes heatmaps with the codec; a subclass only says how
it computes heatmaps: :class:`~cephalo.inference.torch_predictor.TorchPredictor` for ``cephalo train``
checkpoints, :class:`~cephalo.inference.onnx_predictor.OnnxPredictor` for ``cephalo export`` files.
:func:`~cephalo.inference.loading.load_predictor` picks one by file type.
"""

from __future__ import annotations

import numpy as np
import torch

from cephalo.artifact.calibration import ErrorCalibration
from cephalo.artifact.checkpoint import StageSpec
from cephalo.codec import HeatmapCodec
from cephalo.inference.tta import NO_TTA, TestTimeAugmentation
from cephalo.preprocessing.letterbox import Letterbox, to_original
from cephalo.preprocessing.rescale import Rescale, stack_padded

Scaled = tuple[torch.Tensor, Rescale]  # an original resampled to the local stage's patch scale, and the mapping


class Predictor:
    """Base: subclasses provide :meth:`heatmaps`."""

    def __init__(self, spec: StageSpec, local_spec: StageSpec | None = None):
        self.spec, self.local_spec = spec, local_spec
        self.landmark_names: tuple[str, ...] = spec.landmark_names
        self.image_size: tuple[int, int] = spec.image_size
        self.codec = HeatmapCodec(spec.image_size, stride=spec.stride, sigma=spec.sigma)
        self.tta: TestTimeAugmentation | None = None  # predict each image as several views (cephalo.inference.tta)
        self.validation: dict | None = None  # the figures the model was kept for (Checkpoint.validation)
        self.calibration: ErrorCalibration | None = None  # expected errors from peaks (cephalo calibrate)

    def heatmaps(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 1, H, W)`` uint8 letterboxed images -> ``(B, K, H / stride, W / stride)`` float32 heatmaps."""
        raise NotImplementedError

    @property
    def patch_mm(self) -> float | None:
        """The local stage's patch scale (mm per pixel), None without a local stage."""
        return self.local_spec.mm_per_px if self.local_spec is not None else None

    def refine_scaled(self, images: torch.Tensor, spacing_mm: torch.Tensor, rough: torch.Tensor) -> torch.Tensor:
        """The local stage: ``images (B, 1, H, W)`` uint8 at the patch scale, ``spacing_mm (B,)``, ``rough (B, K, 2)``
        in their pixels -> refined ``(B, K, 2)`` in the same pixels. Subclasses with a local stage provide it."""
        raise NotImplementedError(f"{type(self).__name__} has no local stage")

    def refine(self, landmarks: np.ndarray, scaled: list[Scaled]) -> np.ndarray:
        """Original-pixel landmarks ``(B, K, 2)`` corrected by the local stage from each image at the patch scale."""
        images = stack_padded([image for image, _ in scaled])
        spacing = torch.tensor([r.actual_mm_per_px for _, r in scaled])
        rough = torch.tensor(np.stack([r.forward(p) for (_, r), p in zip(scaled, landmarks)]), dtype=torch.float32)
        tta = self.tta or NO_TTA
        found = tta.combine(torch.stack([self.refine_scaled(images, spacing,
                                                            rough + torch.tensor(o) / spacing[:, None, None])
                                         for o in tta.local_offsets_mm]))
        if self.local_spec.refined_landmarks is not None:  # the others keep the global stage's position
            refined = torch.tensor([n in self.local_spec.refined_landmarks for n in self.landmark_names])
            found = torch.where(refined[:, None].to(found.device), found, rough.to(found.device))
        found = found.double().cpu().numpy()
        return np.stack([r.inverse(p) for (_, r), p in zip(scaled, found)])

    def global_landmarks(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 1, H, W)`` uint8 letterboxed images -> landmarks ``(B, K, 2)`` in their pixels and confidences
        ``(B, K)``; with :attr:`tta`, combined over its views (one forward pass per view: memory as without)."""
        tta, found, confidence = self.tta or NO_TTA, [], []
        for view in tta.views:
            landmarks, c = self.codec.decode(self.heatmaps(view.warp(images)))
            found.append(view.unwarp(landmarks, self.image_size))
            confidence.append(c)
        return tta.combine(torch.stack(found)), torch.stack(confidence).mean(0)

    def predict(self, images: torch.Tensor, letterboxes: list[Letterbox],
                scaled: list[Scaled] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Landmarks ``(B, K, 2)`` in each image's original pixels and the global heatmaps' confidences ``(B, K)``;
        with a local stage and ``scaled`` (each image at :attr:`patch_mm`), the landmarks are refined."""
        landmarks, confidence = self.global_landmarks(images)
        original = to_original(landmarks.cpu().numpy(), letterboxes)
        if self.local_spec is not None and scaled is not None:
            original = self.refine(original, scaled)
        return original, confidence.cpu().numpy()
