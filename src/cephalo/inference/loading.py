"""``load_predictor``: the right :class:`~cephalo.inference.predictor.Predictor` for a model file."""

from __future__ import annotations

from pathlib import Path

from cephalo.inference.predictor import Predictor


def load_predictor(path: Path | str, device: str = "auto", mixed_precision: bool = True) -> Predictor:
    """A PyTorch predictor for ``cephalo train`` checkpoints, an ONNX Runtime one for ``.onnx`` files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found (a best.pt / last.pt from cephalo train, or an .onnx)")
    if path.suffix.lower() == ".onnx":
        from cephalo.inference.onnx_predictor import OnnxPredictor  # onnxruntime only when asked for

        return OnnxPredictor(path)
    from cephalo.inference.torch_predictor import TorchPredictor

    return TorchPredictor(path, device, mixed_precision)
