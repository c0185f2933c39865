"""cephalo.models: timm-compatible names/shapes, head output shapes, the model registry, gradient checkpointing,
pretrained loading."""

from __future__ import annotations

import ast
import json
import math
import sys
from pathlib import Path

import pytest
import torch

import cephalo.models.layers as layers_module
import cephalo.models.registry as registry
from cephalo.engine.runtime.monitor import saved_activation_bytes
from cephalo.models import LIGHTER_MODEL, MODEL_NAMES, TIMM_NAMES, HeatmapModel, create_model, load_pretrained
from cephalo.models.heads import HRNetHead, hrnet_head

MANIFESTS = Path(__file__).resolve().parents[3] / "shared" / "reference" / "timm-state-dicts"
TIMM_NAME = {"hrnet_w18_small": "hrnet_w18_small_v2"}
CLASSIFICATION_PARTS = ("incre_modules", "downsamp_modules", "final_layer", "classifier", "fc")
BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


def manifest(name: str) -> dict:
    path = MANIFESTS / f"{TIMM_NAME.get(name, name)}.json"
    if not path.is_file():
        pytest.skip(f"timm manifest not found: {path}")
    return json.loads(path.read_text())


def fake_timm_state_dict(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with the shapes timm's full (3-channel, ImageNet-classifier) model has."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in manifest(name)["state_dict"].items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1234)
        else:
            state[key] = torch.randn(shape, generator=gen)
    return state


# --- names, shapes and parameter counts against timm -------------------------------------------------------------

@pytest.mark.parametrize("name", ["hrnet_w18_small", "hrnet_w18", "hrnet_w32", "hrnet_w48", "resnet50", "resnet101"])
def test_backbone_matches_timm_manifest(name):
    info = manifest(name)
    expected = info["state_dict"]
    with torch.device("meta"):  # names and shapes only: no memory, no init cost
        model = create_model(name, num_landmarks=5, in_chans=3)
    ours = {k: list(v.shape) for k, v in model.backbone.state_dict().items()}

    assert [k for k in ours if k not in expected] == []
    assert {k: (v, expected[k]) for k, v in ours.items() if v != expected[k]} == {}
    lacking = [k for k in expected if k not in ours]
    assert {k.split(".")[0] for k in lacking} <= set(CLASSIFICATION_PARTS)
    assert lacking, "the classification parts are not built"

    classification_params = sum(math.prod(expected[k]) for k in lacking if not k.endswith(BUFFER_SUFFIXES))
    backbone_params = sum(p.numel() for p in model.backbone.parameters())
    assert backbone_params + classification_params == info["num_params"]


def test_batch_norm_settings_are_timms():
    with torch.device("meta"):
        model = create_model("hrnet_w18_small", 5)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(m.momentum == 0.1 and m.eps == 1e-5 for m in norms)


# --- the model interface --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["hrnet_w18_small", "resnet50"])
@pytest.mark.parametrize("head_stride", [4, 2, 1])
def test_output_shape(name, head_stride):
    torch.manual_seed(0)
    model = create_model(name, num_landmarks=5, head_stride=head_stride)
    with torch.no_grad():
        heatmaps = model(torch.randn(2, 1, 64, 64))  # training mode: BN on batch statistics, as in a first step
    assert heatmaps.shape == (2, 5, 64 // head_stride, 64 // head_stride)
    assert model.stride == head_stride and model.num_landmarks == 5
    # the final conv starts at std 0.001, bias 0: initial heatmaps are ~0
    assert heatmaps.abs().max() < 0.2
    assert model.head.final.weight.std() < 0.002 and model.head.final.bias.abs().max() == 0


@pytest.mark.parametrize("name", ["hrnet", "hrnet_w18", "hrnet_w48", "resnet101"])
def test_output_shape_other_sizes_on_meta(name):
    with torch.device("meta"):
        model = create_model(name, num_landmarks=5, head_stride=1)
        heatmaps = model(torch.empty(1, 1, 64, 96))
    assert heatmaps.shape == (1, 5, 64, 96)


def test_hrnet_alias_and_branch_outputs():
    with torch.device("meta"):
        model = create_model("hrnet", num_landmarks=3)
        features = model.backbone(torch.empty(1, 1, 64, 64))
    assert model.backbone.out_channels == (32, 64, 128, 256)
    assert [tuple(f.shape) for f in features] == [(1, 32, 16, 16), (1, 64, 8, 8), (1, 128, 4, 4), (1, 256, 2, 2)]
    assert set(MODEL_NAMES) >= {"hrnet", "hrnet_w18_small", "hrnet_w32", "resnet101"}


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="unknown model"):
        create_model("vit_b16", 5)
    with pytest.raises(ValueError, match="head_stride"):
        create_model("hrnet_w18_small", 5, head_stride=8)


# --- the registry ----------------------------------------------------------------------------------------------------

def test_registry_exports_the_known_models():
    assert MODEL_NAMES == ("hrnet", "hrnet_w18_small", "hrnet_w18", "hrnet_w32", "hrnet_w48", "resnet50", "resnet101")
    assert LIGHTER_MODEL == {"hrnet": "hrnet_w18", "hrnet_w32": "hrnet_w18", "hrnet_w48": "hrnet_w32",
                             "hrnet_w18": "hrnet_w18_small", "resnet101": "resnet50"}
    assert TIMM_NAMES == {"hrnet_w18_small": "hrnet_w18_small_v2"}
    assert registry.get_model_spec("hrnet") is registry.get_model_spec("hrnet_w32")


class ToyBackbone(torch.nn.Module):
    """One strided conv: ``forward(x (B, in_chans, H, W)) -> [(B, 8, H/4, W/4)]``."""

    def __init__(self, in_chans: int = 1, width: int = 8):
        super().__init__()
        self.conv = torch.nn.Conv2d(in_chans, width, 3, stride=4, padding=1)
        self.out_channels = (width,)
        self.grad_checkpointing = False

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def forward(self, x):
        return [self.conv(x)]


@pytest.fixture
def toy_registered():
    """Registers ``toy`` (alias ``toy_alias``, lighter ``hrnet_w18_small``) and removes it afterwards."""
    registry.register_model("toy", backbone=ToyBackbone, head=hrnet_head, timm_name="toy_v2",
                            lighter="hrnet_w18_small")
    registry.register_alias("toy_alias", "toy")
    yield "toy"
    if "toy" in registry.model_names():
        registry.unregister("toy")  # its alias goes with it


def test_registered_toy_backbone_is_built_by_create_model(toy_registered):
    model = create_model("toy", num_landmarks=3, in_chans=2, head_stride=2)
    assert isinstance(model, HeatmapModel) and isinstance(model.backbone, ToyBackbone)
    assert isinstance(model.head, HRNetHead) and model.backbone.conv.in_channels == 2
    assert model(torch.randn(1, 2, 32, 32)).shape == (1, 3, 16, 16)
    assert isinstance(create_model("toy_alias", num_landmarks=1).backbone, ToyBackbone)
    model.set_grad_checkpointing(True)
    assert model.backbone.grad_checkpointing and model.head.grad_checkpointing

    # aliases first, then the models, each in registration order
    assert registry.model_names() == ("hrnet", "toy_alias", *MODEL_NAMES[1:], "toy")
    assert registry.lighter_models()["toy"] == "hrnet_w18_small"
    assert registry.lighter_models()["toy_alias"] == "hrnet_w18_small"
    assert registry.timm_names()["toy"] == "toy_v2"


def test_unregister_removes_the_toy_backbone(toy_registered):
    registry.unregister(toy_registered)
    assert "toy" not in registry.model_names() and "toy_alias" not in registry.model_names()
    with pytest.raises(ValueError, match="unknown model 'toy'"):
        create_model("toy", 3)
    with pytest.raises(ValueError, match="cannot unregister 'toy': not registered"):
        registry.unregister("toy")


def test_registering_a_name_twice_raises(toy_registered):
    with pytest.raises(ValueError, match="'toy' is already registered as a model"):
        registry.register_model("toy", backbone=ToyBackbone, head=hrnet_head)
    with pytest.raises(ValueError, match="'hrnet' is already registered as an alias"):
        registry.register_model("hrnet", backbone=ToyBackbone, head=hrnet_head)
    with pytest.raises(ValueError, match="'resnet50' is already registered as a model"):
        registry.register_alias("resnet50", "toy")
    with pytest.raises(ValueError, match="target model 'nothing' is not registered"):
        registry.register_alias("toy_2", "nothing")
    assert registry.model_names().count("toy") == 1


def test_unregistered_lighter_model_raises():
    registry.register_model("toy_big", backbone=ToyBackbone, head=hrnet_head, lighter="toy_tiny")
    try:
        with pytest.raises(ValueError, match="'toy_big': lighter model 'toy_tiny' is not registered"):
            registry.lighter_models()
    finally:
        registry.unregister("toy_big")


def test_unknown_model_error_lists_the_valid_names():
    with pytest.raises(ValueError) as error:
        create_model("vit_b16", 5)
    assert str(error.value) == f"unknown model 'vit_b16'; choose one of {', '.join(MODEL_NAMES)}"
    assert "hrnet_w18_small" in str(error.value) and "resnet101" in str(error.value)


def test_registry_imports_no_architecture_module():
    """Layering: the architecture modules import the registry, never the reverse."""
    tree = ast.parse(Path(registry.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not any(name.startswith("cephalo") for name in imported), imported


# --- gradient checkpointing ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["hrnet_w18_small", "resnet50"])
def test_grad_checkpointing_same_outputs_gradients_and_bn_stats(name):
    torch.manual_seed(0)
    plain = create_model(name, num_landmarks=3, head_stride=2).double().train()
    ckpt = create_model(name, num_landmarks=3, head_stride=2).double().train()
    ckpt.load_state_dict(plain.state_dict())
    ckpt.set_grad_checkpointing(True)
    x = torch.randn(2, 1, 64, 64, dtype=torch.float64)
    target = torch.randn(2, 3, 32, 32, dtype=torch.float64)

    outputs = []
    for model in (plain, ckpt):
        y = model(x)
        ((y - target) ** 2).mean().backward()
        outputs.append(y.detach())
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-9, atol=1e-12)
    for (n, p), q in zip(plain.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-7, atol=1e-12, msg=n)
    # BN running stats updated once, not again by the recomputation in backward
    for (n, b), c in zip(plain.named_buffers(), ckpt.buffers()):
        torch.testing.assert_close(c, b, rtol=1e-9, atol=1e-12, msg=n)


@pytest.mark.parametrize("name", ["hrnet_w18_small", "resnet50"])
def test_grad_checkpointing_lowers_saved_activation_memory(name):
    torch.manual_seed(0)
    model = create_model(name, num_landmarks=5, head_stride=2).train()
    x = torch.randn(2, 1, 64, 64)
    plain = saved_activation_bytes(model, x)
    model.set_grad_checkpointing(True)
    checkpointed = saved_activation_bytes(model, x)
    assert checkpointed < 0.6 * plain, (checkpointed, plain)


def test_grad_checkpointing_only_in_training_with_grad(monkeypatch):
    calls = []
    real = layers_module.checkpoint
    monkeypatch.setattr(layers_module, "checkpoint", lambda *a, **k: calls.append(1) or real(*a, **k))
    model = create_model("hrnet_w18_small", num_landmarks=2)
    model.set_grad_checkpointing(True)
    x = torch.randn(1, 1, 64, 64)
    model.eval()
    model(x)
    model.train()
    with torch.no_grad():
        model(x)
    assert calls == []
    model(x)
    assert len(calls) == 1 + 2 + 6 + 1  # stem, layer1 blocks, HRModules (1 + 3 + 2), head fuse


def test_grad_checkpointing_under_torch_compile():
    """Compiled (fullgraph: no graph breaks), checkpointed head: same outputs, gradients and BN stats as eager."""
    from cephalo.models.heads import SimpleBaselineHead

    torch.manual_seed(0)
    plain = SimpleBaselineHead(16, 3, head_stride=2, deconv_channels=8, upsample_channels=(4,)).double()
    ckpt = SimpleBaselineHead(16, 3, head_stride=2, deconv_channels=8, upsample_channels=(4,)).double()
    ckpt.load_state_dict(plain.state_dict())
    ckpt.set_grad_checkpointing(True)
    features = [torch.randn(2, 16, 4, 4, dtype=torch.float64)]
    y_plain = plain(features)
    y_plain.square().mean().backward()
    y_ckpt = torch.compile(ckpt, backend="aot_eager", fullgraph=True)(features)
    y_ckpt.square().mean().backward()
    torch.testing.assert_close(y_ckpt, y_plain)
    for p, q in zip(plain.parameters(), ckpt.parameters()):
        torch.testing.assert_close(q.grad, p.grad)
    for b, c in zip(plain.buffers(), ckpt.buffers()):
        torch.testing.assert_close(c, b)


def test_channels_last_bf16_autocast():
    torch.manual_seed(0)
    for name in ("hrnet_w18_small", "resnet50"):
        model = create_model(name, num_landmarks=4, head_stride=2).to(memory_format=torch.channels_last).train()
        model.set_grad_checkpointing(True)
        x = torch.randn(2, 1, 64, 64).to(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = model(x)
        assert y.shape == (2, 4, 32, 32) and torch.isfinite(y.float()).all()
        y.float().square().mean().backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# --- pretrained weights -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def timm_checkpoint(tmp_path_factory):
    """(path of a .pth with timm's hrnet_w18_small_v2 names/shapes and random values, its state dict)."""
    state = fake_timm_state_dict("hrnet_w18_small")
    path = tmp_path_factory.mktemp("weights") / "hrnet_w18_small_v2.pth"
    torch.save(state, path)
    return path, state


def test_load_pretrained_loads_every_backbone_tensor(timm_checkpoint, capsys):
    path, state = timm_checkpoint
    model = create_model("hrnet_w18_small", num_landmarks=5, in_chans=1)
    head_before = {k: v.clone() for k, v in model.head.state_dict().items()}
    report = load_pretrained(model, path)

    own = model.backbone.state_dict()
    assert report.left_at_init == [] and report.shape_mismatch == {}
    assert sorted(report.loaded) == sorted(own)
    for key, value in own.items():
        expected = state[key].sum(dim=1, keepdim=True) if key == "conv1.weight" else state[key]
        torch.testing.assert_close(value, expected.to(value.dtype), rtol=0, atol=1e-6, msg=key)
    assert own["conv1.weight"].shape == (64, 1, 3, 3) and "conv1.weight" in report.adapted
    assert {k.split(".")[0] for k in report.not_in_model} == {"incre_modules", "downsamp_modules", "final_layer",
                                                             "classifier"}
    assert report.skipped["classifier.weight"] == "not in model"
    for k, v in model.head.state_dict().items():
        assert torch.equal(v, head_before[k]), k

    printed = capsys.readouterr().out
    assert printed.strip() == str(report)
    assert f"loaded {len(own)} tensors" in printed
    assert "summed over input channels" in printed
    assert "classifier (2)" in printed and "incre_modules (96)" in printed


def test_load_pretrained_reports_shape_mismatch(timm_checkpoint, tmp_path):
    _, state = timm_checkpoint
    state = dict(state)
    state["stage2.0.fuse_layers.0.1.0.weight"] = torch.randn(18, 40, 1, 1)
    path = tmp_path / "wrapped.pt"
    torch.save({"state_dict": state, "epoch": 3}, path)  # a training checkpoint: weights under "state_dict"
    model = create_model("hrnet_w18_small", num_landmarks=5, in_chans=2)
    report = load_pretrained(model, path, verbose=False)
    assert report.shape_mismatch == {"stage2.0.fuse_layers.0.1.0.weight": ((18, 40, 1, 1), (18, 36, 1, 1)),
                                     "conv1.weight": ((64, 3, 3, 3), (64, 2, 3, 3))}
    assert sorted(report.left_at_init) == sorted(report.shape_mismatch)
    assert "shape mismatch: checkpoint [18, 40, 1, 1] vs model [18, 36, 1, 1]" in \
        report.skipped["stage2.0.fuse_layers.0.1.0.weight"]
    text = str(report)
    assert "fuse_layers.0.1.0.weight: shape mismatch, checkpoint [18, 40, 1, 1] vs model [18, 36, 1, 1]" in text
    assert "2 backbone tensors left at init" in text


def test_create_model_with_pretrained_rgb_stem(timm_checkpoint, capsys):
    path, state = timm_checkpoint
    model = create_model("hrnet_w18_small", num_landmarks=5, in_chans=3, pretrained=path)
    assert torch.equal(model.backbone.conv1.weight, state["conv1.weight"])
    assert "loaded 864 tensors" in capsys.readouterr().out


def test_load_pretrained_missing_file(tmp_path):
    model = create_model("hrnet_w18_small", num_landmarks=2)
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        load_pretrained(model, tmp_path / "nowhere.pth")


def test_load_pretrained_safetensors_without_package(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"\x00" * 16)
    monkeypatch.setitem(sys.modules, "safetensors", None)  # import of safetensors now fails, installed or not
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    model = create_model("hrnet_w18_small", num_landmarks=2)
    with pytest.raises(ImportError, match="pip install safetensors"):
        load_pretrained(model, path)


def test_load_pretrained_safetensors(timm_checkpoint, tmp_path):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    _, state = timm_checkpoint
    path = tmp_path / "model.safetensors"
    safetensors_torch.save_file(state, str(path))
    model = create_model("hrnet_w18_small", num_landmarks=2)
    report = load_pretrained(model, path, verbose=False)
    assert report.left_at_init == [] and len(report.loaded) == len(model.backbone.state_dict())
