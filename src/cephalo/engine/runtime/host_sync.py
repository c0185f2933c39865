"""Host syncs in the training step: the few intended ones are marked, every other one can be found.

A GPU step runs ahead of the Python code until something needs a value on the host (``.item()``, ``bool(t)``, a
tensor made from host data with ``torch.tensor(..., device=cuda)``): then the host waits and the GPU's queue runs
dry. The training step has exactly two such points on purpose, each marked with :func:`intended_sync`: the update's
finiteness check and the progress line every ``--log_every`` updates (plus GradScaler's own check in fp16).

- :class:`HostReads` (any device, CPU included): a ``TorchDispatchMode`` that records every host read of a tensor
  value (``aten._local_scalar_dense``) and every tensor made from host data (``aten.lift_fresh``) with the cephalo
  function that asked for it and the intended-sync reason, if any. PyTorch's own host bookkeeping on CPU tensors
  (the optimizer's step counters, the DataLoader's worker seeds) is not cephalo's and is left out.
- :func:`cuda_sync_errors`: ``torch.cuda.set_sync_debug_mode("error")`` for a block, so that any unmarked sync on
  a GPU raises where it happens; marked ones are allowed.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_state = threading.local()  # .reason: the intended sync running now; .cuda_guard: cuda_sync_errors is active
_READS = {"aten._local_scalar_dense.default": "host read", "aten.lift_fresh.default": "tensor from host data"}
_TORCH_HOST_SIDE = ("torch.optim", "torch.utils.data")  # their reads are of CPU tensors, by design


@contextlib.contextmanager
def intended_sync(reason: str):
    """Mark a block whose host sync is intended (``reason`` says which); costs nothing when nothing checks."""
    previous = getattr(_state, "reason", None)
    _state.reason = reason
    guarded = getattr(_state, "cuda_guard", False)
    if guarded:
        torch.cuda.set_sync_debug_mode(0)
    try:
        yield
    finally:
        _state.reason = previous
        if guarded:
            torch.cuda.set_sync_debug_mode("error")


@dataclass(frozen=True)
class HostRead:
    kind: str  # "host read" or "tensor from host data"
    where: str  # the innermost function outside PyTorch that caused it, "module.function"
    intended: str | None  # the intended_sync reason, or None


@dataclass
class HostReads(TorchDispatchMode):
    """Records :class:`HostRead` entries while active (``with HostReads() as reads: ...``)."""

    reads: list[HostRead] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kind = _READS.get(str(func))
        if kind is not None:
            where = _caller()
            if where is not None:
                self.reads.append(HostRead(kind, where, getattr(_state, "reason", None)))
        return func(*args, **(kwargs or {}))

    def unintended(self) -> list[HostRead]:
        return [r for r in self.reads if r.intended is None]

    def count(self) -> Counter:
        """``{(where, intended reason): number}``"""
        return Counter((r.where, r.intended) for r in self.reads)


def _caller() -> str | None:
    """``module.function`` of the innermost frame outside PyTorch (cephalo's code, or a test's); None when
    PyTorch's own host-side code made the read."""
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if name.startswith(_TORCH_HOST_SIDE):
            return None
        if not (name == "torch" or name.startswith(("torch.", "contextlib")) or name == __name__):
            return f"{name}.{frame.f_code.co_name}"
        frame = frame.f_back
    return None


@contextlib.contextmanager
def cuda_sync_errors():
    """On CUDA: every host sync outside :func:`intended_sync` blocks raises ``RuntimeError`` at the call."""
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    _state.cuda_guard = True
    try:
        yield
    finally:
        _state.cuda_guard = False
        torch.cuda.set_sync_debug_mode(previous)
