"""Data-parallel training with ``torchrun``: process group set-up, device choice, gathers.

``torchrun --nproc-per-node K -m aucli train ...`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``;
:func:`setup` joins the process group (NCCL on GPUs, gloo on CPU). Only rank 0 writes files.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from aucli.errors import UsageError

__all__ = ["DistContext", "setup", "resolve_device", "gather_rows", "broadcast_flag", "unwrap"]


@dataclass(frozen=True)
class DistContext:
    """This process in the job: ``rank`` of ``world_size``, its device, and whether it set up the group."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group if :func:`setup` created it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def resolve_device(spec: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:<local_rank>`` when CUDA is available, else ``cpu``; other specs as given, checked."""
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise UsageError(f"unknown device {spec!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"device {spec!r} asked for, but CUDA is not available here; use --device cpu")
        index = device.index if device.index is not None else local_rank
        if index >= torch.cuda.device_count():
            raise UsageError(f"device {spec!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        device = torch.device(f"cuda:{index}")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError("device 'mps' asked for, but it is not available here; use --device cpu")
    return device


def setup(device_spec: str) -> DistContext:
    """Join the torchrun process group when ``WORLD_SIZE > 1`` (NCCL on CUDA, gloo otherwise)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world_size > 1 and device_spec.strip().lower() == "auto" and torch.cuda.is_available():
        device = torch.device(f"cuda:{local_rank}")
    elif world_size > 1 and device_spec.strip().lower().startswith("cuda"):
        device = torch.device(f"cuda:{local_rank}")
    else:
        device = resolve_device(device_spec, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    owns = False
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        owns = True
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device, owns_group=owns)


def gather_rows(ctx: DistContext, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Concatenate each array along its first axis over the ranks, in rank order (every rank gets the whole).

    Tensors travel through ``all_gather`` (padded to the longest share); nothing is pickled.
    """
    if not ctx.distributed:
        return list(arrays)
    local = torch.tensor([len(arrays[0]) if arrays else 0], dtype=torch.long, device=ctx.device)
    shares = [torch.zeros_like(local) for _ in range(ctx.world_size)]
    dist.all_gather(shares, local)
    lengths = torch.cat(shares)
    longest = int(lengths.max())
    result = []
    for array in arrays:
        array = np.asarray(array)
        tensor = torch.from_numpy(np.ascontiguousarray(array)).to(ctx.device)
        padded = torch.zeros((longest, *tensor.shape[1:]), dtype=tensor.dtype, device=ctx.device)
        padded[: tensor.shape[0]] = tensor
        parts = [torch.empty_like(padded) for _ in range(ctx.world_size)]
        dist.all_gather(parts, padded)
        result.append(np.concatenate([part[: int(n)].cpu().numpy() for part, n in zip(parts, lengths.tolist())]))
    return result


def broadcast_flag(ctx: DistContext, value: bool) -> bool:
    """Rank 0's decision, on every rank."""
    if not ctx.distributed:
        return value
    flag = torch.tensor([1 if value else 0], dtype=torch.long, device=ctx.device)
    dist.broadcast(flag, src=0)
    return bool(flag.item())
