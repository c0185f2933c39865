"""ONNX export: graphs that match PyTorch for any batch, carry the model facts, and fail with clear messages.

Two tiny checkpoints trained by ``cephalo train`` (1 epoch at 64x64): HRNet-W18-small at head stride 2 with EMA
(bilinear head upsampling, size-matched fusion) and ResNet-50 at stride 4 (deconvolutions).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cephalo.artifact.checkpoint import load_checkpoint, read_stage
from cephalo.cli.main import main
from cephalo.image_io import read_grey
from cephalo.inference.loading import load_predictor
from cephalo.preprocessing.letterbox import Letterbox
from cephalo.preprocessing.normalize import GREY_MEAN, GREY_STD
from tests.helpers import write_csv_dataset

SIZE = 64
MODELS = {"hrnet": ["--model", "hrnet_w18_small", "--head_stride", "2", "--use_ema"],
          "resnet": ["--model", "resnet50", "--head_stride", "4"]}


def _train(root: Path, flags: list[str]) -> Path:
    csv_path, _ = write_csv_dataset(root / "data", n=6, size=(80, 64))
    args = ["train", "--dataset_path", str(csv_path), "--image_size", str(SIZE), str(SIZE), "--epochs", "1",
            "--batch_size", "2", "--num_workers", "0", "--no_progress", "--device", "cpu", "--val_fraction", "0.34",
            "--cache_dir", str(root / "cache"), "--output_dir", str(root / "runs"), "--run_name", "r", *flags]
    assert main(args) == 0
    return root / "runs" / "r" / "best.pt"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """``checkpoints("hrnet")``: best.pt of a real ``cephalo train`` run, trained once per module."""
    trained = {}

    def get(name: str) -> Path:
        if name not in trained:
            trained[name] = _train(tmp_path_factory.mktemp(name), MODELS[name])
        return trained[name]

    return get


@pytest.fixture(scope="module", params=list(MODELS))
def exported(request, checkpoints):
    """(checkpoint, exported .onnx) per model."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from cephalo.inference.export import export_checkpoint

    checkpoint = checkpoints(request.param)
    return checkpoint, export_checkpoint(checkpoint, checkpoint.parent / "model.onnx").path


def _dataset_images(checkpoint):
    """The tiny dataset's images letterboxed to the model input: uint8 (B, 1, H, W) and their letterboxes."""
    folder = checkpoint.parents[2] / "data" / "images"
    images, boxes = [], []
    for path in sorted(folder.glob("*.png")):
        image = read_grey(path)
        box = Letterbox(image.shape[:2], (SIZE, SIZE))
        images.append(box.apply(image))
        boxes.append(box)
    return torch.from_numpy(np.stack(images)[:, None]), boxes


