"""Predicting with a ``cephalo train`` checkpoint in PyTorch: the model the checkpoint names, with the weights it
predicts with (the EMA's when the run kept one)."""

from __future__ import annotations

from pathlib import Path

import torch

from cephalo.codec import HeatmapCodec
from cephalo.device import resolve_device
from cephalo.engine.checkpoint import GLOBAL, LOCAL, Stage, load_checkpoint, read_stage
from cephalo.engine.local_patches import refine_landmarks
from cephalo.engine.precision import resolve_precision
from cephalo.inference.predictor import Predictor
from cephalo.models import create_model
from cephalo.preprocessing.normalize import to_model_input


def load_trained_model(path: Path | str, stage_name: str = GLOBAL, state: dict | None = None
                       ) -> tuple[torch.nn.Module, Stage, int | None]:
    """A model of the checkpoint (its global one by default) in eval mode on the CPU, its :class:`Stage` and the
    epoch it was saved at; ``state``: the checkpoint when already loaded."""
    state = load_checkpoint(path) if state is None else state
    stage = read_stage(state, path, stage_name)
    spec = stage.spec
    model = create_model(spec.model_name, len(spec.landmark_names), in_chans=spec.in_chans, head_stride=spec.stride)
    try:
        model.load_state_dict(stage.weights)
    except RuntimeError as e:  # the weights of another architecture or landmark set under this model name
        raise ValueError(f"{path}: its weights do not fit a {spec.model_name} with {len(spec.landmark_names)} "
                         f"landmarks ({str(e).splitlines()[0]})") from None
    epoch = None if stage.weights_kind == "frozen" else state.get("epoch")  # a frozen stage's epoch is not kept
    return model.eval(), stage, None if epoch is None else int(epoch)


class TorchPredictor(Predictor):
    """A PyTorch checkpoint from ``cephalo train`` on ``device``, autocast on request."""

    def __init__(self, path: Path | str, device: str = "auto", mixed_precision: bool = True):
        state = load_checkpoint(path)
        model, stage, _ = load_trained_model(path, GLOBAL, state)
        local = load_trained_model(path, LOCAL, state) if LOCAL in (state.get("stages") or {}) else None
        super().__init__(stage.spec, local[1].spec if local else None)
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
