"""Batches on the training device, the next one copied while the current one computes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

Batch = tuple[torch.Tensor, ...]


class DevicePrefetcher:
    """Iterates a loader's ``(*tensors, index (B,))`` batches (the global stage's ``images (B, 1, H, W) uint8,
    landmarks (B, K, 2)``; the local stage's also spacing and jitter) with every tensor but the last already on
    ``device`` (the index stays on the host).

    On CUDA with ``non_blocking``, batch n+1 is copied on a side stream while batch n computes; from pinned host
    memory the copy is asynchronous, so the GPU does not wait for it. Elsewhere, or with ``non_blocking=False``,
    each batch is copied when it is needed.
    """

    def __init__(self, loader: Iterable[Batch], device: torch.device, non_blocking: bool = True):
        self.loader, self.device = loader, device
        self.overlap = non_blocking and device.type == "cuda"

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Batch]:
        if not self.overlap:
            for *tensors, index in self.loader:
                yield *(t.to(self.device) for t in tensors), index
            return
        stream = torch.cuda.Stream(self.device)
        batches = iter(self.loader)

        def copy_ahead() -> Batch | None:
            batch = next(batches, None)
            if batch is None:
                return None
            with torch.cuda.stream(stream):
                *tensors, index = batch
                return *(t.to(self.device, non_blocking=True) for t in tensors), index

        ahead = copy_ahead()
        while ahead is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_stream(stream)  # the copy of this batch is done before the step uses it
            for tensor in ahead[:-1]:
                tensor.record_stream(current)  # memory allocated on the side stream, used on this one
            batch, ahead = ahead, copy_ahead()
            yield batch
