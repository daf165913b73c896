"""Checking on the CPU that a step could be captured as a CUDA graph.

A CUDA graph records kernels; it cannot record the host waiting for a value. :class:`HostReadSpy`
lists the operations of a step that would make ``torch.cuda.graph`` fail (so that
:class:`soundedit.steps.StepGraph` falls back to eager steps): reads of a value back to the host
(``.item()``, ``bool(t)``, ``float(t)``), results whose size depends on the data (boolean-mask
indexing, ``nonzero``, ``unique``: the size is read back first) and tensors made from Python data
(on a GPU, copies from pageable host memory). The optimiser's step is left out when
:meth:`ignore_optimizer_steps` is used: Adam with ``capturable=True`` is PyTorch's to keep
capturable.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["HostReadSpy"]

aten = torch.ops.aten


class HostReadSpy(TorchDispatchMode):
    """A dispatch mode that records (by name, in ``found``) the uncapturable operations run inside it."""

    UNCAPTURABLE = {aten._local_scalar_dense, aten.nonzero, aten.masked_select, aten._unique2, aten.unique_dim,
                    aten.unique_consecutive, aten.equal, aten.is_nonzero, aten.lift_fresh, aten.repeat_interleave}
    MASK_INDEXING = {aten.index, aten.index_put, aten.index_put_}

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._paused = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not self._paused and (func.overloadpacket in self.UNCAPTURABLE or _mask_indexing(func, args)):
            self.found.append(str(func))
        return func(*args, **(kwargs or {}))

    @contextmanager
    def ignore_optimizer_steps(self) -> Iterator[HostReadSpy]:
        """Within this context, operations inside any ``optimizer.step()`` are not recorded."""
        pre = register_optimizer_step_pre_hook(lambda *a: setattr(self, "_paused", True))
        post = register_optimizer_step_post_hook(lambda *a: setattr(self, "_paused", False))
        try:
            yield self
        finally:
            pre.remove()
            post.remove()


def _mask_indexing(func, args) -> bool:
    """Indexing with a boolean mask: the result's size is the mask's count, read back to the host."""
    return func.overloadpacket in HostReadSpy.MASK_INDEXING and any(
        i is not None and i.dtype == torch.bool for i in args[1])
