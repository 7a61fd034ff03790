"""Process-group set-up from torchrun's environment, and the collectives training needs.

One process: every helper degrades to the identity and no process group is made.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.distributed as dist
import torch.distributed.nn


@dataclass(frozen=True)
class DistInfo:
    """This process's place: ``rank`` of ``world_size``; ``local_rank`` on its node; ``device``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, str(default))
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {value!r}") from None


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:<local_rank>`` when CUDA is available, else ``cpu``; else ``torch.device(device)``."""
    if device == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device(f"cuda:{local_rank}")
    return dev


def init_distributed(device: str) -> DistInfo:
    """Join the process group described by torchrun's RANK / WORLD_SIZE / LOCAL_RANK /
    MASTER_ADDR / MASTER_PORT (NCCL on CUDA, gloo on CPU); a single process when WORLD_SIZE <= 1."""
    world_size = _env_int("WORLD_SIZE", 1)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    dev = resolve_device(device, local_rank)
    if world_size <= 1:
        return DistInfo(device=dev)
    if not 0 <= rank < world_size:
        raise ValueError(f"RANK must lie in [0, WORLD_SIZE={world_size}), got {rank}")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo", init_method="env://",
                                rank=rank, world_size=world_size)
    return DistInfo(rank, world_size, local_rank, dev)


def cleanup(info: DistInfo) -> None:
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()


def gather_features(features: Sequence[torch.Tensor], info: DistInfo, *, local_loss: bool = False,
                    gather_with_grad: bool = False) -> list[torch.Tensor]:
    """Each tensor of every rank, rank-major: (b, ...) -> (world_size * b, ...), one per input.

    ``gather_with_grad``: a differentiable all-gather (gradients flow back to the rank
    that made each feature). Otherwise a plain all-gather; unless ``local_loss``, this
    rank's own tensors are put back in their slot so that they keep their gradient.
    """
    if not info.distributed:
        return list(features)
    if gather_with_grad:
        with warnings.catch_warnings():  # deprecated in favour of a private API; still correct on gloo and NCCL
            warnings.filterwarnings("ignore", message=r".*all_gather is deprecated", category=FutureWarning)
            return [torch.cat(torch.distributed.nn.all_gather(local), 0) for local in features]
    out = []
    for local in features:
        parts = [torch.empty_like(local) for _ in range(info.world_size)]
        dist.all_gather(parts, local.detach().contiguous())
        if not local_loss:
            parts[info.rank] = local
        out.append(torch.cat(parts, 0))
    return out


def mean_over_ranks(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of a tensor over ranks (a copy; the identity for one process)."""
    value = value.detach().clone()
    if info.distributed:
        dist.all_reduce(value)
        value /= info.world_size
    return value


def any_rank(flag: bool, info: DistInfo) -> bool:
    """True on every rank when ``flag`` is true on at least one."""
    if not info.distributed:
        return flag
    t = torch.tensor([float(flag)], device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def all_gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Picklable ``obj`` of every rank, in rank order."""
    if not info.distributed:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()
