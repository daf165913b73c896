"""Autograd wrappers around the compiled ops (``csrc/``); the extension module is passed in explicitly.

First-order gradients only. Latent optimisation back-propagates once per step (image -> W+), so
second-order gradients are not needed; asking for them (``create_graph=True`` followed by a second
backward, as R1 or path-length regularisers do) raises :class:`SecondOrderGradientError`. Use
``SOUNDEDIT_CUDA_OPS=off`` (the PyTorch reference) for that.

upfirdn2d backward, derived (per axis; the same holds for x with kw, px0, px1). The forward is
``y[o] = sum_i x[i] * k[kh - 1 + o*down - py0 - i*up]`` (see ``csrc/ops.cu``), so
``dL/dx[i] = sum_o g[o] * k[kh - 1 + o*down - py0 - i*up]``. An upfirdn2d of ``g`` with factors
swapped (up' = down, down' = up), the flipped kernel ``k'[j] = k[kh - 1 - j]`` (the extension reads k
flipped, ``flip_kernel=True``: no flipped copy is made) and pads ``(q0, q1)``
computes ``sum_o g[o] * k'[kh - 1 + i*up - q0 - o*down] = sum_o g[o] * k[q0 + o*down - i*up]``,
which is the gradient when ``q0 = kh - 1 - py0``. ``q1`` is chosen so that its output has exactly H
rows: ``(OH*down + q0 + q1 - kh) // up + 1 = H`` gives ``q1 = H*up - OH*down + py0 - up + 1``
(with OH the forward's output height). Negative ``q1`` only crops zero-stuffed samples beyond the
last window, so nothing that contributes is lost. Gradients for the FIR kernel itself are not
computed (it is a fixed buffer in StyleGAN2); the dispatcher uses the reference when it requires grad.

Layouts: upfirdn2d reads any strides and writes channels-last for channels-last input (NCHW
otherwise); bias + activation keeps the layout of NCHW-contiguous and channels-last-dense
tensors and makes anything else contiguous first (one copy).

Two entry points per op, one arithmetic. Eager code calls :func:`upfirdn2d` / :func:`fused_leaky_relu`
(``torch.autograd.Function`` around the extension; the module is passed in). ``torch.compile``
cannot trace into an extension call, so :func:`upfirdn2d_for_compile`,
:func:`fused_leaky_relu_for_compile` and :func:`modulated_weight_for_compile` reach the same
functions through ``torch.library`` custom
operators (``soundedit::upfirdn2d`` ...) whose "fake" implementations give the output's shape and
layout: they enter the compiled graph as opaque nodes and the compiler fuses what lies around them.
Eager code does not use them because a custom operator costs about 7 µs more per call on the host
(12.4 vs 5.5 µs measured on this project's CPU machine), which adds up over the ~120 op calls of a
generator step at batch 1. The custom operators find the extension bound with :func:`bind`.

Modulated weights: the forward ``w = (scale * W) * s``, ``out = w * d`` with
``d = rsqrt(sum w^2 + eps)`` per (n, o) filter has, w.r.t. the styles,
``dL/ds[n, i] = sum_o (d * B[n, o, i] - d^3 * A[n, o] * s[n, i] * Q[o, i])`` where
``B = sum_t g * scale * W``, ``A = sum_i s * B`` and ``Q = sum_t (scale * W)^2`` (t runs over the
k x k taps): one kernel computes B, d^3 * A and Q row by row, a second sums over o. No
gradient for W itself (a frozen generator's weight; the dispatcher sends training to the reference).
"""

from __future__ import annotations

import math
from types import ModuleType

import torch

from soundedit.errors import SoundeditError
from soundedit.models.stylegan2.ops.reference import _pad4, _upfirdn2d_size

_SECOND_ORDER = ("second-order gradients of the CUDA {op} are not implemented: latent optimisation needs "
                 "only first-order gradients. For higher-order gradients (e.g. R1 or path-length "
                 "regularisation) set SOUNDEDIT_CUDA_OPS=off to use the PyTorch reference path.")


