"""Several processes (``torchrun``): the process group from the environment, and the few collectives the engine
needs. With one process every function here is a cheap no-op, so single-GPU code paths stay plain."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    """This process's place: ``rank`` of ``world_size``, ``local_rank`` on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, shows progress and writes checkpoints."""
        return self.rank == 0


def init_distributed(device_name: str) -> tuple[Dist, torch.device | None]:
    """Join the process group that ``torchrun`` describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT);
    NCCL on CUDA, gloo on CPU. Without those variables: one process, nothing to do. Returns the device this rank
    must use (``cuda:LOCAL_RANK``) or ``None`` to let ``--device`` decide."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Dist(), None
    info = Dist(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(info.local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=datetime.timedelta(minutes=30))
    return info, torch.device("cuda", info.local_rank) if use_cuda else torch.device("cpu")


def all_gather(obj, info: Dist) -> list:
    """Every rank's ``obj`` (any picklable object), in rank order."""
    if not info.enabled:
        return [obj]
    gathered = [None] * info.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def any_rank(flags: list[bool], info: Dist, device: torch.device) -> list[bool]:
    """Element-wise OR of ``flags`` over ranks, so every rank takes the same decision (stop, save)."""
    if not info.enabled:
        return flags
    t = torch.tensor([float(f) for f in flags], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def barrier(info: Dist) -> None:
    """Wait for every rank (rank 0's files are written before the others read them)."""
    if info.enabled:
        dist.barrier()


def cleanup(info: Dist) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
