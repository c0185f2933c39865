"""Exporting a trained checkpoint to ONNX: pixels in, heatmaps out, with the model description in the metadata.

The exported graph takes letterboxed grey images as float32 pixel values 0..255, ``image (B, 1, H, W)`` (a
uint8 image cast to float32, nothing else), normalises them inside the graph exactly like training
(``(x / 255 - GREY_MEAN) / GREY_STD``) and returns ``heatmaps (B, K, H / stride, W / stride)`` float32. The
batch axis is dynamic; H and W are the training input size. Landmarks are **not** decoded inside the graph:
:class:`cephalo.inference.onnx_predictor.OnnxPredictor` (or ``load_predictor("model.onnx")``) decodes the
heatmaps with the same DARK sub-pixel codec as PyTorch checkpoints, and other runtimes can do the same from the
metadata (stride and sigma; heatmap pixel ``j`` is centred on input coordinate ``j * stride + (stride - 1) / 2``).

Exporter: PyTorch's TorchScript-based exporter (``dynamo=False``) first, the ``torch.export``-based one
(``dynamo=True``, needs onnxscript) when that fails or is gone from a future PyTorch. Both give identical
heatmaps for every cephalo model (HRNet's size-matched fusion, bilinear head upsampling, ResNet deconvolutions);
the TorchScript one takes ~1 s for HRNet-W18-small where the dynamo one takes ~11 s, and prints nothing once its
deprecation warning is silenced. Both are run quietly.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from cephalo import __version__
from cephalo.artifact.checkpoint import GLOBAL, LOCAL, TrainedStage, read_checkpoint
from cephalo.atomic import write_bytes
from cephalo.inference.onnx_predictor import (
    FORMAT_VERSION,
    METADATA_KEY,
    SPEC_KEYS,
    OnnxPredictor,
    require,
)
from cephalo.inference.torch_predictor import load_trained_model
from cephalo.preprocessing.normalize import GREY_MEAN, GREY_STD

DEFAULT_OPSET = 18  # both exporters support it; onnxruntime >= 1.14, TensorRT >= 8.6, OpenVINO read it
INPUT_NAME, OUTPUT_NAME = "image", "heatmaps"
EXPORTERS = ("auto", "torchscript", "dynamo")


class PixelsToHeatmaps(nn.Module):
    """``image (B, 1, H, W)`` float 0..255 (or uint8) -> ``heatmaps (B, K, H / stride, W / stride)`` float32.

    The normalisation is ``to_model_input``'s, operation for operation, so fp32 results match PyTorch.
    """

    def __init__(self, model: nn.Module, mean: float = GREY_MEAN, std: float = GREY_STD):
        super().__init__()
        self.model = model
        self.mean, self.std = mean, std

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.float().div(255.0).sub(self.mean).div(self.std)
        return self.model(x).float()


@dataclass
class ExportReport:
    """What :func:`export_checkpoint` wrote: the file, the module it traced, and how."""

    path: Path
    module: PixelsToHeatmaps
    metadata: dict
    exporter: str  # "torchscript" or "dynamo"
    opset: int
    seconds: float
    inputs: list[tuple[str, str, list]] = field(default_factory=list)  # (name, dtype, shape) per graph input
    outputs: list[tuple[str, str, list]] = field(default_factory=list)
    fallbacks: list[str] = field(default_factory=list)  # why earlier exporters were not used (auto mode)
    local: ExportReport | None = None  # the local stage's file, for a two-stage checkpoint


def export_metadata(stage: TrainedStage, epoch: int | None, checkpoint_path: Path | str) -> dict:
    """The JSON stored under ``metadata_props['cephalo']``: the stage's description plus how to feed the graph."""
    spec = stage.spec.to_dict()
    return {
        "format_version": FORMAT_VERSION,
        **{k: spec[k] for k in SPEC_KEYS},
        "input": {"name": INPUT_NAME, "dtype": "float32",
                  "shape": ["batch", stage.spec.in_chans, *spec["image_size"]],
                  "values": (f"grey pixel values 0..255 of patches of the original at {stage.spec.mm_per_px:g} mm per "
                             "pixel, centred on the rough landmarks" + (
                                 f"; channel 1: the same centre at {stage.spec.context * stage.spec.mm_per_px:g} mm "
                                 f"per pixel (the image box-averaged over {stage.spec.context} x "
                                 f"{stage.spec.context} pixels)" if stage.spec.context else "")
                             if stage.spec.mm_per_px else
                             f"grey pixel values 0..255 of the letterboxed image ({stage.spec.letterbox})")},
        "output": {"name": OUTPUT_NAME, "dtype": "float32",
                   "shape": ["batch", len(spec["landmark_names"]), *stage.spec.heatmap_size]},
        "normalization": {"grey_mean": stage.spec.grey_mean, "grey_std": stage.spec.grey_std, "in_graph": True,
                          "formula": "(image / 255 - grey_mean) / grey_std"},
        "decoding": "heatmap argmax + DARK sub-pixel refinement, not in the graph; pixel j of a heatmap is centred "
                    "on input coordinate j * stride + (stride - 1) / 2",
        "weights": stage.weights_kind,
        "epoch": epoch,
        "checkpoint": Path(checkpoint_path).name,
        "cephalo_version": __version__,
    }


