"""Checkpoints: everything needed to resume exactly or to predict, written atomically."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cephalo.atomic import atomic_open

CHECKPOINT_VERSION = 1


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module under DDP's ``.module``, ``torch.compile``'s ``._orig_mod`` and :class:`CompileFallback`."""
    from cephalo.engine.compile import CompileFallback

    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, (nn.parallel.DistributedDataParallel, CompileFallback)):
            model = model.module if hasattr(model, "module") else model.model
        else:
            return model


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, state: dict) -> None:
    """Write ``state`` to ``path`` atomically: a temporary file, flushed and fsynced, then renamed over ``path``.

    A crash or a full disk while writing leaves the previous checkpoint intact.
    """
    with atomic_open(path, "wb", fsync=True) as f:
        torch.save({"version": CHECKPOINT_VERSION, **state}, f)


def load_checkpoint(path: Path | str, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`; a clear error for a missing or damaged file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        # weights_only=False: our own file holds RNG states and the config (numpy and Python objects).
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # truncated zip, not a torch file, ...
        raise ValueError(f"{path}: not a readable cephalo checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"{path}: not a cephalo checkpoint (no 'model' entry)")
    return state
