"""StyleGAN2's hot operations with automatic choice of implementation.

``upfirdn2d``, ``fused_leaky_relu`` and ``modulated_weight`` (same signatures as :mod:`.reference`)
run the compiled CUDA kernels (:mod:`.kernels`, sources in ``csrc/``, built with ninja on first use
by :mod:`.build`) for CUDA tensors, and the pure-PyTorch reference (:mod:`.reference`) everywhere else.

``SOUNDEDIT_CUDA_OPS`` (read at each call) chooses:

* ``auto`` (default): kernels for CUDA tensors when the extension builds; if it cannot (no nvcc,
  wrong toolkit, compile error) one warning is logged and the reference is used from then on.
  CPU/MPS tensors always use the reference.
* ``on``: kernels or an error: a failed build, or an input that is not a CUDA tensor, raises
  :class:`CudaOpsUnavailableError`.
* ``off``: always the reference (also the route to second-order gradients, which the kernels do
  not provide; latent optimisation does not need them).

Some argument combinations always take the reference, whatever the mode: an FIR kernel or a
modulated convolution's weight that requires grad (the compiled ops give no gradient for them),
``negative_slope < 0`` or ``scale <= 0`` (the backward reads the sign of the output), and half-
precision convolution weights. :func:`status` reports the state without building anything unless
asked.

Under ``torch.compile`` the kernels enter the graph as ``torch.library`` custom operators
(:mod:`.kernels`), so a compiled generator keeps them and the compiler fuses the rest around them.
The choice between kernels and reference is then made once, when the function is compiled
(``SOUNDEDIT_CUDA_OPS`` changed afterwards does not recompile it: ``torch._dynamo.reset()`` does).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
from types import ModuleType
from typing import Any

import torch

from soundedit.errors import InputError, SoundeditError
from soundedit.models.stylegan2.ops import build as _build
from soundedit.models.stylegan2.ops import kernels as _kernels
from soundedit.models.stylegan2.ops import reference
from soundedit.models.stylegan2.ops.kernels import SecondOrderGradientError
from soundedit.runtime import switch_setting

__all__ = ["upfirdn2d", "fused_leaky_relu", "modulated_weight", "scales_input", "status", "mode", "load_extension",
           "CudaOpsUnavailableError", "SecondOrderGradientError", "ENV_VAR"]

logger = logging.getLogger("soundedit")

ENV_VAR = "SOUNDEDIT_CUDA_OPS"
_KERNEL_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
#: float widths for modulated_weight: weights in float32/float64, styles no wider than the weight
#: (a plain dict lookup: torch.promote_types is a dispatched call, and this runs 26 times a step)
_WIDTH = {torch.float16: 0, torch.bfloat16: 0, torch.float32: 1, torch.float64: 2}


class CudaOpsUnavailableError(SoundeditError):
    """``SOUNDEDIT_CUDA_OPS=on`` but the compiled kernels cannot be used."""

    exit_code = 1


@dataclasses.dataclass
class _State:
    """What this process knows about the extension (one build attempt per process)."""

    attempted: bool = False
    module: ModuleType | None = None
    plan: _build.BuildPlan | None = None
    seconds: float | None = None
    error: _build.CudaOpsBuildError | None = None


_state = _State()
_state_lock = threading.Lock()


def mode() -> str:
    """The current ``SOUNDEDIT_CUDA_OPS`` setting: ``"auto"`` (default), ``"on"`` or ``"off"``.

    Raises:
        InputError: any other value.
    """
    return switch_setting(ENV_VAR)


def load_extension(*, required: bool = False) -> ModuleType | None:
    """Build (first call in a process, cached on disk across processes) and return the extension.

    Args:
        required: raise instead of returning ``None`` when it cannot be built.

    Returns:
        The extension module, or ``None`` (after one logged warning) when it cannot be built.

    Raises:
        CudaOpsUnavailableError: ``required`` and the build failed.
    """
    with _state_lock:
        if not _state.attempted:
            _state.attempted = True
            try:
                _state.module, _state.plan, _state.seconds = _build.build()
                _kernels.bind(_state.module)
            except _build.CudaOpsBuildError as exc:
                _state.error = exc
                if not required:
                    logger.warning("CUDA StyleGAN2 ops unavailable (%s); using the PyTorch reference path "
                                   "(set %s=off to skip the build)", exc, ENV_VAR)
    if _state.module is None and required:
        raise CudaOpsUnavailableError(f"{ENV_VAR}=on but the CUDA StyleGAN2 ops cannot be built: {_state.error}") \
            from _state.error
    return _state.module


def _extension_for(x: torch.Tensor) -> ModuleType | None:
    """The extension if ``x`` should go through the kernels, else ``None`` (reference)."""
    setting = mode()
    if setting == "off":
        return None
    if x.device.type != "cuda":
        if setting == "on":
            raise CudaOpsUnavailableError(f"{ENV_VAR}=on but the input tensor is on {x.device}: the compiled "
                                          f"StyleGAN2 ops run on CUDA tensors only (use {ENV_VAR}=auto)")
        return None
    if x.dtype not in _KERNEL_DTYPES:
        return None
    return load_extension(required=setting == "on")


@torch.compiler.assume_constant_result
def _kernels_for_compile() -> bool:
    """Whether a function being compiled should use the kernels for CUDA tensors (evaluated once, at
    compile time: the lock and the environment read of the eager dispatch cannot be traced)."""
    setting = mode()
    return setting != "off" and load_extension(required=setting == "on") is not None


def _compiling_with_kernels(x: torch.Tensor) -> bool:
    return x.device.type == "cuda" and x.dtype in _KERNEL_DTYPES and _kernels_for_compile()


def _dispatch(x: torch.Tensor, kernels_eager, kernels_compiled, reference_fn):
    """The one choice all ops make: under ``torch.compile`` the custom operator or the reference
    (decided at compile time); eagerly the extension's autograd path for CUDA tensors when it is
    available (``SOUNDEDIT_CUDA_OPS``), the reference otherwise. The three are zero-argument closures
    (``kernels_eager`` takes the extension)."""
    if torch.compiler.is_compiling():
        return kernels_compiled() if _compiling_with_kernels(x) else reference_fn()
    ext = _extension_for(x)
    return reference_fn() if ext is None else kernels_eager(ext)


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, ...] | int = (0, 0)) -> torch.Tensor:
    """Upsample (zero insertion), pad, FIR-filter, downsample — per channel.

    Args:
        x: (N, C, H, W).
        kernel: (kh, kw) FIR filter, applied as a true convolution (flipped).
        up, down: integer factors, same on both axes.
        pad: (p0, p1) for both axes or (x0, x1, y0, y1); negative values crop.

    Returns:
        (N, C, (H*up + y0 + y1 - kh) // down + 1, (W*up + x0 + x1 - kw) // down + 1).
    """
    if kernel.requires_grad or x.ndim != 4 or kernel.ndim != 2:
        return reference.upfirdn2d(x, kernel, up, down, pad)
    return _dispatch(x, lambda ext: _kernels.upfirdn2d(ext, x, kernel, up, down, pad),
                     lambda: _kernels.upfirdn2d_for_compile(x, kernel, up, down, pad),
                     lambda: reference.upfirdn2d(x, kernel, up, down, pad))


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor | None, negative_slope: float = 0.2,
                     scale: float = math.sqrt(2), *, noise: torch.Tensor | None = None,
                     noise_strength: torch.Tensor | None = None) -> torch.Tensor:
    """``leaky_relu(x + noise_strength * noise + bias) * scale`` with ``bias`` (C,) broadcast along dim 1
    of x (N, C, ...).

    ``negative_slope=1, scale=1`` is the linear activation (bias add only). ``noise`` (N or 1, 1, H, W)
    and the one-element ``noise_strength`` are StyleGAN2's noise injection, added inside the kernel
    when they have x's dtype and the strength needs no gradient, else added first.
    """
    if noise is not None and not _kernels.fusable_noise(x, noise, noise_strength):
        x, noise, noise_strength = x + noise_strength * noise, None, None
    if (x.ndim < 2 or not (scale > 0 and negative_slope >= 0)
            or (bias is not None and tuple(bias.shape) != (x.shape[1],))):
        return reference.fused_leaky_relu(x, bias, negative_slope, scale, noise=noise, noise_strength=noise_strength)
    kw = dict(noise=noise, noise_strength=noise_strength)
    return _dispatch(x, lambda ext: _kernels.fused_leaky_relu(ext, x, bias, negative_slope, scale, **kw),
                     lambda: _kernels.fused_leaky_relu_for_compile(x, bias, negative_slope, scale, **kw),
                     lambda: reference.fused_leaky_relu(x, bias, negative_slope, scale, **kw))


def modulated_weight(weight: torch.Tensor, styles: torch.Tensor, scale: float, demodulate: bool = True) -> torch.Tensor:
    """Per-sample modulated convolution weights: ``scale * weight * styles``, demodulated per filter.

    Args:
        weight: (1, O, I, k, k) stored weight.
        styles: (N, I).
        scale: the equalised-learning-rate factor ``1 / sqrt(I * k * k)``.
        demodulate: divide each (n, o) filter by its L2 norm.

    Returns:
        (N, O, I, k, k). The kernels give no gradient for ``weight``: a weight that requires grad
        (training) takes the reference, as do float16/bfloat16 weights.
    """
    if (weight.requires_grad or weight.ndim != 5 or weight.shape[0] != 1 or styles.ndim != 2
            or styles.shape[1] != weight.shape[2] or weight.dtype not in (torch.float32, torch.float64)
            or _WIDTH.get(styles.dtype, 3) > _WIDTH[weight.dtype]):  # styles wider than the weight: promotion
        return reference.modulated_weight(weight, styles, scale, demodulate)
    return _dispatch(weight, lambda ext: _kernels.modulated_weight(ext, weight, styles, scale, demodulate),
                     lambda: _kernels.modulated_weight_for_compile(weight, styles, scale, demodulate),
                     lambda: reference.modulated_weight(weight, styles, scale, demodulate))


def scales_input(x: torch.Tensor) -> bool:
    """Whether a modulated convolution of ``x`` should scale its input by the styles (channels-last)
    instead of building per-sample weights (:func:`modulated_weight`).

    Yes on CPU, where it is faster both ways (2 cores, config-f, batch 1): backward skips the
    per-sample weights' gradient, which costs oneDNN as much as the rest of a convolution's backward
    (forward + backward 256 px 1.23 -> 0.82 s, 1024 px 4.1 -> 3.15 s), and forward-only gains on
    channels-last maps (256 px 0.45 -> 0.40 s, batch 4 2.7 -> 2.0 s). No on CUDA: on an H100 the
    scaled form made a graphed 1024-px step slower, with the kernels 10.2 -> 12.9 ms (fp32, batch 1),
    10.0 -> 14.3 ms (bf16) and 37.1 -> 46.7 ms (bf16, batch 4) (``benchmarks/cuda_ops.py --paths
    kernels+graph kernels+scaled+graph``): there the kernels build the per-sample weights cheaply
    and cuDNN's grouped convolutions beat the extra element-wise passes.
    """
    if x.device.type != "cpu":
        return False
    if torch.compiler.is_compiling():
        return not _compiling_with_kernels(x)
    return _extension_for(x) is None  # None unless a test routes CPU tensors through the kernels' CPU loop


def status(*, build: bool = False) -> dict[str, Any]:
    """Which path the ops take here, and why; cheap unless ``build`` (runs ``nvcc --version``, no compile).

    Args:
        build: also attempt the build (compiles on first use; loads the cached build otherwise).

    Returns:
        A JSON-able dict: ``mode``, ``cuda_available``, ``device``, ``torch``, ``torch_cuda``,
        ``nvcc`` (path or None), ``nvcc_version``, ``cuda_home``, ``arch_list``, ``build_dir``,
        ``built`` (a build exists on disk), ``loaded`` (imported in this process), ``build_seconds``,
        ``error`` (one-line summary or None), ``error_log``, and ``ops``: for ``upfirdn2d``,
        ``fused_leaky_relu`` and ``modulated_weight``, ``{"path": "cuda" | "reference" | "error", "why": str}`` for CUDA
        tensors (CPU/MPS tensors always take the reference).
    """
    cuda = torch.cuda.is_available()
    info: dict[str, Any] = {
        "mode": None, "cuda_available": cuda,
        "device": torch.cuda.get_device_name() if cuda else None,
        "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "nvcc": None, "nvcc_version": None, "cuda_home": None, "arch_list": None, "build_dir": None,
        "built": False, "loaded": _state.module is not None, "build_seconds": _state.seconds,
        "error": None, "error_log": None,
    }
    try:
        setting = mode()
    except InputError as exc:
        setting = None
        info["error"] = str(exc)
    info["mode"] = setting
    plan_error = None
    try:
        p = _state.plan or _build.plan()
    except _build.CudaOpsBuildError as exc:
        plan_error = exc.summary
    else:
        info.update(nvcc=str(p.toolkit.nvcc), nvcc_version=p.toolkit.version, cuda_home=str(p.toolkit.home),
                    arch_list=list(p.archs), build_dir=str(p.build_dir), built=_build.library_path(p).exists())
    if build and setting != "off" and plan_error is None:
        load_extension(required=False)
        info.update(loaded=_state.module is not None, build_seconds=_state.seconds,
                    built=_state.module is not None or info["built"])
    if _state.error is not None:
        info.update(error=_state.error.summary, error_log=str(_state.error.log) if _state.error.log else None)
    elif plan_error is not None and info["error"] is None:
        info["error"] = plan_error

    path, why = _active_path(setting, cuda, plan_error, info["built"])
    info["ops"] = {op: {"path": path, "why": why} for op in ("upfirdn2d", "fused_leaky_relu", "modulated_weight")}
    return info


def _active_path(setting: str | None, cuda: bool, plan_error: str | None, built: bool) -> tuple[str, str]:
    """(path, reason) for CUDA tensors, given the mode and what is known about the build."""
    if setting is None:
        return "error", f"{ENV_VAR} has an invalid value; ops raise InputError"
    if setting == "off":
        return "reference", f"{ENV_VAR}=off"
    failure = (_state.error.summary if _state.error is not None else None) or plan_error
    if _state.module is not None:
        where = _state.plan.build_dir if _state.plan else "?"
        return "cuda", f"compiled kernels loaded from {where}"
    if failure is not None:
        if setting == "on":
            return "error", f"{ENV_VAR}=on but the extension cannot be built ({failure}); ops raise"
        return "reference", f"the extension cannot be built: {failure}"
    if not cuda:
        if setting == "on":
            return "error", f"{ENV_VAR}=on but no CUDA GPU is visible; ops raise for non-CUDA tensors"
        return "reference", "no CUDA GPU visible (torch.cuda.is_available() is False)"
    if built:
        return "cuda", "built; loads on the first CUDA call"
    return "cuda", "builds on the first CUDA call (about a minute, cached on disk)"


def _reset_for_tests() -> None:
    """Forget this process's build attempt (tests only)."""
    global _state
    with _state_lock:
        _state = _State()
    _kernels.bind(None)