def test_heatmaps_match_pytorch_for_any_batch(exported):
    checkpoint, onnx_path = exported
    torch_model = load_predictor(checkpoint, device="cpu", mixed_precision=False)
    onnx_model = load_predictor(onnx_path)
    stride = torch_model.spec.stride
    generator = torch.Generator().manual_seed(0)
    for batch in (1, 3):
        images = torch.randint(0, 256, (batch, 1, SIZE, SIZE), dtype=torch.uint8, generator=generator)
        got, expected = onnx_model.heatmaps(images), torch_model.heatmaps(images)
        assert got.dtype == torch.float32 and got.shape == (batch, 3, SIZE // stride, SIZE // stride)
        assert (got - expected).abs().max().item() <= 1e-3


def test_metadata_round_trip(exported):
    import onnx

    checkpoint, onnx_path = exported
    state = load_checkpoint(checkpoint)
    proto = onnx.load(str(onnx_path))
    meta = json.loads({p.key: p.value for p in proto.metadata_props}["cephalo"])
    spec = read_stage(state, checkpoint).spec
    assert {k: meta[k] for k in ("model_name", "landmark_names", "image_size", "stride", "sigma")} == \
        {k: v for k, v in spec.to_dict().items() if k in meta}
    assert meta["format_version"] == 1
    assert meta["normalization"]["grey_mean"] == GREY_MEAN and meta["normalization"]["grey_std"] == GREY_STD
    assert meta["weights"] == ("ema" if state.get("predict_with") == "ema" else "model")

    predictor = load_predictor(onnx_path)
    assert predictor.spec == spec and predictor.landmark_names == ("S", "N", "Me")
    assert predictor.image_size == (SIZE, SIZE) and predictor.codec.stride == spec.stride
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
    (graph_input,), (graph_output,) = proto.graph.input, proto.graph.output
    assert (graph_input.name, dims(graph_input)) == ("image", ["batch", 1, SIZE, SIZE])
    h = SIZE // spec.stride
    assert (graph_output.name, dims(graph_output)) == ("heatmaps", ["batch", 3, h, h])
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_landmarks_match_the_pytorch_checkpoint(exported):
    checkpoint, onnx_path = exported
    images, boxes = _dataset_images(checkpoint)
    expected, expected_conf = load_predictor(checkpoint, device="cpu", mixed_precision=False).predict(images, boxes)
    got, conf = load_predictor(onnx_path).predict(images, boxes)
    assert got.shape == (len(boxes), 3, 2)
    np.testing.assert_allclose(got, expected, atol=0.05, rtol=0)
    np.testing.assert_allclose(conf, expected_conf, atol=1e-3, rtol=0)


def test_cephalo_export_command(exported, tmp_path, capsys):
    import onnx

    checkpoint, _ = exported
    out = tmp_path / "deploy" / "model.onnx"
    assert main(["export", "--checkpoint", str(checkpoint), "--format", "onnx", "--out", str(out), "--opset", "17"]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and " MB" in printed
    assert "image     float32 [batch, 1, 64, 64]" in printed and "heatmaps  float32 [batch, 3, " in printed
    assert "self-check" in printed and "OK" in printed
    assert [p.name for p in out.parent.iterdir()] == ["model.onnx"]  # written atomically: no temporary left
    assert onnx.load(str(out)).opset_import[0].version == 17


def test_falls_back_to_the_dynamo_exporter(checkpoints, tmp_path, monkeypatch):
    """When the TorchScript exporter fails (gone from a future PyTorch, an opset it lacks), torch.export + onnxscript
    takes over and gives the same heatmaps. On HRNet (size-matched fusion, bilinear head) only: it takes ~10 s."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from cephalo.inference import export

    def unavailable(*args):
        raise RuntimeError("simulated: no TorchScript exporter")

    monkeypatch.setattr(export, "_export_torchscript", unavailable)
    report = export.export_checkpoint(checkpoints("hrnet"), tmp_path / "dynamo.onnx")
    assert report.exporter == "dynamo" and "simulated" in report.fallbacks[0]
    assert export.compare_with_torch(report, batch_size=3)[0] <= 1e-3


def test_onnxscript_is_needed_only_by_the_dynamo_exporter(checkpoints, tmp_path, monkeypatch):
    pytest.importorskip("onnx")
    from cephalo.inference.export import export_checkpoint

    monkeypatch.setitem(sys.modules, "onnxscript", None)
    assert export_checkpoint(checkpoints("hrnet"), tmp_path / "a.onnx").exporter == "torchscript"
    with pytest.raises(ImportError, match=r'onnxscript: pip install "cephalo\[onnx\]"'):
        export_checkpoint(checkpoints("hrnet"), tmp_path / "b.onnx", exporter="dynamo")


def test_missing_onnx_packages_are_named(tmp_path, monkeypatch, capsys):
    from cephalo.inference.export import export_checkpoint
    from cephalo.inference.onnx_predictor import OnnxPredictor

    (tmp_path / "model.onnx").write_bytes(b"not used")
    (tmp_path / "best.pt").write_bytes(b"not read either: the missing package is found first")
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r'onnx: pip install "cephalo\[onnx\]"'):
        export_checkpoint(tmp_path / "best.pt", tmp_path / "model.onnx")
    assert main(["export", "--checkpoint", str(tmp_path / "best.pt"), "--out", str(tmp_path / "m.onnx")]) == 2
    assert 'pip install "cephalo[onnx]"' in capsys.readouterr().err

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r'onnxruntime: pip install "cephalo\[onnx\]"'):
        load_predictor(tmp_path / "model.onnx")
    with pytest.raises(ImportError, match="onnxruntime"):
        OnnxPredictor(tmp_path / "model.onnx")


def test_onnx_files_not_from_cephalo_are_refused(tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["image"], ["heatmaps"])], "g",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, 8, 8])],
                              [helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, [1, 1, 8, 8])])
    foreign = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(foreign))
    with pytest.raises(ValueError, match="not exported by cephalo export"):
        load_predictor(foreign)

    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00\x01 definitely not protobuf" * 10)
    with pytest.raises(ValueError, match="not a readable ONNX model"):
        load_predictor(garbage)
