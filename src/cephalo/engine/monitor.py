"""Memory figures for progress bars and logs."""

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
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB peak"
    rss = peak_rss_bytes()
    return f"{rss / 2**30:.2f} GiB RSS peak" if rss else ""