@contextlib.contextmanager
def _native_output_silenced():
    """Point file descriptors 1 and 2 at os.devnull: when the TorchScript exporter fails, its C++ side prints the
    whole traced graph (megabytes), even without ``verbose`` (its log switch is left on by a torch bug)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = []
    try:
        with open(os.devnull, "wb") as null:
            for fd in (1, 2):
                try:
                    saved.append((fd, os.dup(fd)))
                except OSError:  # no such descriptor (some embedded interpreters): nothing to silence
                    continue
                os.dup2(null.fileno(), fd)
            yield
    finally:
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)


@contextlib.contextmanager
def _quiet():
    """Silence the exporters' deprecation/tracer warnings, their logging, progress prints and native dumps."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    onnx_log = getattr(torch._C, "_jit_is_onnx_log_enabled", lambda: False)()
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), _native_output_silenced():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
        if not onnx_log and hasattr(torch._C, "_jit_set_onnx_log_enabled"):
            torch._C._jit_set_onnx_log_enabled(False)  # the TorchScript exporter leaves it on


def _export_torchscript(module: nn.Module, example: torch.Tensor, opset: int):
    onnx = require("onnx")
    buffer = io.BytesIO()
    with _quiet():
        torch.onnx.export(module, (example,), buffer, dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], do_constant_folding=True,
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
    return onnx.load_from_string(buffer.getvalue())


def _export_dynamo(module: nn.Module, example: torch.Tensor, opset: int):
    require("onnx", "onnxscript")
    batch = torch.export.Dim("batch")
    with _quiet():
        program = torch.onnx.export(module, (example,), None, dynamo=True, opset_version=opset, verbose=False,
                                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                    dynamic_shapes={"image": {0: batch}}, optimize=True)
    return program.model_proto


def _declare_shape(value, shape: list) -> None:
    dims = value.type.tensor_type.shape.dim
    del dims[:]
    for d in shape:
        dim = dims.add()
        if isinstance(d, str):
            dim.dim_param = d
        else:
            dim.dim_value = int(d)


def _value_info(values) -> list[tuple[str, str, list]]:
    from onnx import helper

    out = []
    for v in values:
        t = v.type.tensor_type
        shape = [d.dim_param or d.dim_value for d in t.shape.dim]
        out.append((v.name, helper.tensor_dtype_to_np_dtype(t.elem_type).name, shape))
    return out


def local_path(out_path: Path | str) -> Path:
    """Where the local stage of a two-stage export goes: ``model.onnx`` -> ``model.local.onnx``."""
    out_path = Path(out_path)
    return out_path.with_name(f"{out_path.stem}.local.onnx")


def export_checkpoint(checkpoint_path: Path | str, out_path: Path | str, opset: int | None = None,
                      batch_size_hint: int = 1, exporter: str = "auto") -> ExportReport:
    """Export ``checkpoint_path`` to ``out_path`` (see the module docstring) and say how it went.

    ``exporter``: ``auto`` (TorchScript, then dynamo if that fails), ``torchscript`` or ``dynamo``.
    ``batch_size_hint`` is the batch of the example input the exporter traces; the graph takes any batch
    (hints below 2 are traced at 2, because ``torch.export`` specialises size-1 dimensions).

    A checkpoint with a local stage gives two files: the global graph at ``out_path``, whose metadata names the
    local one, and the local graph (patches ``(N, C, P, P)`` of grey values 0..255 at the patch scale, ``C`` 2 with
    a context channel -> one
    heatmap per landmark) at :func:`local_path`, its metadata carrying the patch scale. ``report.local`` says
    how the second one went.
    """
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {', '.join(EXPORTERS)}, got {exporter!r}")
    require("onnx")  # a missing package is named before anything is read
    checkpoint = read_checkpoint(checkpoint_path)
    local = None
    if checkpoint.has(LOCAL):
        model, stage = load_trained_model(checkpoint, LOCAL)
        local = _export_stage(model, stage, checkpoint.epoch(LOCAL), checkpoint_path, local_path(out_path), opset,
                              batch_size_hint, exporter,
                              {"stage": LOCAL, "mm_per_px": stage.spec.mm_per_px,
                               "default_spacing_mm": stage.spec.default_spacing_mm,
                               "refined_landmarks": stage.spec.to_dict()["refined_landmarks"],
                               "context": stage.spec.context})
    model, stage = load_trained_model(checkpoint, GLOBAL)
    report = _export_stage(model, stage, checkpoint.epoch(GLOBAL), checkpoint_path, out_path, opset, batch_size_hint,
                           exporter, {"local": local.path.name} if local else {})
    report.local = local
    return report


