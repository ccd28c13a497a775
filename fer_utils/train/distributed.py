"""DistributedDataParallel: the process group ``torchrun`` starts, data shards, metrics agreed by all ranks.

``torchrun --nproc_per_node N -m fer_utils train ...`` starts N processes with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` set; :func:`process_group` joins them (nccl on CUDA, gloo on
CPU) and :func:`~fer_utils.train.fit` notices the group (:func:`current`): each rank trains on its
shard held on its own device, DDP averages the gradients, validation is sharded and summed, so
every rank takes the same decisions; only rank 0 writes.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from fer_utils.data import FaceData
from fer_utils.devices import resolve_device


@dataclass(frozen=True)
class Rank:
    """This process's place in the group and the device it trains on."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes run files."""
        return self.rank == 0

    def shard(self, data: FaceData, seed: int) -> FaceData:
        """This rank's equal share of ``data``: a permutation seeded by ``seed`` cut in
        ``world_size`` parts (the ``len % world_size`` remainder is left out, so every rank runs
        the same number of steps)."""
        per = len(data) // self.world_size
        order = np.random.default_rng(seed).permutation(len(data))
        return data.subset(np.sort(order[self.rank * per:(self.rank + 1) * per]))

    def strided(self, data: FaceData) -> FaceData:
        """Items ``rank, rank + world_size, ...``: the ranks' parts cover ``data`` once."""
        return data.subset(np.arange(self.rank, len(data), self.world_size))

    def local_batch_size(self, batch_size: int) -> int:
        """Per-rank batch of a global ``batch_size`` (which must divide by ``world_size``)."""
        if batch_size % self.world_size:
            raise ValueError(f"batch size {batch_size} does not divide by the {self.world_size} processes")
        return batch_size // self.world_size

    def mean(self, values: Sequence[float], weight: float = 1.0) -> list[float]:
        """Mean over ranks of per-rank ``values``, each rank counting ``weight`` (its items)."""
        totals = torch.tensor([*(v * weight for v in values), weight], dtype=torch.float64, device=self.device)
        dist.all_reduce(totals)
        return [float(t) for t in totals[:-1] / totals[-1]]

    def share_buffers(self, model: nn.Module) -> None:
        """Rank 0's buffers (batch-norm statistics) on every rank: DDP syncs them only before a
        training forward, so after an epoch each rank holds its own; rank 0's are checkpointed."""
        for buffer in model.buffers():
            dist.broadcast(buffer, 0)

    def barrier(self) -> None:
        """Wait for every rank."""
        if self.device.type == "cuda":
            dist.barrier(device_ids=[self.device.index])
        else:
            dist.barrier()


def current() -> Rank | None:
    """The joined process group's :class:`Rank`, or None in a single process (or a group of one)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    return Rank(dist.get_rank(), dist.get_world_size(), device)


def launched_processes() -> int:
    """How many processes the launcher (``torchrun``) started; 1 without one."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank_device(device: str | torch.device | None) -> torch.device:
    """The device this process trains on: ``cuda:LOCAL_RANK`` when CUDA is asked for (or chosen
    by default) without an index under a launcher, else ``device`` as resolved."""
    resolved = resolve_device(device)
    if resolved.type == "cuda" and resolved.index is None and launched_processes() > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return resolved


@contextmanager
def process_group(device: torch.device) -> Iterator[Rank | None]:
    """Join the launcher's processes for the block (nccl on CUDA, gloo on CPU); None and
    nothing done when this is a single process."""
    if launched_processes() < 2:
        yield None
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        rank = current()
        yield rank
        rank.barrier()  # no process tears the group down while another still uses it (rank 0 tests and writes)
    finally:
        dist.destroy_process_group()
