"""The device a command runs on, and the few device facts every layer needs: picking it from ``--device``,
waiting for its queued work, and turning autocast off where maths must stay float32."""

from __future__ import annotations

import contextlib

import torch


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when there is one, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``; a clear error for CUDA on a
    machine or PyTorch build without it. A CUDA device always carries its index (``cuda`` -> ``cuda:<current>``):
    some CUDA calls (``set_per_process_memory_fraction``) refuse a device without one."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available in this PyTorch build or machine; use --device cpu")
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise ValueError(f"--device {name}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    return torch.device("cuda", torch.cuda.current_device() if device.index is None else device.index)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a wall-clock time covers it (a no-op on a CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def no_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast off on ``device``, so that coordinate and target maths stays float32 inside a mixed-precision step
    (conv2d and matmul would otherwise run in fp16/bf16)."""
    try:
        return torch.autocast(device_type=device.type, enabled=False)
    except (RuntimeError, ValueError):  # a device type autocast does not know: nothing to turn off
        return contextlib.nullcontext()


@contextlib.contextmanager
def exact_fp32():
    """float32 maths as IEEE float32 inside the block: on Ampere and later, cuDNN convolutions use TF32 (10-bit
    mantissa) by default, so a reference computed without this is not the fp32 it claims to be."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    if hasattr(cudnn, "conv") and hasattr(cudnn.conv, "fp32_precision"):  # the API of torch >= 2.9
        saved = cudnn.conv.fp32_precision, matmul.fp32_precision
        cudnn.conv.fp32_precision, matmul.fp32_precision = "ieee", "ieee"
        try:
            yield
        finally:
            cudnn.conv.fp32_precision, matmul.fp32_precision = saved
        return
    saved = cudnn.allow_tf32, matmul.allow_tf32
    cudnn.allow_tf32, matmul.allow_tf32 = False, False
    try:
        yield
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = saved
