"""Mixed precision: which autocast dtype, whether a GradScaler is needed, and why (said once, at setup)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Precision:
    """``dtype`` is the autocast dtype (``None``: fp32, no autocast); ``scaler`` is true only for fp16."""

    device_type: str
    dtype: torch.dtype | None
    note: str = ""

    @property
    def scaler(self) -> bool:
        return self.dtype == torch.float16

    def autocast(self):
        """The autocast context for forward passes; a do-nothing context in fp32."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A GradScaler that is active for fp16 only (bf16 has fp32's range and needs none)."""
        return torch.amp.GradScaler(self.device_type, enabled=self.scaler)

    def __str__(self) -> str:
        name = {None: "fp32", torch.float16: "fp16 autocast + GradScaler", torch.bfloat16: "bf16 autocast"}[self.dtype]
        return name + (f" ({self.note})" if self.note else "")


def resolve_precision(device: torch.device, mixed_precision: bool, amp_dtype: str = "auto") -> Precision:
    """The user's request mapped onto what the device can do.

    ``--mixed_precision`` means fp16 + GradScaler on CUDA (bf16 with ``--amp_dtype bf16``); on CPU fp16 autocast
    is slow and unsupported for many ops, so bf16 is used instead, and the note says so.
    """
    if amp_dtype not in ("auto", "fp16", "bf16"):
        raise ValueError(f"--amp_dtype must be auto, fp16 or bf16, not {amp_dtype!r}")
    if not mixed_precision:
        if amp_dtype != "auto":
            return Precision(device.type, None, f"--amp_dtype {amp_dtype} ignored without --mixed_precision")
        return Precision(device.type, None)
    if device.type == "cuda":
        if amp_dtype == "bf16":
            if not torch.cuda.is_bf16_supported():
                return Precision("cuda", torch.float16, "this GPU has no bf16: fp16 with GradScaler instead")
            return Precision("cuda", torch.bfloat16)
        return Precision("cuda", torch.float16)
    if device.type == "cpu":
        note = "fp16 is not useful on CPU: bf16 instead" if amp_dtype == "fp16" else "bf16 on CPU"
        return Precision("cpu", torch.bfloat16, note)
    return Precision(device.type, None, f"no mixed precision on {device.type}: fp32")
