"""The side-stream prefetcher hands each step the batch it copied, never one still being copied: over many steps
of pinned 1024² batches (copies long enough to overlap), each batch it yields is compared with a plain copy, on
the consuming stream and before any host sync, so that a missing stream wait or ``record_stream`` shows as a
mismatch instead of being hidden by a synchronisation."""

from __future__ import annotations

import torch

from cephalo.doctor.report import FAIL, PASS, SKIPPED, Check
from cephalo.engine.runtime.prefetch import DevicePrefetcher

SECTION = "correctness"
NAME = "prefetcher (side-stream copies)"


def prefetcher_check(device: torch.device, image_size: tuple[int, int] = (1024, 1024), batch: int = 8,
                     steps: int = 64, distinct: int = 4) -> Check:
    """``steps`` batches of ``batch`` uint8 images, cycling through ``distinct`` pinned host buffers."""
    if device.type != "cuda":
        return Check(SECTION, NAME, SKIPPED, "copies overlap with compute only on CUDA (elsewhere each batch is "
                     "copied when it is needed)")
    generator = torch.Generator().manual_seed(0)
    host = [torch.randint(0, 256, (batch, 1, *image_size), dtype=torch.uint8, generator=generator).pin_memory()
            for _ in range(distinct)]
    host_landmarks = [torch.rand(batch, 29, 2, generator=generator).pin_memory() for _ in range(distinct)]
    expected = [h.to(device) for h in host]  # plain, synchronous copies
    expected_landmarks = [h.to(device) for h in host_landmarks]
    torch.cuda.synchronize(device)
    loader = [(host[i % distinct], host_landmarks[i % distinct], torch.arange(batch)) for i in range(steps)]
    wrong = torch.zeros((), dtype=torch.int64, device=device)
    count = 0
    for i, (images, landmarks, _) in enumerate(DevicePrefetcher(loader, device, non_blocking=True)):
        # the step: queued on the consuming stream right away; nothing waits for the host
        wrong += (images != expected[i % distinct]).sum() + (landmarks != expected_landmarks[i % distinct]).sum()
        count += 1
    torch.cuda.synchronize(device)
    mismatched = int(wrong)
    megabytes = batch * image_size[0] * image_size[1] / 2**20
    figures = {"steps": count, "batch_megabytes": megabytes, "mismatched_values": mismatched}
    if count != steps:
        return Check(SECTION, NAME, FAIL, f"yielded {count} batches of {steps}", figures)
    if mismatched:
        return Check(SECTION, NAME, FAIL, f"{mismatched} values differ from a plain copy over {steps} steps: a batch "
                     "was used before its copy finished", figures)
    return Check(SECTION, NAME, PASS, f"{steps} pinned batches of {megabytes:.0f} MB, each equal to a plain copy when "
                 "the step used it", figures)
