"""Data-parallel training under torchrun: one process per device, gradients averaged by DDP.

`torchrun --nproc_per_node=N -m spangpt pretrain ...` sets RANK / WORLD_SIZE / LOCAL_RANK; without them
everything here is a no-op and training runs exactly as a single process.

The data side needs no sampler object: every rank draws the same epoch and the same shuffle from the
same random.Random(seed), and takes its own slice of each global batch (shard). --batch-size stays
the global batch, so the optimizer steps, the LR schedule and a saved state are the same whatever the
number of processes (a state saved with N processes resumes with M).
"""
from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist

from spangpt.errors import UserError

# A collective waits this long for a peer that stopped answering (a hung machine; a dead process is
# noticed at once by torchrun), so a broken job fails instead of hanging forever.
TIMEOUT = timedelta(minutes=10)


def setup(device: torch.device) -> int:
    """Join the process group if launched by torchrun with WORLD_SIZE > 1 (idempotent); -> world size."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1 or dist.is_initialized():
        return world_size()
    if device.type == "mps":
        raise UserError("--device mps cannot train with several processes (no torch.distributed backend); "
                        "run without torchrun")
    if device.type == "cuda":
        torch.cuda.set_device(local_rank())  # before any CUDA work, so each process owns one GPU
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)
    return world_size()


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def device_for(device: torch.device) -> torch.device:
    """This process's device: under torchrun on CUDA, GPU LOCAL_RANK whatever index --device gave."""
    return torch.device("cuda", local_rank()) if device.type == "cuda" and world_size() > 1 else device


def all_reduce(t: torch.Tensor, op=None) -> torch.Tensor:
    """In place over all ranks (sum by default); returns t. Single process: t unchanged."""
    if world_size() > 1:
        dist.all_reduce(t, op=op or dist.ReduceOp.SUM)
    return t


def max_over_ranks(value: int, device) -> int:
    return int(all_reduce(torch.tensor([value], device=device), dist.ReduceOp.MAX).item())


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def broadcast(obj):
    """Rank 0's picklable `obj` on every rank (only rank 0's argument is used)."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DDP around `model` (the GPT or its torch.compile'd version) when there are several ranks."""
    if world_size() == 1:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def loss_scale(weight: float, world: int, real: int) -> float:
    """What a rank multiplies its shard's SUMMED token loss by before backward.

    One process minimises sum(token losses of the batch) / real (real = the global batch's non-PAD
    targets). Rank r has the sum S_r over its shard, and DDP averages the ranks' gradients:
    (1/world) * sum_r grad(L_r). With L_r = S_r * world / real that is grad(sum_r S_r) / real, the
    one-process gradient of the global batch, however unequal the shards. weight 0: a stand-in shard.
    """
    return weight * world / max(1, real)


def shard(batch: list, rank: int, world: int) -> tuple[list, float]:
    """This rank's part of a global batch -> (examples, weight).

    Strided (rank, rank + world, ...): disjoint, together exactly the global batch, sizes within one.
    A rank left with nothing (the epoch's last batch smaller than the world) still has to run forward
    and backward, or DDP's gradient all-reduce would wait for it forever: it gets a copy of the first
    example with weight 0, so it adds exactly nothing to the gradient or the loss.
    """
    mine = batch[rank::world]
    return (mine, 1.0) if mine else (batch[:1], 0.0)