def _export_stage(model: nn.Module, stage: TrainedStage, epoch: int | None, checkpoint_path: Path | str,
                  out_path: Path | str, opset: int | None, batch_size_hint: int, exporter: str,
                  extra: dict) -> ExportReport:
    """One model of a checkpoint as one ONNX file; ``extra`` joins its metadata."""
    onnx = require("onnx")
    opset = DEFAULT_OPSET if opset is None else int(opset)
    out_path = Path(out_path)
    start = time.perf_counter()
    spec = stage.spec
    module = PixelsToHeatmaps(model, spec.grey_mean, spec.grey_std).eval()
    h, w = spec.image_size
    example = torch.randint(0, 256, (max(2, int(batch_size_hint)), spec.in_chans, h, w),
                            generator=torch.Generator().manual_seed(0))
    example = example.float()

    attempts = {"auto": ("torchscript", "dynamo")}.get(exporter, (exporter,))
    failures, proto, used = [], None, None
    for name in attempts:
        try:
            with torch.no_grad():
                proto = (_export_torchscript if name == "torchscript" else _export_dynamo)(module, example, opset)
            used = name
            break
        except ImportError as e:  # onnxscript missing for the dynamo exporter
            if len(attempts) == 1:
                raise
            failures.append(f"{name} exporter: {e}")
        except Exception as e:  # an exporter that cannot handle this model / opset / torch version: try the next
            failures.append(f"{name} exporter: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e) else ''}")
    if proto is None:
        raise RuntimeError(f"{checkpoint_path}: ONNX export failed (opset {opset}):\n  " + "\n  ".join(failures))

    # The TorchScript exporter names the heatmap sizes symbolically (from the traced resize arithmetic) and may
    # reuse "batch" for them; H and W are fixed by the training size, so declare the exact shapes.
    _declare_shape(proto.graph.input[0], ["batch", spec.in_chans, h, w])
    _declare_shape(proto.graph.output[0], ["batch", len(spec.landmark_names), *spec.heatmap_size])
    metadata = {**export_metadata(stage, epoch, checkpoint_path), **extra}
    others = [p for p in proto.metadata_props if p.key != METADATA_KEY]  # keep what the exporter wrote
    del proto.metadata_props[:]
    proto.metadata_props.extend(others)
    proto.metadata_props.add(key=METADATA_KEY, value=json.dumps(metadata))
    what = f"patches at {spec.mm_per_px:g} mm/px" if spec.mm_per_px else "letterboxed grey image"
    proto.doc_string = (f"cephalo {spec.model_name}: {what} (float32 0..255) -> "
                        f"{len(spec.landmark_names)} landmark heatmaps at stride {spec.stride}")
    onnx.checker.check_model(proto)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(out_path, proto.SerializeToString(), fsync=True)
    return ExportReport(path=out_path, module=module, metadata=metadata, exporter=used, opset=opset,
                        seconds=time.perf_counter() - start, inputs=_value_info(proto.graph.input),
                        outputs=_value_info(proto.graph.output), fallbacks=failures)


def compare_with_torch(report: ExportReport, batch_size: int = 1, seed: int = 0) -> tuple[float, float]:
    """ONNX Runtime (CPU) against the exported PyTorch module on random uint8 images: ``(max abs difference of the
    heatmaps, max abs heatmap value)``, both float32."""
    predictor = OnnxPredictor(report.path, device="cpu")
    h, w = predictor.image_size
    images = torch.randint(0, 256, (batch_size, predictor.spec.in_chans, h, w), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        expected = report.module(images.float())
    got = predictor.heatmaps(images)
    return float((got - expected).abs().max()), float(expected.abs().max())
