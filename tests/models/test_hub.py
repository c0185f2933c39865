"""--pretrained by timm's name: found in the Hugging Face cache offline (a cache this test writes from our own
backbone's weights, in huggingface_hub's layout), and one error line naming the file to fetch where it is not."""

from __future__ import annotations

import pytest
import torch

from cephalo.cli.main import main
from cephalo.engine.config import parse_args
from cephalo.models import create_model
from cephalo.models.hub import file_url, resolve_pretrained

pytest.importorskip("huggingface_hub")
safetensors = pytest.importorskip("safetensors.torch")

NAME = "hrnet_w18_small.ms_in1k"


def hub_cache(root, name: str, tensors: dict) -> None:
    """``models--timm--<name>/snapshots/<commit>/model.safetensors`` and ``refs/main``: what huggingface_hub
    leaves after a download."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = root / f"models--timm--{name}"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    safetensors.save_file({k: v.contiguous() for k, v in tensors.items()},
                          str(repo / "snapshots" / commit / "model.safetensors"))


def test_a_timm_name_loads_from_the_hub_cache_offline(tmp_path, monkeypatch, capsys):
    source = create_model("hrnet_w18_small", num_landmarks=3)
    weights = {k: v for k, v in source.backbone.state_dict().items() if v.dtype.is_floating_point}
    weights["conv1.weight"] = weights["conv1.weight"].repeat(1, 3, 1, 1) / 3  # an RGB stem, as ImageNet's
    hub_cache(tmp_path / "hub", NAME, weights)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_pretrained(NAME).name == "model.safetensors"
    model = create_model("hrnet_w18_small", num_landmarks=3, pretrained=NAME)
    assert "loaded" in capsys.readouterr().out
    own = model.backbone.state_dict()
    for key, value in weights.items():  # every tensor loaded by name, as from a real timm file
        if key != "conv1.weight":
            torch.testing.assert_close(own[key], value, rtol=0, atol=0)
    torch.testing.assert_close(own["conv1.weight"], weights["conv1.weight"].sum(1, keepdim=True))
    assert parse_args(["--pretrained", NAME]).pretrained == NAME  # the flag takes a name


def test_a_name_not_in_the_cache_offline_is_one_error_naming_the_file_to_fetch(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="not in the Hugging Face cache"):
        resolve_pretrained(NAME)
    assert main(["train", "--pretrained", NAME, "--epochs", "1", "--output_dir", str(tmp_path / "runs"),
                 "--no_progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --pretrained {NAME}: ") and file_url(NAME) in err and err.count("\n") == 1, err


def test_a_path_that_does_not_exist_is_still_no_such_file(tmp_path, capsys):
    assert main(["train", "--pretrained", str(tmp_path / "w.safetensors")]) == 2
    assert "no such file" in capsys.readouterr().err
