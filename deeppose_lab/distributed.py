"""Where training runs: the device (chosen once) and, under ``torchrun``, the process group.

One process on a laptop is the common case and costs nothing here: every helper answers as rank 0 of 1
when no process group exists. Under ``torchrun --nproc_per_node=N`` each process trains on its own shard
of every batch (DistributedDataParallel averages the gradients), and only rank 0 writes files.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def default_device() -> torch.device:
    """The GPU of this process when one exists (its LOCAL_RANK under torchrun), else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
    return torch.device("cpu")


def init_from_env() -> bool:
    """Join the process group torchrun describes in the environment; False when not launched by torchrun."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(default_device())
    dist.init_process_group(backend=backend)
    return True


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return rank_and_world()[0] == 0


def barrier() -> None:
    if rank_and_world()[1] > 1:
        dist.barrier()


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The mean of a scalar over all processes (so every rank agrees on a NaN or on the epoch's loss)."""
    if rank_and_world()[1] == 1:
        return value
    out = value.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / rank_and_world()[1]
