"""A trained model behind one interface: letterboxed uint8 images in, landmarks in original pixels out.

The checkpoint alone says everything needed (model, landmark names, input size, heatmap stride and sigma), so
``load_predictor("best.pt")`` takes no other settings. ONNX files exported by ``cephalo export`` carry the same
facts in their metadata and load through the same function.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cephalo.codec import HeatmapCodec
from cephalo.device import resolve_device
from cephalo.engine.checkpoint import load_checkpoint
from cephalo.engine.precision import resolve_precision
from cephalo.models import create_model
from cephalo.preprocessing.letterbox import Letterbox, to_original
from cephalo.preprocessing.normalize import to_model_input

REQUIRED_KEYS = ("model", "model_name", "landmark_names", "preprocessing", "codec")


def model_facts(state: dict) -> dict:
    """What a deployed model needs besides its weights, from a training checkpoint (also ONNX metadata)."""
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise ValueError(f"not a cephalo training checkpoint: it lacks {', '.join(missing)}")
    return {
        "model_name": state["model_name"],
        "landmark_names": list(state["landmark_names"]),
        "image_size": list(state["preprocessing"]["image_size"]),
        "stride": int(state["codec"]["stride"]),
        "sigma": float(state["codec"]["sigma"]),
    }


def load_trained_model(path: Path | str) -> tuple[torch.nn.Module, dict, dict]:
    """The model of a ``cephalo train`` checkpoint with the weights it predicts with (the EMA when the run kept
    one), in eval mode on the CPU; its :func:`model_facts`; and ``{"weights": "ema" | "model", "epoch": ...}``."""
    state = load_checkpoint(path)
    try:
        facts = model_facts(state)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    use_ema = state.get("predict_with") == "ema" and bool(state.get("ema"))
    model = create_model(facts["model_name"], len(facts["landmark_names"]), head_stride=facts["stride"])
    model.load_state_dict(state["ema"]["module"] if use_ema else state["model"])
    epoch = state.get("epoch")
    return model.eval(), facts, {"weights": "ema" if use_ema else "model", "epoch": None if epoch is None else int(epoch)}


class Predictor:
    """Base: subclasses provide :meth:`heatmaps`. ``facts`` as returned by :func:`model_facts`."""

    def __init__(self, facts: dict):
        self.facts = facts
        self.landmark_names: tuple[str, ...] = tuple(facts["landmark_names"])
        self.image_size: tuple[int, int] = tuple(facts["image_size"])
        self.codec = HeatmapCodec(self.image_size, stride=facts["stride"], sigma=facts["sigma"])

    def heatmaps(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 1, H, W)`` uint8 letterboxed images -> ``(B, K, H / stride, W / stride)`` float32 heatmaps."""
        raise NotImplementedError

    def predict(self, images: torch.Tensor, letterboxes: list[Letterbox]) -> tuple[np.ndarray, np.ndarray]:
        """Landmarks ``(B, K, 2)`` in each image's original pixels and confidences ``(B, K)``."""
        landmarks, confidence = self.codec.decode(self.heatmaps(images))
        return to_original(landmarks.cpu().numpy(), letterboxes), confidence.cpu().numpy()


class TorchPredictor(Predictor):
    """A PyTorch checkpoint from ``cephalo train`` (the EMA weights when the run kept them)."""

    def __init__(self, path: Path | str, device: str = "auto", mixed_precision: bool = True):
        model, facts, _ = load_trained_model(path)
        super().__init__(facts)
        self.device = resolve_device(device)
        self.model = model.to(self.device)
        # fp16 on CUDA, bf16 on CPU: inference needs no GradScaler, and heatmaps are decoded in float32 anyway
        self.precision = resolve_precision(self.device, mixed_precision)

    @torch.inference_mode()
    def heatmaps(self, images: torch.Tensor) -> torch.Tensor:
        with self.precision.autocast():
            return self.model(to_model_input(images, self.device)).float()


def load_predictor(path: Path | str, device: str = "auto", mixed_precision: bool = True) -> Predictor:
    """A :class:`TorchPredictor` for ``.pt`` checkpoints, an ONNX Runtime predictor for ``.onnx`` files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found (a best.pt / last.pt from cephalo train, or an .onnx)")
    if path.suffix.lower() == ".onnx":
        from cephalo.inference.onnx_predictor import OnnxPredictor

        return OnnxPredictor(path)
    return TorchPredictor(path, device, mixed_precision)
