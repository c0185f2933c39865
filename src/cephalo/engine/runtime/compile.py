"""``--use_compile`` that never costs the run: where compiling fails, the plain model trains instead."""

from __future__ import annotations

import warnings

import torch
from torch import nn


class CompileFallback(nn.Module):
    """Runs ``torch.compile(model)``; if compiling fails on the first calls (Windows without Triton, no C++
    compiler, an unsupported op), warns once and runs the plain ``model`` from then on.

    Compilation happens lazily inside the first forward, which is why the fallback sits there and not around
    ``torch.compile``. Out-of-memory errors are not compile failures and pass through.
    """

    def __init__(self, model: nn.Module, mode: str = "default"):
        super().__init__()
        self.model = model
        self._compiled = [torch.compile(model, mode=mode)]  # a list: not registered twice as a submodule

    @property
    def compiled(self) -> bool:
        return bool(self._compiled)

    def disable(self) -> None:
        """Run the plain model from now on (the compile check found the compiled one wrong)."""
        self._compiled.clear()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._compiled:
            try:
                return self._compiled[0](x)
            except torch.OutOfMemoryError:
                raise
            except Exception as e:  # noqa: BLE001 -- any compiler failure: keep training without it
                warnings.warn(f"torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                              "training continues in eager mode (same results, without the compile speed-up)")
                self._compiled.clear()
        return self.model(x)


def compile_model(model: nn.Module, device: torch.device, notes: list[str], mode: str = "default") -> nn.Module:
    """The model to run forward: compiled (with fallback), or the plain one where compiling cannot work."""
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            notes.append("--use_compile: no Triton for this GPU build (common on Windows: pip install "
                         "triton-windows); training in eager mode")
            return model
    notes.append(f"compiled with torch.compile, mode {mode} (the first steps include compile time)")
    return CompileFallback(model, mode)
