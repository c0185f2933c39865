"""benchmarks/timm_parity.py (our backbones against timm's with the same weights): the comparison itself, run here
against a stand-in for timm built from the same architectures with an RGB stem, and its message where timm is
missing (timm cannot be imported on the CPU machines; the GPU machine runs the real comparison)."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest
import torch.nn as nn

from cephalo.models.hrnet import HRNetBackbone
from cephalo.models.resnet import ResNetBackbone

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "timm_parity.py"


def load_script():
    spec = importlib.util.spec_from_file_location("timm_parity", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class RGBResNet(nn.Module):
    """timm's ResNet layout: the backbone's modules at the top level, an RGB stem and a classifier."""

    def __init__(self, depth: int, broken: bool = False):
        super().__init__()
        for name, child in ResNetBackbone(depth, in_chans=3).named_children():
            self.add_module(name, child)
        self.fc = nn.Linear(2048, 10)
        if broken:  # a layer that differs in what the weights do not hold
            self.layer3[-1].bn3.eps = 0.5

    def forward(self, x):
        x = self.maxpool(self.bn1(self.conv1(x)).relu())
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
        return x


def fake_timm(broken: bool = False) -> types.ModuleType:
    timm = types.ModuleType("timm")
    timm.__version__ = "stand-in"

    def create_model(name, pretrained=False):
        if name.startswith("resnet"):
            return RGBResNet(int(name[len("resnet"):]), broken)
        return HRNetBackbone.from_name({"hrnet_w18_small_v2": "hrnet_w18_small"}.get(name, name), in_chans=3)

    timm.create_model = create_model
    return timm


@pytest.mark.parametrize("broken", [False, True])
def test_parity_passes_on_equal_networks_and_fails_on_a_wrong_layer(monkeypatch, tmp_path, broken):
    monkeypatch.setitem(sys.modules, "timm", fake_timm(broken))
    out = tmp_path / "parity.json"
    monkeypatch.setattr(sys, "argv", ["timm_parity.py", "--device", "cpu", "--image_size", "64",
                                      "--models", "hrnet_w18_small,resnet50", "--out", str(out)])
    code = load_script().main()
    rows = {r["model"]: r for r in json.loads(out.read_text())["models"]}
    assert rows["hrnet_w18_small"]["result"] == "PASS" and not rows["hrnet_w18_small"]["left_at_init"]
    assert rows["resnet50"]["result"] == ("FAIL" if broken else "PASS")
    assert code == (1 if broken else 0)
    if broken:
        assert rows["resnet50"]["eval"][2] > 1e-3 and rows["resnet50"]["eval"][1] < 1e-7  # from layer3 on


def test_without_timm_it_says_how_to_get_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm raises ImportError
    monkeypatch.setattr(sys, "argv", ["timm_parity.py"])
    assert load_script().main() == 2
    assert "pip install timm" in capsys.readouterr().err
