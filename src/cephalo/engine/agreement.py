"""How close two sets of tensors are (the gradients, losses or weights of one training path against another), with
the tolerances a fast path must meet against the plain one: used by the compile check at the start of training
and by ``cephalo doctor``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from cephalo.engine.host_sync import intended_sync


@dataclass(frozen=True)
class Tolerance:
    """``min_cosine``: cosine similarity of the flattened tensors; ``max_rel_l2``: ``|a - b| / |a|``."""

    min_cosine: float
    max_rel_l2: float


# Paths that compute the same maths in another order or layout (compile, channels_last, checkpointing): float32
# rounding only. Reduced precision (fp16 + GradScaler, bf16) keeps ~3 significant digits, so 2 % is its noise;
# the bugs these checks are for (a gradient dropped, doubled or overwritten in accumulation) are tens of per cent.
SAME_MATHS = Tolerance(min_cosine=0.9999, max_rel_l2=1e-3)
REDUCED_PRECISION = Tolerance(min_cosine=0.999, max_rel_l2=2e-2)


@dataclass(frozen=True)
class Agreement:
    """The distance of ``candidate`` from ``reference``; ``finite`` False when either holds inf or NaN."""

    cosine: float
    rel_l2: float
    finite: bool = True

    def within(self, tolerance: Tolerance) -> bool:
        return self.finite and self.cosine >= tolerance.min_cosine and self.rel_l2 <= tolerance.max_rel_l2

    def __str__(self) -> str:
        if not self.finite:
            return "not finite"
        return f"cosine {self.cosine:.6f}, rel. L2 {self.rel_l2:.2e}"


def flatten(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """One float64 vector ``(N,)`` of all ``tensors``, on the first one's device (one ``cat``, no loop of syncs)."""
    if not tensors:
        return torch.zeros(0, dtype=torch.float64)
    return torch.cat([t.detach().reshape(-1).to(torch.float64) for t in tensors])


def agreement(reference: Sequence[torch.Tensor], candidate: Sequence[torch.Tensor]) -> Agreement:
    """Compare two lists of tensors of matching shapes, element for element (one host read at the end)."""
    if len(reference) != len(candidate) or any(a.shape != b.shape for a, b in zip(reference, candidate)):
        raise ValueError("agreement: the two lists of tensors differ in length or shapes")
    a = flatten(reference)
    b = flatten(candidate).to(a.device)
    stats = torch.stack([a.norm(), b.norm(), (a - b).norm(), a.dot(b),
                         (torch.isfinite(a).all() & torch.isfinite(b).all()).double()])
    with intended_sync("agreement of two training paths"):
        stats = stats.tolist()
    norm_a, norm_b, diff, dot, finite = stats
    if not finite:
        return Agreement(float("nan"), float("nan"), finite=False)
    if norm_a == 0.0 and norm_b == 0.0:
        return Agreement(1.0, 0.0)
    cosine = dot / (norm_a * norm_b) if norm_a > 0 and norm_b > 0 else 0.0
    return Agreement(cosine, diff / norm_a if norm_a > 0 else float("inf"))
