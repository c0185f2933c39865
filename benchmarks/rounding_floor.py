"""How far correct training paths and simulated bugs are from the eager fp32 reference, in units of the rounding
floor (the reference's distance from itself with rounding-sized noise in its weights): the data behind the
doctor's tolerances (``cephalo.engine.checks.agreement``).

    PYTHONPATH=src python benchmarks/rounding_floor.py --model hrnet_w18_small --image_size 128 --accumulation 8

Prints one markdown row per path: gradient rel. L2 and cosine against the reference, and the ratio to the floor
of its precision. ``--compile`` adds a real torch.compile (a cold compile takes minutes on a CPU).
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import time

import torch

import cephalo.engine.step.loop as loop
from cephalo.device import exact_fp32
from cephalo.doctor.paths import run_path
from cephalo.engine.checks.agreement import EPS, FLOORS, agreement, perturbed
from cephalo.engine.config import TrainConfig
from cephalo.engine.stages.global_stage import GlobalStage


def lost_earlier_micro_batches(stage, model, batch, weight, sync, augment=True):
    """The bug CUDA graphs have had with accumulation: each micro-batch's gradient replaces the sum so far."""
    for p in stage.parts.raw_model.parameters():
        p.grad = None
    return REAL_FORWARD_BACKWARD(stage, model, batch, weight, sync, augment)


def first_micro_batch_dropped(stage, model, batch, weight, sync, augment=True):
    first = not getattr(first_micro_batch_dropped, "seen", False)
    first_micro_batch_dropped.seen = True
    return REAL_FORWARD_BACKWARD(stage, model, batch, 0.0 if first else weight, sync, augment)


REAL_FORWARD_BACKWARD = loop.forward_backward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="hrnet_w18_small")
    parser.add_argument("--image_size", type=int, default=128)
    parser.add_argument("--micro_batch", type=int, default=1)
    parser.add_argument("--accumulation", type=int, default=8)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--cache_dir", default=None)
    args = parser.parse_args()
    base = TrainConfig(dataset_path="synthetic", image_size=(args.image_size,) * 2, model=args.model,
                       batch_size=args.micro_batch, gradient_accumulation_steps=args.accumulation,
                       augmentation="none", num_workers=0, epochs=1, warmup_epochs=0.0, use_ema=True,
                       progress=False, device="cpu", cache_dir=args.cache_dir)
    weights = {k: v.detach().clone() for k, v in GlobalStage(base).parts.raw_model.state_dict().items()}
    start = time.perf_counter()
    with exact_fp32():
        reference = run_path(base, weights, updates=False).gradients
        floors = {key: agreement(reference, run_path(base, perturbed(weights, EPS[key], 1), False).gradients)
                  for key in ("fp32", "bf16")}
    rows = [("fp32, weights x (1 + 2^-23 N)", "fp32", floors["fp32"]),
            ("fp32, weights x (1 + 2^-8 N)", "bf16", floors["bf16"])]
    paths = {"channels_last": ({"channels_last": True}, "fp32"), "gradient checkpointing":
             ({"gradient_checkpointing": True}, "fp32"), "bf16 autocast": ({"mixed_precision": True}, "bf16")}
    if args.compile:
        paths["compile default"] = ({"use_compile": True}, "fp32")
    for name, (changes, key) in paths.items():
        with exact_fp32():
            rows.append((name, key, agreement(reference, run_path(dataclasses.replace(base, **changes), weights,
                                                                  False).gradients)))
    for name, bug in (("bug: earlier micro-batches lost", lost_earlier_micro_batches),
                      ("bug: first micro-batch dropped", first_micro_batch_dropped)):
        loop.forward_backward = bug
        try:
            rows.append((name, "fp32", agreement(reference, run_path(base, weights, False).gradients)))
        finally:
            loop.forward_backward = REAL_FORWARD_BACKWARD
    print(f"{args.model} at {args.image_size}², {args.accumulation} x {args.micro_batch} images, random init, "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{time.perf_counter() - start:.0f} s; tolerances: {FLOORS['fp32']:g} fp32 floors, "
          f"{FLOORS['bf16']:g} bf16 floors\n")
    print("| path | gradients rel. L2 | cosine | floors of its precision |")
    print("|---|---|---|---|")
    for name, key, a in rows:
        print(f"| {name} | {a.rel_l2:.2e} | {a.cosine:.6f} | {a.rel_l2 / floors[key].rel_l2:.1f} ({key}) |")


if __name__ == "__main__":
    main()
