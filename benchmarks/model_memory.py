"""Activation memory and step time of the heatmap models with and without gradient checkpointing (CPU).

Activation memory = bytes of the tensors autograd keeps between forward and backward (counted with a
``saved_tensors_hooks`` pack hook, one count per storage, parameters excluded). With checkpointing this includes
the inputs each checkpointed segment keeps. Time = one forward + backward in training mode; the two variants
alternate and the fastest of the repeats is kept, the one least disturbed by other processes on a shared machine.

    python benchmarks/model_memory.py --models hrnet_w18_small hrnet_w32 --size 256 --batch 2 --head_strides 4 1
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from cephalo.engine.runtime.monitor import saved_activation_bytes
from cephalo.models import create_model


def step_seconds(model: torch.nn.Module, x: torch.Tensor) -> float:
    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    model(x).square().mean().backward()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["hrnet_w18_small", "hrnet_w32"])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--head_strides", type=int, nargs="+", default=[4, 1])
    parser.add_argument("--landmarks", type=int, default=19)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print(f"input ({args.batch}, 1, {args.size}, {args.size}) float32, K={args.landmarks}, training mode\n")
    print("| model | head stride | activations plain | activations checkpointed | ratio "
          "| fwd+bwd plain | fwd+bwd checkpointed | time ratio |")
    print("|---|---|---|---|---|---|---|---|")
    x = torch.randn(args.batch, 1, args.size, args.size)
    for name in args.models:
        for head_stride in args.head_strides:
            torch.manual_seed(0)
            model = create_model(name, num_landmarks=args.landmarks, head_stride=head_stride).train()
            mem, times = {}, {False: [], True: []}
            for ckpt in (False, True):
                model.set_grad_checkpointing(ckpt)
                mem[ckpt] = saved_activation_bytes(model, x)  # also warms up (allocator, oneDNN primitives)
            for _ in range(args.repeats):
                for ckpt in (False, True):
                    model.set_grad_checkpointing(ckpt)
                    times[ckpt].append(step_seconds(model, x))
            sec = {k: min(v) for k, v in times.items()}
            mib = {k: v / 2**20 for k, v in mem.items()}
            print(f"| {name} | {head_stride} | {mib[False]:.0f} MiB | {mib[True]:.0f} MiB "
                  f"| {mem[True] / mem[False]:.0%} | {sec[False]:.2f} s | {sec[True]:.2f} s "
                  f"| {sec[True] / sec[False]:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
