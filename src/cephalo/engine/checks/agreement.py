"""How close two sets of tensors are (the gradients, losses or weights of one training path against another), and
how close they must be: used by the compile check at the start of training and by ``cephalo doctor``.

A fixed tolerance cannot be right for every model: at random initialisation, with BatchNorm over one image, the
gradients of HRNet are ill-conditioned, so float32 rounding in another order (channels_last, compile) moves them
by 1e-3 to 1e-2 (measured on CPU, ``benchmarks/doctor_cpu.md``). So the tolerance is widened to a multiple of the
*rounding floor*: how far the reference's own gradients move when its weights are perturbed by one rounding step
of the precision in question (:func:`perturbed`). A path is correct if it stays within a small multiple of what
rounding alone does to this model at this size; the bugs these checks are for (a micro-batch's gradient lost,
doubled or overwritten in accumulation, a batch used before its copy finished) are far outside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from cephalo.engine.runtime.host_sync import intended_sync


@dataclass(frozen=True)
class Tolerance:
    """``min_cosine``: cosine similarity of the flattened tensors; ``max_rel_l2``: ``|a - b| / |a|``."""

    min_cosine: float
    max_rel_l2: float

    def __str__(self) -> str:
        return f"cosine >= {self.min_cosine:.6f}, rel. L2 <= {self.max_rel_l2:.2e}"

    @property
    def useful(self) -> bool:
        return self.max_rel_l2 <= MAX_USEFUL_REL_L2

    def widened(self, floor: Agreement, factor: float) -> Tolerance:
        """At least ``factor`` times the distance ``floor`` that rounding alone causes (see the module's text)."""
        if not floor.finite:
            return self
        return Tolerance(min(self.min_cosine, 1.0 - factor * (1.0 - floor.cosine)),
                         max(self.max_rel_l2, factor * floor.rel_l2))


# The least any path is allowed: paths that compute the same maths in another order or layout (compile,
# channels_last, checkpointing) within float32 rounding, and reduced precision (fp16 + GradScaler, bf16, TF32),
# which keeps about 3 significant digits.
SAME_MATHS = Tolerance(min_cosine=0.9999, max_rel_l2=1e-3)
REDUCED_PRECISION = Tolerance(min_cosine=0.999, max_rel_l2=2e-2)
# The size of the weight noise of each precision's floor (float32: one machine epsilon; reduced precision: its unit
# roundoff), and how many floors a path may be away. Measured on CPU with HRNet-W18-small at 128-256²
# (benchmarks/doctor_cpu.md): same-maths paths 1.4-6 float32 floors from the reference, bf16 autocast 0.8-1.4 bf16
# floors; the bugs the checks are for, 10+ float32 floors and 4+ bf16 floors.
EPS = {"fp32": 2.0**-23, "tf32": 2.0**-11, "fp16": 2.0**-11, "bf16": 2.0**-8}
FLOORS = {"fp32": 20.0, "tf32": 2.5, "fp16": 2.5, "bf16": 2.5}
# Beyond this, a tolerance would let through the bugs it is for (an overwritten accumulation is ~0.45, a gradient
# off by 2x is 0.5-1): rounding alone moves this model's gradients too far to check it (tiny images, where
# BatchNorm normalises over a few pixels). The check is then skipped, saying so, rather than passed.
MAX_USEFUL_REL_L2 = 0.3


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


def perturbed(state: dict[str, torch.Tensor], eps: float, seed: int = 0) -> dict[str, torch.Tensor]:
    """``state`` with every floating-point tensor multiplied by ``1 + eps * N(0, 1)`` (drawn on the CPU from its own
    generator: no global random state is touched), other tensors (BatchNorm counters) as they are."""
    generator = torch.Generator().manual_seed(seed)
    return {k: v * (1 + eps * torch.randn(v.shape, generator=generator)).to(v.device, v.dtype)
            if v.is_floating_point() else v for k, v in state.items()}


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
    cosine = min(1.0, max(-1.0, dot / (norm_a * norm_b))) if norm_a > 0 and norm_b > 0 else 0.0
    return Agreement(cosine, diff / norm_a if norm_a > 0 else float("inf"))


def rounding(dtype: torch.dtype | None, device: torch.device) -> str:
    """The precision the convolutions of a run round to: its autocast ``dtype``, else float32 (TF32 on CUDA GPUs
    from Ampere on, where cuDNN allows it, as it does by default)."""
    if dtype in (torch.bfloat16, torch.float16):
        return "bf16" if dtype == torch.bfloat16 else "fp16"
    if device.type == "cuda" and torch.cuda.get_device_properties(device).major >= 8:
        conv = getattr(torch.backends.cudnn, "conv", None)
        allowed = conv.fp32_precision == "tf32" if conv is not None and hasattr(conv, "fp32_precision") \
            else torch.backends.cudnn.allow_tf32
        if allowed:
            return "tf32"
    return "fp32"
