"""Several processes (``torchrun``): who this process is, and the few collectives the loop needs.

The training loop runs unchanged in one process or under ``torchrun --nproc_per_node N`` (and across
nodes with ``--nnodes``/``--rdzv-*``): stage B is ``DistributedDataParallel`` (gloo on the CPU,
nccl on GPUs), each rank solves stage A for its own shard of the images, and rank 0 alone writes
metrics, panels and checkpoints. The stage-A cache on disk is the medium through which the ranks
share their labels, so with several nodes ``--out`` must be on a file system they all see.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["Distributed", "from_env", "SINGLE"]


@dataclass(frozen=True)
class Distributed:
    """This process's place among ``world_size`` processes (``rank`` 0 writes the files).

    Collectives are no-ops in a single process. ``device`` is where collective buffers live
    (a CUDA device for nccl, the CPU for gloo).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()

    def sum(self, values: np.ndarray) -> np.ndarray:
        """Element-wise sum over the ranks of a numeric host array (confusion matrices, counts)."""
        values = np.asarray(values)
        if not self.active:
            return values
        t = torch.as_tensor(values, dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return t.cpu().numpy().astype(values.dtype)

    def mean(self, value: float) -> float:
        return float(self.sum(np.array([value], np.float64))[0] / self.world_size)

    def gather(self, value: float) -> list[float]:
        """``value`` of every rank, in rank order."""
        if not self.active:
            return [value]
        one_hot = np.zeros(self.world_size, np.float64)
        one_hot[self.rank] = value
        return [float(v) for v in self.sum(one_hot)]

    def shard(self, items: list) -> list:
        """This rank's disjoint share of ``items`` (every ``world_size``-th, from ``rank``)."""
        return items[self.rank :: self.world_size]


SINGLE = Distributed()  #: one process


def from_env(device: str | torch.device = "cpu") -> Distributed:
    """The process group ``torchrun`` describes (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``), initialised once.

    Without ``torchrun`` (``WORLD_SIZE`` unset or 1) this is :data:`SINGLE`. The backend is nccl when
    ``device`` is CUDA, gloo otherwise; a CUDA device becomes ``cuda:<LOCAL_RANK>``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    if not torch.distributed.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch has no torch.distributed support")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.set_device(local_rank)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if cuda else "gloo")
    return Distributed(
        rank=torch.distributed.get_rank(),
        world_size=torch.distributed.get_world_size(),
        local_rank=local_rank,
        device=torch.device("cuda", local_rank) if cuda else torch.device("cpu"),
    )
