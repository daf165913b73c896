"""Multi-process training through ``torchrun``: process group set-up and gradient-preserving gathers.

Launch (one process per GPU; gloo on CPU)::

    torchrun --nproc_per_node 4 --no-python soundedit train --manifest train.csv --val val.csv --out runs/x

Each rank sees a shard of every global batch (:class:`soundedit.training.data.EpochSampler`),
gathers the embeddings of all ranks (:func:`all_gather_with_grad`) and computes the
InfoNCE loss over the *global* batch, so negatives come from every rank.  Every
rank computes the same global loss; the gather's backward sums the gradients of
all ranks' copies of the loss into each rank's own rows, and DDP's gradient
average then equals the gradient of the one global-batch loss exactly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.distributed as dist

logger = logging.getLogger("soundedit")


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size``."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def current() -> DistInfo:
    """The process group's view of this process (single process when none is initialised)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size())
    return DistInfo()


def init_from_env(device: str | torch.device = "auto") -> tuple[DistInfo, torch.device]:
    """Initialise the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1).

    Picks NCCL with one GPU per process (``cuda:LOCAL_RANK``) when CUDA is used, gloo on CPU.

    Args:
        device: the user's device choice (``auto``/``cpu``/``cuda``...).

    Returns:
        ``(info, device)`` for this process.
    """
    from soundedit.runtime import distributed_rank, resolve_device

    dev = resolve_device(device)
    _, world, local_rank = distributed_rank()
    if world <= 1:
        return DistInfo(), dev
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    info = current()
    logger.info("distributed: rank %d of %d on %s (%s)", info.rank, info.world_size, dev, dist.get_backend())
    return info, dev


def shutdown(*, clean: bool = True) -> None:
    """Tear the process group down (no-op when none).

    Callers drop their ``DistributedDataParallel`` wrappers first.  After a clean run
    every rank waits for the others at a barrier, so rank 0 (which hosts the
    rendezvous store) outlives every rank's last collective; the garbage collection
    releases wrappers caught in reference cycles, whose gloo worker threads would
    otherwise be torn down during interpreter finalisation and abort the process
    (SIGABRT, "terminate called without an active exception").

    Args:
        clean: ``False`` when leaving on an error: no barrier, since the other ranks
            may never reach it (the launcher then stops them instead of all hanging).
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    import gc

    if clean:
        dist.barrier()
    gc.collect()
    dist.destroy_process_group()


class _AllGatherWithGrad(torch.autograd.Function):
    """all_gather whose backward returns this rank's slice of the summed upstream gradients.

    (all_reduce rather than reduce_scatter in backward: gloo has no reduce_scatter.)
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.n = dist.get_rank(), x.shape[0]
        return all_gather_nograd(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.n:(ctx.rank + 1) * ctx.n]


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (same shape on every rank) from all ranks in rank order, keeping gradients.

    Args:
        x: ``(n, ...)`` on this rank.

    Returns:
        ``(world_size * n, ...)``; ``x`` itself when not distributed.
    """
    if not current().enabled:
        return x
    return _AllGatherWithGrad.apply(x)


def all_gather_nograd(x: torch.Tensor) -> torch.Tensor:
    """Like :func:`all_gather_with_grad` for tensors without gradients (targets, ids)."""
    if not current().enabled:
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def barrier() -> None:
    if current().enabled:
        dist.barrier()
