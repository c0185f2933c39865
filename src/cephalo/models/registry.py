"""The model registry: every ``--model`` name, how to build it, its timm name and its next lighter model.

Each architecture module (``hrnet.py``, ``resnet.py``) registers its models when imported, and ``cephalo.models``
imports those modules, so ``MODEL_NAMES``, ``LIGHTER_MODEL``, ``TIMM_NAMES`` and ``create_model`` all follow
from the registrations. Adding a backbone is one module (or one ``register_model`` call in an existing one)::

    # cephalo/models/convnext.py
    register_model("convnext_tiny", backbone=partial(ConvNeXtBackbone, depths=(3, 3, 9, 3)),
                   head=simple_baseline_head, timm_name="convnext_tiny", lighter=None)

    # cephalo/models/__init__.py: one import line, which runs the registration
    from cephalo.models import convnext  # noqa: F401

``backbone(in_chans=...)`` returns a module with ``forward(x (B, in_chans, H, W)) -> [feature maps]``,
``out_channels`` and ``set_grad_checkpointing(enable)``; ``head(backbone, num_landmarks, head_stride)`` returns
the heatmap head for those features, ``(B, num_landmarks, H / head_stride, W / head_stride)`` (see ``heads.py``).
This module imports nothing of cephalo's: the architecture modules sit above it and call it, never the reverse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch.nn as nn

BackboneFn = Callable[..., nn.Module]  # (in_chans=...) -> backbone
HeadFn = Callable[[nn.Module, int, int], nn.Module]  # (backbone, num_landmarks, head_stride) -> head


@dataclass(frozen=True)
class ModelSpec:
    """What ``create_model`` needs to build ``name``, and what the command line and the OOM advice say of it."""

    name: str
    backbone: BackboneFn
    head: HeadFn
    timm_name: str  # the name timm's pretrained weights go by (e.g. hrnet_w18_small -> hrnet_w18_small_v2)
    lighter: str | None = None  # the next lighter registered model, suggested when this one runs out of memory


_MODELS: dict[str, ModelSpec] = {}  # in registration order: the order of the --model choices
_ALIASES: dict[str, str] = {}  # short name -> registered model name


def register_model(name: str, *, backbone: BackboneFn, head: HeadFn, timm_name: str | None = None,
                   lighter: str | None = None) -> ModelSpec:
    """Make ``name`` buildable by ``create_model``; ``timm_name`` defaults to ``name``. ``lighter`` may be
    registered later (it is checked when ``lighter_models()`` is read). A name taken already raises ValueError."""
    _check_free(name)
    spec = ModelSpec(name, backbone, head, timm_name or name, lighter)
    _MODELS[name] = spec
    return spec


def register_alias(alias: str, target: str) -> None:
    """Let ``alias`` stand for the registered model ``target`` (``hrnet`` -> ``hrnet_w32``)."""
    _check_free(alias)
    if target not in _MODELS:
        raise ValueError(f"alias {alias!r}: target model {target!r} is not registered")
    _ALIASES[alias] = target


def unregister(name: str) -> None:
    """Remove a model (with its aliases) or an alias; for tests that register a model of their own."""
    if name in _ALIASES:
        del _ALIASES[name]
        return
    if name not in _MODELS:
        raise ValueError(f"cannot unregister {name!r}: not registered")
    del _MODELS[name]
    for alias in [a for a, target in _ALIASES.items() if target == name]:
        del _ALIASES[alias]


def _check_free(name: str) -> None:
    if name in _MODELS or name in _ALIASES:
        kind = "an alias" if name in _ALIASES else "a model"
        raise ValueError(f"model name {name!r} is already registered as {kind}; pick another name")


def model_names() -> tuple[str, ...]:
    """Every name ``create_model`` accepts: aliases first (the short family names), then the models in
    registration order."""
    return (*_ALIASES, *_MODELS)


def get_model_spec(name: str) -> ModelSpec:
    """The spec of a model or alias; an unknown name raises ValueError listing the valid ones."""
    spec = _MODELS.get(_ALIASES.get(name, name))
    if spec is None:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(model_names())}")
    return spec


def lighter_models() -> dict[str, str]:
    """Name (aliases included) -> the next lighter model, for the names that have one."""
    lighter = {}
    for name in model_names():
        spec = get_model_spec(name)
        if spec.lighter is None:
            continue
        if spec.lighter not in _MODELS:
            raise ValueError(f"model {spec.name!r}: lighter model {spec.lighter!r} is not registered")
        lighter[name] = spec.lighter
    return lighter


def timm_names() -> dict[str, str]:
    """Model name -> timm's name, only where they differ (where to find the ImageNet weights)."""
    return {name: spec.timm_name for name, spec in _MODELS.items() if spec.timm_name != name}
