"""Predicting with a ``cephalo train`` checkpoint in PyTorch: the model the checkpoint names, with the weights it
predicts with (the EMA's when the run kept one)."""

from __future__ import annotations

from pathlib import Path

import torch

from cephalo.device import resolve_device
from cephalo.engine.checkpoint import Stage, load_checkpoint, read_stage
from cephalo.engine.precision import resolve_precision
from cephalo.inference.predictor import Predictor
from cephalo.models import create_model
from cephalo.preprocessing.normalize import to_model_input


def load_trained_model(path: Path | str) -> tuple[torch.nn.Module, Stage, int | None]:
    """The checkpoint's global model in eval mode on the CPU, its :class:`Stage` and the epoch it was saved at."""
    state = load_checkpoint(path)
    stage = read_stage(state, path)
    spec = stage.spec
    model = create_model(spec.model_name, len(spec.landmark_names), head_stride=spec.stride)
    try:
        model.load_state_dict(stage.weights)
    except RuntimeError as e:  # the weights of another architecture or landmark set under this model name
        raise ValueError(f"{path}: its weights do not fit a {spec.model_name} with {len(spec.landmark_names)} "
                         f"landmarks ({str(e).splitlines()[0]})") from None
    epoch = state.get("epoch")
    return model.eval(), stage, None if epoch is None else int(epoch)


class TorchPredictor(Predictor):
    """A PyTorch checkpoint from ``cephalo train`` on ``device``, autocast on request."""

    def __init__(self, path: Path | str, device: str = "auto", mixed_precision: bool = True):
        model, stage, _ = load_trained_model(path)
        super().__init__(stage.spec)
        self.device = resolve_device(device)
        self.model = model.to(self.device)
        # fp16 on CUDA, bf16 on CPU: inference needs no GradScaler, and heatmaps are decoded in float32 anyway
        self.precision = resolve_precision(self.device, mixed_precision)

    @torch.inference_mode()
    def heatmaps(self, images: torch.Tensor) -> torch.Tensor:
        with self.precision.autocast():
            return self.model(to_model_input(images, self.device)).float()