class SecondOrderGradientError(SoundeditError, RuntimeError):
    """Raised when a second derivative of a compiled op is requested."""

    exit_code = 1


def grad_pad(in_hw: tuple[int, int], out_hw: tuple[int, int], kernel_hw: tuple[int, int], up: int, down: int,
             pad: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """Pads (x0, x1, y0, y1) of the upfirdn2d that computes upfirdn2d's input gradient (module docstring).

    The gradient of ``upfirdn2d(x, k, up, down, pad)`` w.r.t. x (H, W) is
    ``upfirdn2d(grad_y, flip(k), up=down, down=up, pad=grad_pad(...))`` for grad_y (OH, OW).
    """
    (h, w), (oh, ow), (kh, kw) = in_hw, out_hw, kernel_hw
    px0, _, py0, _ = pad
    return (kw - 1 - px0, w * up - ow * down + px0 - up + 1,
            kh - 1 - py0, h * up - oh * down + py0 - up + 1)


def _kernel_for(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """The FIR kernel in the accumulate type the extension expects (float64 for float64 x, else float32)."""
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    return kernel.detach().to(device=x.device, dtype=dtype).contiguous()


class _UpFirDn2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ext: ModuleType, x: torch.Tensor, kernel: torch.Tensor, up: int, down: int,
                pad: tuple[int, int, int, int]) -> torch.Tensor:
        px0, px1, py0, py1 = pad
        y = ext.upfirdn2d(x, kernel, up, down, px0, px1, py0, py1, False)
        ctx.grad_pad = grad_pad(tuple(x.shape[2:]), tuple(y.shape[2:]), tuple(kernel.shape), up, down, pad)
        ctx.ext, ctx.up, ctx.down = ext, up, down
        ctx.save_for_backward(kernel)  # read flipped by the backward's kernel (flip_kernel): no flipped copy
        return y

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):
        (kernel,) = ctx.saved_tensors
        grad_x = None
        if ctx.needs_input_grad[1]:
            grad_x = _UpFirDn2dGrad.apply(ctx.ext, grad_y, kernel, ctx.down, ctx.up, ctx.grad_pad)
        return None, grad_x, None, None, None, None


class _UpFirDn2dGrad(torch.autograd.Function):
    """The gradient of :class:`_UpFirDn2d`, itself an upfirdn2d; differentiating it again raises."""

    @staticmethod
    def forward(ctx, ext: ModuleType, grad_y: torch.Tensor, kernel: torch.Tensor, up: int, down: int,
                pad: tuple[int, int, int, int]) -> torch.Tensor:
        px0, px1, py0, py1 = pad
        return ext.upfirdn2d(grad_y, kernel, up, down, px0, px1, py0, py1, True)

    @staticmethod
    def backward(ctx, *grads):
        raise SecondOrderGradientError(_SECOND_ORDER.format(op="upfirdn2d"))


class _BiasAct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ext: ModuleType, x: torch.Tensor, bias: torch.Tensor | None, noise: torch.Tensor | None,
                strength: torch.Tensor | None, pos_gain: float, neg_gain: float) -> torch.Tensor:
        b = None if bias is None else bias.detach().to(x.dtype).contiguous()
        y = ext.bias_act(x, b, noise, strength, pos_gain, neg_gain)
        # y > 0 exactly where x + b > 0 (pos_gain > 0, neg_gain >= 0: checked by the caller), so the
        # output, which the next layer keeps anyway, is all the backward needs.
        ctx.save_for_backward(y, strength)
        ctx.ext, ctx.gains = ext, (pos_gain, neg_gain)
        ctx.bias_dtype = None if bias is None else bias.dtype
        ctx.noise_batch = None if noise is None else noise.shape[0]
        return y

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):
        y, strength = ctx.saved_tensors
        need_x, need_b, need_noise = ctx.needs_input_grad[1:4]
        if not (need_x or need_b or need_noise):
            return None, None, None, None, None, None, None
        grad_xb = _BiasActGrad.apply(ctx.ext, grad_y, y, *ctx.gains)
        grad_b = _bias_grad(grad_xb, ctx.bias_dtype) if need_b else None
        grad_noise = _noise_grad(grad_xb, strength, ctx.noise_batch) if need_noise else None
        return None, grad_xb if need_x else None, grad_b, grad_noise, None, None, None


