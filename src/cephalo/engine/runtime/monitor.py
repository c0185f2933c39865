"""Memory figures for progress bars, logs and benchmarks."""

from __future__ import annotations

import sys

import torch


def peak_rss_bytes() -> int | None:
    """Peak resident memory of this process (``None`` where the platform does not say)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def memory_text(device: torch.device) -> str:
    if device.type == "cuda":  # reserved: what the caching allocator holds, what the card must have
        return (f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB peak "
                f"({torch.cuda.max_memory_reserved(device) / 2**30:.2f} reserved)")
    rss = peak_rss_bytes()
    return f"{rss / 2**30:.2f} GiB RSS peak" if rss else ""


def saved_activation_bytes(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes autograd keeps for backward during ``model(x)`` (one count per storage; parameters excluded): the
    activation memory that gradient checkpointing trades for recomputation, measurable on any device."""
    params = {p.data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.data_ptr() not in params:
            storages[t.untyped_storage().data_ptr()] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return sum(storages.values())
