"""Load timm-format ImageNet weights (``.safetensors``, ``.pth``, ``.pt``, ``.bin``) into a model's backbone.

Our backbones use timm's parameter names, so a checkpoint such as ``timm/hrnet_w32.ms_in1k`` loads by name. What
does not fit is reported, never silently dropped: tensors the backbone does not have (timm's classifier,
``incre_modules``, ...), shape mismatches (with both shapes), and backbone tensors left at their init. The RGB
stem of an ImageNet checkpoint, ``conv1.weight`` (64, 3, k, k), becomes (64, 1, k, k) for grey input by summing
over the input channels: a grey image fed as R = G = B gives the same first-layer response.
"""

from __future__ import annotations

import pickle
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
from torch import Tensor

STEM_CONV = "conv1.weight"  # the input convolution in timm's HRNet and ResNet alike
_WRAPPER_KEYS = ("state_dict", "model")  # training checkpoints nest the weights under one of these


@dataclass
class LoadReport:
    """What ``load_pretrained`` did: names are backbone state_dict names (timm's)."""

    path: str
    loaded: list[str] = field(default_factory=list)
    adapted: dict[str, str] = field(default_factory=dict)  # name -> how it was adapted (also in ``loaded``)
    not_in_model: list[str] = field(default_factory=list)
    shape_mismatch: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)  # ckpt, model
    left_at_init: list[str] = field(default_factory=list)

    @property
    def skipped(self) -> dict[str, str]:
        """Every checkpoint tensor not loaded -> the reason."""
        reasons = {name: "not in model" for name in self.not_in_model}
        for name, (ckpt, model) in self.shape_mismatch.items():
            reasons[name] = f"shape mismatch: checkpoint {list(ckpt)} vs model {list(model)}"
        return reasons

    def __str__(self) -> str:
        lines = [f"pretrained weights from {self.path}: loaded {len(self.loaded)} tensors into the backbone"]
        lines += [f"  adapted {name}: {how}" for name, how in self.adapted.items()]
        if self.not_in_model:
            n, groups = len(self.not_in_model), _by_prefix(self.not_in_model)
            lines.append(f"  skipped {n} tensors not in the model: {groups}")
        for name, (ckpt, model) in self.shape_mismatch.items():
            lines.append(f"  skipped {name}: shape mismatch, checkpoint {list(ckpt)} vs model {list(model)}")
        if self.left_at_init:
            lines.append(f"  {len(self.left_at_init)} backbone tensors left at init: {_by_prefix(self.left_at_init)}")
            lines += [f"    {name}" for name in self.left_at_init[:20]]
            if len(self.left_at_init) > 20:
                lines.append(f"    ... and {len(self.left_at_init) - 20} more")
        return "\n".join(lines)


def _by_prefix(names: list[str]) -> str:
    """'incre_modules (96), classifier (2)': hundreds of names grouped by their top-level module."""
    counts = Counter(name.split(".")[0] for name in names)
    return ", ".join(f"{prefix} ({n})" for prefix, n in counts.items())


def read_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """A flat ``{name: tensor}`` from a timm-format file; ``state_dict``/``model`` wrappers and DDP's
    ``module.`` prefix are removed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file  # optional dependency, only needed for this format
        except ImportError as e:
            raise ImportError(f"reading {path.name} needs the safetensors package: pip install safetensors") from e
        try:
            state = load_file(str(path), device="cpu")
        except Exception as e:  # safetensors' own error type: a truncated or foreign file
            raise ValueError(f"{path}: not a readable safetensors weight file ({_first_line(e)})") from None
    elif path.suffix in (".pth", ".pt", ".bin"):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)  # no pickled code runs
        except pickle.UnpicklingError:  # not a pickle, or one with objects beyond tensors (never run)
            raise ValueError(f"{path}: not a weight file (not a torch file, or it holds pickled objects that are "
                             "not loaded); expected timm-format weights (.safetensors or .pth)") from None
        except Exception as e:  # a damaged zip, a truncated file
            raise ValueError(f"{path}: not a readable weight file ({type(e).__name__}: {_first_line(e)}); "
                             "expected timm-format weights (.safetensors or .pth)") from None
    else:
        raise ValueError(f"unsupported checkpoint format {path.suffix!r} ({path}); "
                         "expected .safetensors, .pth, .pt or .bin")
    for key in _WRAPPER_KEYS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict (found {type(state).__name__})")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def load_pretrained(model: nn.Module, path: str | Path, verbose: bool = True) -> LoadReport:
    """Copy the tensors of ``path`` that match by name and shape into ``model.backbone`` (or into ``model``
    itself when it has no ``backbone``); print (when ``verbose``) and return the report. The head is untouched."""
    backbone = getattr(model, "backbone", model)
    state = read_checkpoint(path)
    own = backbone.state_dict()
    report = LoadReport(path=str(path))
    matched: dict[str, Tensor] = {}
    for name, value in state.items():
        if name not in own or not isinstance(value, Tensor):
            report.not_in_model.append(name)
            continue
        target = own[name]
        if name == STEM_CONV and value.ndim == 4 and value.shape[1] == 3 and target.shape[1] == 1 \
                and value.shape[0] == target.shape[0] and value.shape[2:] == target.shape[2:]:
            report.adapted[name] = f"RGB {list(value.shape)} summed over input channels -> grey {list(target.shape)}"
            value = value.sum(dim=1, keepdim=True)
        if value.shape != target.shape:
            report.shape_mismatch[name] = (tuple(value.shape), tuple(target.shape))
            continue
        matched[name] = value
        report.loaded.append(name)
    result = backbone.load_state_dict(matched, strict=False)  # copies in place, casting to each tensor's dtype
    assert not result.unexpected_keys, result.unexpected_keys  # matched names come from own state_dict
    report.left_at_init = [name for name in own if name not in matched]
    if verbose:
        print(report)
    return report
