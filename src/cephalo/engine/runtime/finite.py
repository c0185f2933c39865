"""Non-finite numbers: one fused check over a list of tensors, and the error that stops a run before it saves any."""

from __future__ import annotations

import torch

from cephalo.engine.runtime.host_sync import intended_sync


class NonFiniteError(RuntimeError):
    """Too many updates in a row had non-finite loss or gradients, or the weights are not finite; nothing
    non-finite was saved."""


def all_finite(tensors: list[torch.Tensor]) -> bool:
    """Whether every value of ``tensors`` is finite: one fused norm per tensor, then one host read (a sync)."""
    if not tensors:
        return True
    finite = torch.stack(torch._foreach_norm(tensors)).isfinite().all()
    with intended_sync("finiteness check"):
        return bool(finite)