class _BiasActGrad(torch.autograd.Function):
    """The gradient of :class:`_BiasAct`; differentiating it again raises."""

    @staticmethod
    def forward(ctx, ext: ModuleType, grad_y: torch.Tensor, y: torch.Tensor, pos_gain: float,
                neg_gain: float) -> torch.Tensor:
        return ext.bias_act_grad(grad_y, y, pos_gain, neg_gain)

    @staticmethod
    def backward(ctx, *grads):
        raise SecondOrderGradientError(_SECOND_ORDER.format(op="fused_leaky_relu"))


class _ModulatedWeight(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ext: ModuleType, weight: torch.Tensor, styles: torch.Tensor, scale: float, demodulate: bool,
                eps: float) -> torch.Tensor:
        out, d = ext.modulated_weight(weight, styles, scale, demodulate, eps)
        ctx.save_for_backward(weight, styles, d)
        ctx.ext, ctx.scale, ctx.demodulate = ext, scale, demodulate
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        weight, styles, d = ctx.saved_tensors
        grad_styles = None
        if ctx.needs_input_grad[2]:
            grad_styles = _ModulatedWeightGrad.apply(ctx.ext, grad, weight, styles, d, ctx.scale, ctx.demodulate)
        return None, None, grad_styles, None, None, None


class _ModulatedWeightGrad(torch.autograd.Function):
    """The gradient of :class:`_ModulatedWeight` w.r.t. the styles; differentiating it again raises."""

    @staticmethod
    def forward(ctx, ext: ModuleType, grad: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, d: torch.Tensor,
                scale: float, demodulate: bool) -> torch.Tensor:
        return ext.modulated_weight_grad(grad, weight, styles, d, scale, demodulate)  # grad read with its strides

    @staticmethod
    def backward(ctx, *grads):
        raise SecondOrderGradientError(_SECOND_ORDER.format(op="modulated_weight"))


