"""Training in several processes: ``torchrun --nproc_per_node=N`` with DistributedDataParallel.

``torchrun`` starts N copies of the same program and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT`` in each. ``DistributedContext.from_environment`` reads them and
joins the process group (gloo on the CPU, nccl on GPUs); without them it describes a single process
and nothing changes.

Each process reads every batch of the global sequence and keeps its share (``shard``): process r
takes batches r, r + N, r + 2N, ... so that step s of the run sees the global batch made of batches
sN … sN + N − 1, one per process. DistributedDataParallel averages the gradients over the
processes; for the result to be the gradient of the mean over the *global* batch when the shares
differ in size, each process scales its mean loss by its share of the units (``global_mean_weight``):

    L = Σ_r n_r L_r / Σ_r n_r,   so process r back-propagates   N · (n_r / Σ_r n_r) · L_r

(the N cancels DDP's averaging). Only rank 0 writes logs and checkpoints.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import torch
import torch.distributed as dist
from torch import Tensor, nn


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands: rank r of N processes, and the device it trains on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    started_group: bool = False      # whether this context joined the process group (and must leave it)

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0, the process that writes logs and checkpoints."""
        return self.rank == 0

    @classmethod
    def from_environment(cls) -> "DistributedContext":
        """Read ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` (set by torchrun) and join the process group
        with ``nccl`` where CUDA is available, ``gloo`` otherwise. Without them: one process."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls()
        if "RANK" not in os.environ:
            raise RuntimeError(f"WORLD_SIZE={world_size} but RANK is not set; start the processes with "
                               "torchrun (python -m torch.distributed.run --nproc_per_node=N ...)")
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", os.environ["RANK"]))
        started = False
        if not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            if backend == "nccl":
                torch.cuda.set_device(local_rank)
            dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
            started = True
        return cls(rank=rank, world_size=world_size, local_rank=local_rank, started_group=started)

    def default_device(self) -> torch.device | None:
        """``cuda:LOCAL_RANK`` for a distributed run with GPUs; None otherwise (keep the model's)."""
        if self.is_distributed and torch.cuda.is_available():
            return torch.device("cuda", self.local_rank)
        return None

    def wrap(self, model: nn.Module) -> nn.Module:
        """The model in DistributedDataParallel when distributed (its weights are broadcast from
        rank 0), else the model itself."""
        if not self.is_distributed:
            return model
        device = next(model.parameters()).device
        device_ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)

    def shard(self, batches: Iterable[Any]) -> Iterator[Any]:
        """This process's share of ``batches``: those whose index is ``rank`` modulo N. A last, incomplete
        round is dropped so that every process takes the same number of steps (DDP would hang)."""
        if not self.is_distributed:
            yield from batches
            return
        round_ = []
        for batch in batches:
            round_.append(batch)
            if len(round_) == self.world_size:
                yield round_[self.rank]
                round_ = []

    def sum(self, values: list[float]) -> list[float]:
        """Each value summed over the processes (the values themselves in one process)."""
        if not self.is_distributed:
            return list(values)
        device = torch.device("cuda", self.local_rank) if dist.get_backend() == "nccl" else torch.device("cpu")
        total = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(total)
        return total.tolist()

    def global_mean_weight(self, local_units: float, global_units: float) -> float:
        """N · n_r / Σ n: the factor that makes DDP's averaged gradient that of the global mean."""
        return self.world_size * local_units / global_units

    def barrier(self) -> None:
        if self.is_distributed:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group if this context joined it."""
        if self.started_group and dist.is_initialized():
            dist.destroy_process_group()


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model

