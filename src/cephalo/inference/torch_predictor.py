"""Predicting with a ``cephalo train`` checkpoint in PyTorch: the model the checkpoint names, with the weights it
predicts with (the EMA's when the run kept one)."""

from __future__ import annotations

from pathlib import Path

import torch

from cephalo.artifact.checkpoint import GLOBAL, LOCAL, Checkpoint, TrainedStage, read_checkpoint
from cephalo.artifact.refine import refine_landmarks
from cephalo.codec import HeatmapCodec
from cephalo.device import resolve_device
from cephalo.inference.predictor import Predictor
from cephalo.models import create_model
from cephalo.precision import resolve_precision
from cephalo.preprocessing.normalize import to_model_input


def load_trained_model(checkpoint: Checkpoint, stage_name: str = GLOBAL) -> tuple[torch.nn.Module, TrainedStage]:
    """A model of ``checkpoint`` (its global one by default) in eval mode on the CPU, and its
    :class:`~cephalo.artifact.checkpoint.TrainedStage`."""
    stage = checkpoint.stage(stage_name)
    spec = stage.spec
    model = create_model(spec.model_name, len(spec.landmark_names), in_chans=spec.in_chans, head_stride=spec.stride)
    try:
        model.load_state_dict(stage.weights)
    except RuntimeError as e:  # the weights of another architecture or landmark set under this model name
        raise ValueError(f"{checkpoint.path}: its weights do not fit a {spec.model_name} with "
                         f"{len(spec.landmark_names)} landmarks ({str(e).splitlines()[0]})") from None
    return model.eval(), stage


class TorchPredictor(Predictor):
    """A PyTorch checkpoint from ``cephalo train`` on ``device``, autocast on request."""

    def __init__(self, path: Path | str, device: str = "auto", mixed_precision: bool = True):
        checkpoint = read_checkpoint(path)
        model, stage = load_trained_model(checkpoint, GLOBAL)
        local = load_trained_model(checkpoint, LOCAL) if checkpoint.has(LOCAL) else None
        super().__init__(stage.spec, local[1].spec if local else None)
        self.validation = checkpoint.validation()
        self.calibration = checkpoint.calibration
        self.device = resolve_device(device)
        self.model = model.to(self.device)
        # fp16 on CUDA, bf16 on CPU: inference needs no GradScaler, and heatmaps are decoded in float32 anyway
        self.precision = resolve_precision(self.device, mixed_precision)
        if local:
            spec = local[1].spec
            self.local_model = local[0].to(self.device)
            self.local_codec = HeatmapCodec(spec.image_size, stride=spec.stride, sigma=spec.sigma)
            self.geometry = spec.patch_geometry()

    @torch.inference_mode()
    def refine_scaled(self, images: torch.Tensor, spacing_mm: torch.Tensor, rough: torch.Tensor) -> torch.Tensor:
        return refine_landmarks(self.local_model, self.local_codec, self.geometry, images, spacing_mm, rough,
                                self.precision.autocast)[0]

    @torch.inference_mode()
    def heatmaps(self, images: torch.Tensor) -> torch.Tensor:
        with self.precision.autocast():
            return self.model(to_model_input(images, self.device)).float()
