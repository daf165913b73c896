"""The cases and tolerances every implementation of the StyleGAN2 ops is checked with
(reference, compiled on the CPU, GPU), and the counters that show which path ran and how many
kernels a step launches.

Each case is ``(up, down, pad, kernel shape)``: StyleGAN2's blur / upsampling /
downsampling, then odd and non-square kernels, negative (cropping) pads and factors
above 2.
"""

from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

UPFIRDN2D_CASES = [
    (1, 1, (1, 1), (4, 4)),  # StyleGAN2 blur after the transposed conv
    (2, 1, (2, 1), (4, 4)),  # ToRGB skip upsampling
    (1, 2, (1, 1), (4, 4)),  # downsampling (discriminator, encoders)
    (2, 2, (0, 0, 1, 2), (3, 3)),
    (3, 2, (-1, 2, 3, -2), (5, 2)),
    (1, 1, (0, 0), (1, 1)),
    (2, 3, (4, 0, 0, 4), (2, 5)),
]

# Low-precision inputs are rounded first; the expectation is the float32 reference on those same
# values, rounded to the dtype: the kernels accumulate in float32 and round once, so they differ
# from it by at most ~1 unit in the last place.
KERNEL_TOLERANCE = {
    torch.float64: dict(rtol=1e-12, atol=1e-12),
    torch.float32: dict(rtol=1e-5, atol=1e-5),
    torch.float16: dict(rtol=2e-3, atol=1e-3),
    torch.bfloat16: dict(rtol=1.6e-2, atol=1e-2),
}


def assert_generator_matches_golden(img: torch.Tensor, grad: torch.Tensor, expected: dict) -> None:
    """The ``stylegan2_64`` golden fixture in float32: image at 1e-4, d/dW+ within 1e-3 of its largest entry.

    The float32 gradient of that 10-layer, 512-channel generator amplifies rounding: multiplying the
    reference path's blur or activation outputs by (1 + 1e-7 * noise) moves d/dW+ by up to 1.8e-3
    and 3.3e-3 (largest entry 18.6; measured on the CPU), so any other summation order (cuDNN, the
    kernels) misses an absolute 1e-4 on small entries, while a wrong gradient is off by O(1).
    Exactness is checked in float64, where kernels and reference agree to 4e-14.

    Args:
        img: (N, 3, 64, 64) rendered from ``expected["w_plus"]``.
        grad: d(sum(img * expected["probe"]))/dW+, (N, n_latent, 512).
        expected: the fixture's ``stylegan2_64.expected.pt``.
    """
    torch.testing.assert_close(img.detach().cpu(), expected["image_from_w_plus"], rtol=1e-4, atol=1e-4)
    want = expected["grad_w_plus"]
    torch.testing.assert_close(grad.detach().cpu(), want, rtol=1e-3, atol=1e-3 * want.abs().max().item())


class CountingExtension:
    """Stands in for the compiled extension and counts calls by function name (``calls``), to show
    which ops really went through the kernels (e.g. inside a ``torch.compile`` graph)."""

    def __init__(self, ext) -> None:
        self._ext = ext
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str):
        self.calls[name] = self.calls.get(name, 0) + 1
        return getattr(self._ext, name)


class LaunchCounter(TorchDispatchMode):
    """Counts the ATen operations dispatched while active that run a kernel (not views, not bare
    allocations), by name in ``ops``: a stand-in for a step's kernel launches, hence its host overhead,
    that can be counted on any machine. Calls into the compiled extension bypass the dispatcher:
    count those with :class:`CountingExtension` and add them."""

    NO_KERNEL = frozenset({
        "view", "reshape", "_reshape_alias", "_unsafe_view", "expand", "select", "slice", "transpose", "t",
        "unsqueeze", "squeeze", "as_strided", "alias", "detach", "permute", "split", "unbind",
        "empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided"})

    def __init__(self) -> None:
        super().__init__()
        self.ops: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        if name not in self.NO_KERNEL:
            self.ops[name] = self.ops.get(name, 0) + 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.ops.values())


def count_step_launches(step: Callable[[], object], ext) -> dict[str, dict[str, int]]:
    """The kernels one ``step()`` launches on each path, by name: ``{"reference": {...}, "kernels": {...}}``
    (ATen ops from :class:`LaunchCounter`, extension calls from :class:`CountingExtension`). Each path
    is counted on its second call, so one-time work of a first call is left out.

    Args:
        step: e.g. a generator forward + backward on tensors the ops accept.
        ext: the compiled extension (its CPU test loop on a machine without a GPU).
    """
    from soundedit.models.stylegan2 import ops

    saved = ops._extension_for, ops.scales_input
    counts = {}
    try:
        ops.scales_input = lambda x: False  # the GPU's reference path: modulated weights
        for path in ("reference", "kernels"):
            counting = CountingExtension(ext)
            ops._extension_for = (lambda x: counting) if path == "kernels" else (lambda x: None)
            step()
            counting.calls.clear()
            with LaunchCounter() as launches:
                step()
            counts[path] = {**launches.ops, **counting.calls}
    finally:
        ops._extension_for, ops.scales_input = saved
    return counts