def _modulation_args(weight: torch.Tensor, styles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
    """(weight as (O, I, k*k), styles contiguous in the weight's dtype, the output shape (N, O, I, k, k))."""
    if weight.ndim != 5 or weight.shape[0] != 1 or styles.ndim != 2 or styles.shape[1] != weight.shape[2]:
        raise ValueError(f"modulated_weight: expected weight (1, O, I, k, k) and styles (N, I), got "
                         f"{tuple(weight.shape)} and {tuple(styles.shape)}")
    _, o, i, kh, kw = weight.shape
    return (weight.detach().reshape(o, i, kh * kw).contiguous(), styles.to(weight.dtype).contiguous(),
            (styles.shape[0], o, i, kh, kw))


def modulated_weight(ext: ModuleType, weight: torch.Tensor, styles: torch.Tensor, scale: float,
                     demodulate: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """The compiled :func:`reference.modulated_weight` (no gradient for ``weight``, which the caller checks).

    Args:
        ext: the loaded extension.
        weight: (1, O, I, k, k) float32/float64.
        styles: (N, I); cast to the weight's dtype (the gradient flows back through the cast).
        scale, demodulate, eps: as in the reference.

    Returns:
        (N, O, I, k, k) in the weight's dtype.
    """
    w3, s, shape = _modulation_args(weight, styles)
    return _ModulatedWeight.apply(ext, w3, s, float(scale), bool(demodulate), float(eps)).view(shape)


def _check_upfirdn2d_args(x: torch.Tensor, kernel: torch.Tensor) -> None:
    if kernel.ndim != 2:
        raise ValueError(f"upfirdn2d: kernel must be 2-D (kh, kw), got shape {tuple(kernel.shape)}")
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d: x must be (N, C, H, W), got shape {tuple(x.shape)}")


def _check_bias_act_args(x: torch.Tensor, bias: torch.Tensor | None, negative_slope: float, scale: float,
                         noise: torch.Tensor | None = None, noise_strength: torch.Tensor | None = None) -> None:
    if x.ndim < 2:
        raise ValueError(f"fused_leaky_relu: x must be (N, C, ...), got shape {tuple(x.shape)}")
    if not (scale > 0 and negative_slope >= 0):
        raise ValueError(f"fused_leaky_relu: the compiled op needs scale > 0 and negative_slope >= 0, "
                         f"got scale={scale}, negative_slope={negative_slope}")
    if bias is not None and tuple(bias.shape) != (x.shape[1],):
        raise ValueError(f"fused_leaky_relu: bias must have shape ({x.shape[1]},), got {tuple(bias.shape)}")
    if (noise is None) != (noise_strength is None):
        raise ValueError("fused_leaky_relu: noise and noise_strength go together")
    if noise is not None and not fusable_noise(x, noise, noise_strength):
        raise ValueError(f"fused_leaky_relu: the compiled op takes noise (1 or N, 1, H, W) of x's dtype and a "
                         f"one-element strength without gradient, got noise {tuple(noise.shape)} {noise.dtype} "
                         f"for x {tuple(x.shape)} {x.dtype}")


def fusable_noise(x: torch.Tensor, noise: torch.Tensor, strength: torch.Tensor) -> bool:
    """Whether the compiled op can add ``strength * noise`` itself (else the caller adds it first)."""
    return (x.ndim == 4 and noise.ndim == 4 and noise.shape[1] == 1 and noise.shape[0] in (1, x.shape[0])
            and noise.shape[2:] == x.shape[2:] and noise.dtype == x.dtype == strength.dtype
            and strength.numel() == 1 and not strength.requires_grad)


def _noise_grad(grad_xb: torch.Tensor, strength: torch.Tensor, noise_batch: int) -> torch.Tensor:
    """d/d(noise) of ``x + strength * noise`` (noise (Nn, 1, H, W) broadcast over channels, and over the
    batch when Nn = 1): the gradient summed over those axes, times the strength."""
    grad = grad_xb.sum(dim=1, keepdim=True) * strength
    return grad.sum(dim=0, keepdim=True) if noise_batch == 1 and grad.shape[0] != 1 else grad


def _bias_grad(grad_xb: torch.Tensor, bias_dtype: torch.dtype) -> torch.Tensor:
    """d/d(bias): the gradient at x + b summed over every axis but the channel one (in float32, or
    float64 for float64 gradients: a float32 sum would cost float64 users their precision)."""
    dims = [0] + list(range(2, grad_xb.ndim))
    acc = torch.float64 if grad_xb.dtype == torch.float64 else torch.float32
    return grad_xb.sum(dim=dims, dtype=acc).to(bias_dtype)


def upfirdn2d(ext: ModuleType, x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, ...] | int = (0, 0)) -> torch.Tensor:
    """The compiled upfirdn2d; same arguments and result as :func:`reference.upfirdn2d`.

    Args:
        ext: the loaded extension (:func:`soundedit.models.stylegan2.ops.build.build`).
        x: (N, C, H, W) CUDA tensor (CPU tensors run a slow test loop), float16/bfloat16/float32/float64.
        kernel: (kh, kw) FIR filter (no gradient is computed for it).
        up, down: integer factors >= 1, same on both axes.
        pad: (p0, p1) for both axes or (x0, x1, y0, y1); negative values crop.

    Returns:
        (N, C, (H*up + y0 + y1 - kh) // down + 1, (W*up + x0 + x1 - kw) // down + 1), x's dtype.
    """
    _check_upfirdn2d_args(x, kernel)
    return _UpFirDn2d.apply(ext, x, _kernel_for(x, kernel), int(up), int(down), _pad4(pad))


def fused_leaky_relu(ext: ModuleType, x: torch.Tensor, bias: torch.Tensor | None, negative_slope: float = 0.2,
                     scale: float = math.sqrt(2), *, noise: torch.Tensor | None = None,
                     noise_strength: torch.Tensor | None = None) -> torch.Tensor:
    """The compiled ``leaky_relu(x + noise_strength * noise + bias, negative_slope) * scale``; same as
    :func:`reference.fused_leaky_relu`.

    ``negative_slope=1, scale=1`` is the linear activation (bias add only).

    Args:
        ext: the loaded extension.
        x: (N, C, ...) tensor.
        bias: (C,) or None.
        negative_slope: must be >= 0; scale: must be > 0 (so the output's sign gives the gradient).
        noise, noise_strength: StyleGAN2's noise injection, or None: noise (1 or N, 1, H, W) and a
            one-element strength that needs no gradient, both of x's dtype (:func:`fusable_noise`);
            the noise may require grad (projection fits the noise maps).

    Returns:
        Tensor of x's shape and dtype (channels-last input gives channels-last output).
    """
    _check_bias_act_args(x, bias, negative_slope, scale, noise, noise_strength)
    return _BiasAct.apply(ext, x, bias, _contiguous(noise), _detached(noise_strength), float(scale),
                          float(negative_slope * scale))


def _contiguous(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.contiguous()


def _detached(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach()


# ---------------------------------------------------------------------------------------------
# The same ops as torch.library custom operators, for torch.compile (see the module docstring).

_bound: ModuleType | None = None


def bind(ext: ModuleType | None) -> None:
    """Make ``ext`` the extension the custom operators call (``load_extension`` does this)."""
    global _bound
    _bound = ext


def _ext() -> ModuleType:
    if _bound is None:
        raise RuntimeError("the compiled StyleGAN2 ops are not loaded: call "
                           "soundedit.models.stylegan2.ops.load_extension() first")
    return _bound


def _layout(x: torch.Tensor) -> torch.memory_format:
    """The memory format the extension writes for input ``x`` (``is_channels_last_dense`` in ops.cu)."""
    dense_cl = x.ndim == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
    return torch.channels_last if dense_cl else torch.contiguous_format


def _upfirdn2d_impl(x: torch.Tensor, kernel: torch.Tensor, up: int, down: int, px0: int, px1: int, py0: int,
                    py1: int) -> torch.Tensor:
    return _ext().upfirdn2d(x, kernel, up, down, px0, px1, py0, py1, False)


def _upfirdn2d_input_grad_impl(grad_y: torch.Tensor, kernel: torch.Tensor, up: int, down: int, px0: int, px1: int,
                               py0: int, py1: int) -> torch.Tensor:
    """The input gradient: an upfirdn2d with the forward's kernel read flipped (module docstring)."""
    return _ext().upfirdn2d(grad_y, kernel, up, down, px0, px1, py0, py1, True)


def _upfirdn2d_fake(x: torch.Tensor, kernel: torch.Tensor, up: int, down: int, px0: int, px1: int, py0: int,
                    py1: int) -> torch.Tensor:
    out_h, out_w = _upfirdn2d_size(x.shape[2], x.shape[3], kernel, up, down, px0, px1, py0, py1)
    return x.new_empty((x.shape[0], x.shape[1], out_h, out_w)).contiguous(memory_format=_layout(x))


_UPFIRDN2D_SCHEMA = dict(mutates_args=(), device_types=None)
_upfirdn2d_op = torch.library.custom_op("soundedit::upfirdn2d", _upfirdn2d_impl, **_UPFIRDN2D_SCHEMA)
_upfirdn2d_input_grad_op = torch.library.custom_op("soundedit::upfirdn2d_input_grad", _upfirdn2d_input_grad_impl,
                                                   **_UPFIRDN2D_SCHEMA)
_upfirdn2d_op.register_fake(_upfirdn2d_fake)
_upfirdn2d_input_grad_op.register_fake(_upfirdn2d_fake)


def _upfirdn2d_setup(ctx, inputs, output) -> None:
    x, kernel, up, down, *pad = inputs
    ctx.save_for_backward(kernel)
    ctx.up, ctx.down = up, down
    ctx.grad_pad = grad_pad(tuple(x.shape[2:]), tuple(output.shape[2:]), tuple(kernel.shape), up, down, tuple(pad))


def _upfirdn2d_backward(ctx, grad_y: torch.Tensor):
    (kernel,) = ctx.saved_tensors
    grad_x = _upfirdn2d_input_grad_op(grad_y, kernel, ctx.down, ctx.up, *ctx.grad_pad)
    return grad_x, None, None, None, None, None, None, None


def _upfirdn2d_second_order(ctx, grad):
    raise SecondOrderGradientError(_SECOND_ORDER.format(op="upfirdn2d"))


_upfirdn2d_op.register_autograd(_upfirdn2d_backward, setup_context=_upfirdn2d_setup)
_upfirdn2d_input_grad_op.register_autograd(_upfirdn2d_second_order, setup_context=lambda ctx, inputs, output: None)


@torch.library.custom_op("soundedit::bias_act", mutates_args=())
def _bias_act_op(x: torch.Tensor, bias: torch.Tensor | None, noise: torch.Tensor | None,
                 strength: torch.Tensor | None, pos_gain: float, neg_gain: float) -> torch.Tensor:
    b = None if bias is None else bias.to(x.dtype).contiguous()
    return _ext().bias_act(x, b, noise, strength, pos_gain, neg_gain)


@_bias_act_op.register_fake
def _bias_act_fake(x, bias, noise, strength, pos_gain, neg_gain):
    return torch.empty_like(x, memory_format=_layout(x))


@torch.library.custom_op("soundedit::bias_act_grad", mutates_args=())
def _bias_act_grad_op(grad_y: torch.Tensor, y: torch.Tensor, pos_gain: float, neg_gain: float) -> torch.Tensor:
    return _ext().bias_act_grad(grad_y, y, pos_gain, neg_gain)


@_bias_act_grad_op.register_fake
def _bias_act_grad_fake(grad_y, y, pos_gain, neg_gain):
    return torch.empty_like(y, memory_format=_layout(y))


def _bias_act_setup(ctx, inputs, output) -> None:
    _, bias, noise, strength, pos_gain, neg_gain = inputs
    ctx.save_for_backward(output, strength)  # the output's sign is the gradient's mask, as in _BiasAct
    ctx.gains = (pos_gain, neg_gain)
    ctx.bias_dtype = None if bias is None else bias.dtype
    ctx.noise_batch = None if noise is None else noise.shape[0]


def _bias_act_backward(ctx, grad_y: torch.Tensor):
    y, strength = ctx.saved_tensors
    grad_xb = _bias_act_grad_op(grad_y, y, *ctx.gains)
    grad_b = _bias_grad(grad_xb, ctx.bias_dtype) if ctx.needs_input_grad[1] else None
    grad_noise = _noise_grad(grad_xb, strength, ctx.noise_batch) if ctx.needs_input_grad[2] else None
    return grad_xb, grad_b, grad_noise, None, None, None


def _bias_act_second_order(ctx, grad):
    raise SecondOrderGradientError(_SECOND_ORDER.format(op="fused_leaky_relu"))


_bias_act_op.register_autograd(_bias_act_backward, setup_context=_bias_act_setup)
_bias_act_grad_op.register_autograd(_bias_act_second_order, setup_context=lambda ctx, inputs, output: None)


@torch.library.custom_op("soundedit::modulated_weight", mutates_args=())
def _modulated_weight_op(weight: torch.Tensor, styles: torch.Tensor, scale: float, demodulate: bool,
                         eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    out, d = _ext().modulated_weight(weight, styles, scale, demodulate, eps)  # a list from C++: the schema wants a tuple
    return out, d


@_modulated_weight_op.register_fake
def _modulated_weight_fake(weight, styles, scale, demodulate, eps):
    n, (o, i, kk) = styles.shape[0], weight.shape
    return weight.new_empty((n, o, i, kk)), weight.new_empty((n, o))


@torch.library.custom_op("soundedit::modulated_weight_grad", mutates_args=())
def _modulated_weight_grad_op(grad: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, d: torch.Tensor,
                              scale: float, demodulate: bool) -> torch.Tensor:
    return _ext().modulated_weight_grad(grad, weight, styles, d, scale, demodulate)


@_modulated_weight_grad_op.register_fake
def _modulated_weight_grad_fake(grad, weight, styles, d, scale, demodulate):
    return torch.empty_like(styles)


def _modulated_weight_setup(ctx, inputs, output) -> None:
    weight, styles, scale, demodulate, _ = inputs
    ctx.save_for_backward(weight, styles, output[1])
    ctx.scale, ctx.demodulate = scale, demodulate


def _modulated_weight_backward(ctx, grad: torch.Tensor, grad_d: torch.Tensor | None):
    # d is an internal output (the backward's input), never used by the caller: grad_d is ignored
    weight, styles, d = ctx.saved_tensors
    grad_styles = None
    if ctx.needs_input_grad[1]:
        grad_styles = _modulated_weight_grad_op(grad, weight, styles, d, ctx.scale, ctx.demodulate)
    return None, grad_styles, None, None, None


def _modulated_weight_second_order(ctx, grad):
    raise SecondOrderGradientError(_SECOND_ORDER.format(op="modulated_weight"))


_modulated_weight_op.register_autograd(_modulated_weight_backward, setup_context=_modulated_weight_setup)
_modulated_weight_grad_op.register_autograd(_modulated_weight_second_order,
                                            setup_context=lambda ctx, inputs, output: None)


def upfirdn2d_for_compile(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
                          pad: tuple[int, ...] | int = (0, 0)) -> torch.Tensor:
    """:func:`upfirdn2d` through the custom operator (traceable by ``torch.compile``); needs :func:`bind`."""
    _check_upfirdn2d_args(x, kernel)
    return _upfirdn2d_op(x, _kernel_for(x, kernel), int(up), int(down), *_pad4(pad))


def fused_leaky_relu_for_compile(x: torch.Tensor, bias: torch.Tensor | None, negative_slope: float = 0.2,
                                 scale: float = math.sqrt(2), *, noise: torch.Tensor | None = None,
                                 noise_strength: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`fused_leaky_relu` through the custom operator (traceable by ``torch.compile``); needs :func:`bind`."""
    _check_bias_act_args(x, bias, negative_slope, scale, noise, noise_strength)
    return _bias_act_op(x, bias, _contiguous(noise), _detached(noise_strength), float(scale),
                        float(negative_slope * scale))


def modulated_weight_for_compile(weight: torch.Tensor, styles: torch.Tensor, scale: float, demodulate: bool = True,
                                 eps: float = 1e-8) -> torch.Tensor:
    """:func:`modulated_weight` through the custom operator (traceable by ``torch.compile``); needs :func:`bind`."""
    w3, s, shape = _modulation_args(weight, styles)
    return _modulated_weight_op(w3, s, float(scale), bool(demodulate), float(eps))[0].view(shape)
