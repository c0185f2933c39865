"""resolve_device: CUDA devices carry their index (the GPU run of 2026-12-04 failed without it), bad names say why."""

from __future__ import annotations

import pytest
import torch

from cephalo.device import resolve_device
from cephalo.engine.runtime.gpu_memory import apply_vram_budget


@pytest.fixture
def two_gpus(monkeypatch):
    """A machine with two CUDA devices, the second current; the memory cap behaves as torch's does: it refuses a
    device without an index ("Expected a torch.device with a specified index")."""
    capped = {}

    def set_fraction(fraction, device):
        if isinstance(device, torch.device) and device.index is None:
            raise ValueError(f"Expected a torch.device with a specified index or an integer, but got:{device}")
        capped[device] = fraction

    class Props:
        total_memory = 80 * 2**30

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: Props())
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", set_fraction)
    return capped


@pytest.mark.parametrize("name, expected", [("cuda", "cuda:1"), ("auto", "cuda:1"), ("cuda:0", "cuda:0"),
                                            ("cpu", "cpu")])
def test_cuda_devices_carry_an_index(two_gpus, name, expected):
    assert resolve_device(name) == torch.device(expected)


def test_the_memory_cap_takes_the_resolved_device(two_gpus):
    note = apply_vram_budget(resolve_device("cuda"), 8)
    assert "capped at 8 GiB" in note
    assert two_gpus == {torch.device("cuda", 1): pytest.approx(0.1)}


def test_a_missing_gpu_index_is_named(two_gpus):
    with pytest.raises(ValueError, match=r"--device cuda:2: this machine has 2 CUDA device\(s\), cuda:0 to cuda:1"):
        resolve_device("cuda:2")


def test_cuda_without_cuda_says_use_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="use --device cpu"):
        resolve_device("cuda")
