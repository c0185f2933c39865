"""What this machine is: versions, the GPU and what it supports, whether ``torch.compile`` can work, free disk."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

from cephalo.doctor.report import FAIL, INFO, PASS, SKIPPED, Check

SECTION = "environment"

# triton-windows releases and the torch minor version each is built for (its README's table); a mismatch imports
# but fails on the first compiled kernel.
TRITON_WINDOWS_FOR_TORCH = {"2.4": "3.1", "2.6": "3.2", "2.7": "3.3", "2.8": "3.4", "2.9": "3.5"}


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> Check:
    cuda = torch.version.cuda or "none (CPU build)"
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    detail = (f"Python {platform.python_version()}, torch {torch.__version__}, CUDA {cuda}, cuDNN "
              f"{cudnn or 'none'}, numpy {np.__version__}, {platform.system()} {platform.release()}, "
              f"{os.cpu_count()} CPU cores")
    return Check(SECTION, "versions", INFO, detail, {"python": platform.python_version(), "torch": torch.__version__,
                                                     "cuda": torch.version.cuda, "cudnn": cudnn,
                                                     "os": platform.platform(), "cpu_cores": os.cpu_count()})


def gpu(device: torch.device) -> list[Check]:
    if device.type != "cuda":
        reason = "this PyTorch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
        return [Check(SECTION, "GPU", SKIPPED if device.type == "cpu" else INFO,
                      f"running on {device} ({reason if not torch.cuda.is_available() else '--device cpu'})")]
    props = torch.cuda.get_device_properties(device)
    capability = f"{props.major}.{props.minor}"
    figures = {"name": props.name, "total_memory_bytes": props.total_memory, "compute_capability": capability}
    checks = [Check(SECTION, "GPU", INFO, f"{props.name}, {props.total_memory / 2**30:.1f} GiB, compute capability "
                    f"{capability}, {props.multi_processor_count} SMs", figures)]
    bf16 = torch.cuda.is_bf16_supported()
    checks.append(Check(SECTION, "bf16", INFO, "supported (--amp_dtype bf16 trains without a GradScaler)" if bf16
                        else "not supported on this GPU: mixed precision is fp16 with a GradScaler", {"bf16": bf16}))
    tf32 = props.major >= 8
    checks.append(Check(SECTION, "TF32", INFO, "Ampere or later: cuDNN convolutions use TF32 for float32 unless told "
                        "otherwise (the correctness references below turn it off)" if tf32 else
                        "no TF32 on this GPU", {"tf32": tf32}))
    return checks


def compile_support(device: torch.device) -> Check:
    """Whether ``torch.compile`` can generate code here: Triton for CUDA (``triton-windows`` on Windows, matching
    torch's version), a C++ compiler for the CPU."""
    name = "torch.compile"
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        torch_minor = ".".join(torch.__version__.split("+")[0].split(".")[:2])
        if sys.platform == "win32":
            installed, wanted = _version("triton-windows"), TRITON_WINDOWS_FOR_TORCH.get(torch_minor)
            pin = f"triton-windows<{wanted[0]}.{int(wanted[2:]) + 1}" if wanted else "triton-windows"
            if installed is None or not has_triton():
                which = "the release built for torch " + torch_minor + ("" if wanted else ": see the triton-windows README")
                return Check(SECTION, name, SKIPPED, f"no Triton: pip install \"{pin}\" ({which}); until then "
                             "training runs eager", {"usable": False})
            if wanted and not installed.startswith(wanted + "."):
                return Check(SECTION, name, FAIL, f"triton-windows {installed} is installed, torch {torch_minor} needs "
                             f"{wanted}.x: pip install \"{pin}\"", {"usable": False, "triton": installed})
            return Check(SECTION, name, PASS, f"triton-windows {installed}", {"usable": True, "triton": installed})
        if not has_triton():
            return Check(SECTION, name, SKIPPED, "no Triton for this GPU build (pip install triton); training runs "
                         "eager", {"usable": False})
        return Check(SECTION, name, PASS, f"Triton {_version('triton') or '(version unknown)'}",
                     {"usable": True, "triton": _version("triton")})
    compilers = [c for c in ("cl", "g++", "clang++", "c++") if shutil.which(c)]
    if not compilers:
        return Check(SECTION, name, SKIPPED, "no C++ compiler on PATH (torch.compile on CPU needs one, e.g. gcc); "
                     "training runs eager", {"usable": False})
    return Check(SECTION, name, PASS, f"C++ compiler {compilers[0]} at {shutil.which(compilers[0])} (a cold compile "
                 "takes minutes on a few cores)", {"usable": True, "compiler": compilers[0]})


def _existing_parent(path: Path) -> Path:
    path = path.resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def free_disk(cache_dir: Path, image_size: tuple[int, int], images: int = 1000) -> Check:
    """The letterbox cache holds one uint8 image per dataset image and size; ``images``: Aariz's 1000."""
    folder = _existing_parent(cache_dir)
    free = shutil.disk_usage(folder).free
    need = images * image_size[0] * image_size[1]
    detail = (f"{free / 2**30:.1f} GiB free at {folder}; a {images}-image dataset needs {_size(need)} of cache at "
              f"{image_size[0]}x{image_size[1]}")
    figures = {"free_bytes": free, "cache_bytes_for_1000_images": need, "cache_dir": str(cache_dir)}
    if free < need:
        return Check(SECTION, "disk for the cache", FAIL, detail + " (--cache_dir or CEPHALO_CACHE: a larger disk)",
                     figures)
    return Check(SECTION, "disk for the cache", PASS, detail, figures)


def environment_checks(device: torch.device, cache_dir: Path, image_size: tuple[int, int]) -> list[Check]:
    return [versions(), *gpu(device), compile_support(device), free_disk(cache_dir, image_size)]
