"""Out of GPU memory in a training step: smaller micro-batches, then gradient checkpointing, then a clear stop.

The micro-batch is what one forward pass holds; the loader's batches and the accumulation groups stay as they were,
so every update still averages the same images (a loader batch of 2 becomes two micro-batches of 1 whose gradients
are summed with half the weight each): the effective batch and the epoch's order do not change.
"""

from __future__ import annotations

import gc

import torch

from cephalo.engine.config import TrainConfig
from cephalo.engine.step.parts import Parts
from cephalo.engine.step.progress import Progress
from cephalo.models import LIGHTER_MODEL


class OutOfMemoryStop(RuntimeError):
    """The step does not fit even at micro-batch 1 with gradient checkpointing; the message names the remedies."""


def release_memory(device: torch.device) -> None:
    """Give back what a failed step held: its tensors are garbage once the exception is gone."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def shrink(config: TrainConfig, micro_batch: int, checkpointing: bool, can_checkpoint: bool,
           label: str = "") -> tuple[int, bool, str]:
    """The next setting to try after running out of memory at ``micro_batch``: ``(micro_batch, checkpointing,
    what changed)``; raises :class:`OutOfMemoryStop` when nothing is left to try. ``config``: the stage's view,
    ``label`` the stage's ("local " or nothing)."""
    per_update = config.batch_size * config.gradient_accumulation_steps
    if micro_batch > 1:
        smaller = micro_batch // 2
        return smaller, checkpointing, (
            f"out of GPU memory{' in the local stage' if label else ''}: micro-batch {micro_batch} -> {smaller}, "
            "accumulation "
            f"{per_update // micro_batch} -> {per_update // smaller} (still {per_update} images per update); "
            "redoing this update")
    if not checkpointing and can_checkpoint:
        return 1, True, ("out of GPU memory at micro-batch 1: gradient checkpointing switched on; "
                         "redoing this update")
    raise OutOfMemoryStop(remedies(config, label))


def recover_from_oom(config: TrainConfig, parts: Parts, p: Progress, label: str = "") -> str:
    """Drop the partial gradients, free the failed step's memory and pick smaller settings (saved in ``p``, so a
    resumed run keeps them), or stop; returns what changed."""
    parts.optimizer.zero_grad(set_to_none=True)
    release_memory(parts.device)
    can_checkpoint = hasattr(parts.raw_model, "set_grad_checkpointing")
    micro, checkpointing, message = shrink(config, p.micro_batch or config.batch_size,
                                           p.oom_checkpointing or config.gradient_checkpointing, can_checkpoint, label)
    if checkpointing and not p.oom_checkpointing and not config.gradient_checkpointing:
        parts.raw_model.set_grad_checkpointing(True)
        p.oom_checkpointing = True
    p.micro_batch = micro
    return message


def remedies(config: TrainConfig, label: str = "") -> str:
    """What the user can change, with values for this run, in the order of the user's own notes; ``config`` is the
    stage's view, ``label`` the stage's ("local ": the local stage's own flags are named)."""
    h, w = config.image_size
    lines = [f"out of GPU memory even at micro-batch 1 with gradient checkpointing ({label}{config.model}, {h}x{w} "
             "input" + (f", --vram_budget_gb {config.vram_budget_gb:g}" if config.vram_budget_gb else "") + ").",
             "Nothing of the failed update was saved; the last checkpoint is intact. Try, in this order:"]
    if not config.mixed_precision:
        lines.append("  --mixed_precision                 (fp16 activations: about half the memory)")
    lines.append("  close other programs that use the GPU (browsers, games; on Windows the desktop takes some)")
    if config.num_workers > 0:
        lines.append(f"  --num_workers {config.num_workers // 2:<20}(fewer worker processes and pinned batches)")
    model_flag = "--local_model" if label else "--model"
    if config.model in LIGHTER_MODEL:
        lines.append(f"  {model_flag} {LIGHTER_MODEL[config.model]:<{33 - len(model_flag)}}(a lighter network)")
    if label:
        lines.append(f"  --patch_size {max(32, h // 2 // 32 * 32):<21}(smaller patches: each image brings one per "
                     "landmark)")
    else:
        lines.append(f"  --image_size {h // 2} {w // 2:<16}(for testing: a quarter of the pixels)")
    return "\n".join(lines)
