"""Predicting with an ONNX model written by ``cephalo export``, on ONNX Runtime (no PyTorch model code needed).

The file's metadata (key ``cephalo``, JSON) carries the checkpoint's model description (its ``StageSpec``):
model name, landmark names, input size, heatmap stride and sigma, and the normalisation. The graph takes letterboxed grey images as float32 pixel values 0..255,
``image (B, 1, H, W)``, normalises them itself and returns ``heatmaps (B, K, H / stride, W / stride)``; landmarks
are decoded here by the same DARK codec as for PyTorch checkpoints.

onnx, onnxruntime and onnxscript are an optional extra (``pip install "cephalo[onnx]"``), imported only when used.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import torch

from cephalo.artifact.checkpoint import StageSpec
from cephalo.artifact.refine import refine_with
from cephalo.codec import HeatmapCodec
from cephalo.inference.predictor import Predictor

METADATA_KEY = "cephalo"
FORMAT_VERSION = 1
INSTALL_HINT = 'pip install "cephalo[onnx]"'
SPEC_KEYS = ("model_name", "landmark_names", "image_size", "stride", "sigma")  # the StageSpec fields it stores


class OnnxUnavailableError(ImportError, ValueError):
    """An optional ONNX package is missing. Also a ValueError, so the command line prints it as a one-line error
    naming the pip command instead of a traceback."""


def require(*names: str):
    """Import the optional ONNX packages ``names`` (returned in order, or the module for one name), or raise
    :class:`OnnxUnavailableError` naming the missing ones and the pip command that installs them."""
    modules, missing = [], []
    for name in names:
        try:
            modules.append(importlib.import_module(name))
        except ImportError:
            missing.append(name)
    if missing:
        raise OnnxUnavailableError(
            f"ONNX support needs the optional package(s) {', '.join(missing)}: {INSTALL_HINT}")
    return modules[0] if len(modules) == 1 else tuple(modules)


def parse_metadata(text: str | None, source: Path | str) -> dict:
    """The ``cephalo`` metadata JSON of an exported model -> a dict holding at least :data:`SPEC_KEYS`."""
    hint = ("not exported by cephalo export (it has no 'cephalo' metadata); export a checkpoint with "
            "`cephalo export --checkpoint best.pt --format onnx --out model.onnx`")
    if not text:
        raise ValueError(f"{source}: {hint}")
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{source}: damaged 'cephalo' metadata ({e}); export the checkpoint again") from None
    if not isinstance(meta, dict) or any(k not in meta for k in SPEC_KEYS):
        raise ValueError(f"{source}: {hint}")
    version = meta.get("format_version", 0)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"{source}: exported by a newer cephalo (metadata format {version}, this one reads up to "
                         f"{FORMAT_VERSION}); upgrade cephalo")
    return meta


def default_providers(ort, device: str = "auto") -> list[str]:
    """CUDA first when this onnxruntime build has it (and ``device`` is not ``cpu``), then the CPU."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    available = ort.get_available_providers()
    if device == "cuda" and "CUDAExecutionProvider" not in available:
        raise ValueError("device cuda: this onnxruntime has no CUDAExecutionProvider (pip install onnxruntime-gpu)")
    cuda = device != "cpu" and "CUDAExecutionProvider" in available
    return (["CUDAExecutionProvider"] if cuda else []) + ["CPUExecutionProvider"]


def _open(ort, path: Path, options, providers: list[str]):
    """An ONNX Runtime session of ``path`` and its cephalo metadata; a ValueError naming the file otherwise."""
    try:
        session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as e:  # not protobuf, truncated, unsupported opset, ...
        raise ValueError(f"{path}: not a readable ONNX model ({type(e).__name__}: {e})") from None
    return session, parse_metadata(session.get_modelmeta().custom_metadata_map.get(METADATA_KEY), path)


def _spec(meta: dict, path: Path) -> StageSpec:
    normalization = meta.get("normalization") or {}
    return StageSpec.from_dict({**{k: meta[k] for k in SPEC_KEYS}, **{
        k: normalization[k] for k in ("grey_mean", "grey_std") if k in normalization},
        **{k: meta[k] for k in ("mm_per_px", "default_spacing_mm", "refined_landmarks", "context")
           if meta.get(k) is not None}}, path)


class OnnxPredictor(Predictor):
    """An ONNX model from ``cephalo export`` on ONNX Runtime, with the interface of every :class:`Predictor`."""

    def __init__(self, path: Path | str, device: str = "auto", providers: list[str] | None = None,
                 threads: int | None = None):
        ort = require("onnxruntime")
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: ONNX model not found")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: no per-node placement chatter
        if threads:
            options.intra_op_num_threads = threads
        chosen = providers or default_providers(ort, device)
        self.session, meta = _open(ort, path, options, chosen)
        local = None
        if meta.get("local"):  # a two-stage export: the local graph lies beside this one
            local_file = path.parent / str(meta["local"])
            if not local_file.is_file():
                raise FileNotFoundError(f"{path}: its local stage {local_file} is missing; keep the two files of "
                                        "cephalo export together")
            self.local_session, local = _open(ort, local_file, options, chosen)
        super().__init__(_spec(meta, path), _spec(local, path) if local else None)
        if local:
            self.local_codec = HeatmapCodec(self.local_spec.image_size, stride=self.local_spec.stride,
                                            sigma=self.local_spec.sigma)
            self.geometry = self.local_spec.patch_geometry()
        self.metadata = meta
        self.path = path
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.providers = self.session.get_providers()

    def refine_scaled(self, images: torch.Tensor, spacing_mm: torch.Tensor, rough: torch.Tensor) -> torch.Tensor:
        session = self.local_session
        names = session.get_inputs()[0].name, session.get_outputs()[0].name

        def heatmaps(patches: torch.Tensor) -> torch.Tensor:
            x = np.ascontiguousarray(patches.cpu().numpy(), dtype=np.float32)
            return torch.from_numpy(session.run([names[1]], {names[0]: x})[0])

        return refine_with(heatmaps, self.local_codec, self.geometry, images, spacing_mm, rough)[0]

    def heatmaps(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """``(B, 1, H, W)`` uint8 (or float 0..255) letterboxed images -> ``(B, K, h, w)`` float32 heatmaps (CPU);
        a local stage's file opened alone takes its patches, ``(B, 2, P, P)`` with a context channel."""
        if isinstance(images, torch.Tensor):
            images = images.detach().cpu().numpy()
        x = np.ascontiguousarray(images, dtype=np.float32)
        c = self.spec.in_chans
        if x.ndim != 4 or x.shape[1] != c or tuple(x.shape[2:]) != self.image_size:
            raise ValueError(f"images must be (B, {c}, {self.image_size[0]}, {self.image_size[1]}) "
                             f"{'patches' if self.spec.mm_per_px else 'letterboxed grey images'}, got {tuple(x.shape)}")
        return torch.from_numpy(self.session.run([self.output_name], {self.input_name: x})[0])
