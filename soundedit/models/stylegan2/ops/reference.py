"""Pure-PyTorch StyleGAN2 operations: the reference path and the CPU/MPS path.

These define what the compiled CUDA kernels must compute (tests compare the two).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _pad4(pad: tuple[int, ...] | int) -> tuple[int, int, int, int]:
    """Normalise ``pad`` to (x0, x1, y0, y1); a 2-tuple (p0, p1) applies to both axes (rosinality's form)."""
    if isinstance(pad, int):
        return (pad, pad, pad, pad)
    if len(pad) == 2:
        return (pad[0], pad[1], pad[0], pad[1])
    if len(pad) == 4:
        return tuple(pad)  # type: ignore[return-value]
    raise ValueError(f"upfirdn2d: pad must have 2 or 4 entries, got {pad!r}")


def _upfirdn2d_size(h: int, w: int, kernel: torch.Tensor, up: int, down: int, px0: int, px1: int, py0: int,
                    py1: int) -> tuple[int, int]:
    """The output's (H', W') for an (H, W) input: upsampled, padded, filtered (valid), downsampled."""
    kh, kw = kernel.shape
    return (h * up + py0 + py1 - kh) // down + 1, (w * up + px0 + px1 - kw) // down + 1


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
    px0, px1, py0, py1 = _pad4(pad)
    n, c, h, w = x.shape
    kh, kw = kernel.shape
    if c == 0:  # a convolution cannot have 0 groups
        return x.new_zeros(n, 0, *_upfirdn2d_size(h, w, kernel, up, down, px0, px1, py0, py1))
    out = x
    if up > 1:
        # insert up-1 zeros after every sample on both axes
        out = out.reshape(n, c, h, 1, w, 1)
        out = F.pad(out, [0, up - 1, 0, 0, 0, up - 1])
        out = out.reshape(n, c, h * up, w * up)
    out = F.pad(out, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    out = out[:, :, max(-py0, 0): out.shape[2] - max(-py1, 0), max(-px0, 0): out.shape[3] - max(-px1, 0)]
    # One depthwise convolution (groups = C) rather than N*C single-channel images: the same sums, but on
    # CPU oneDNN's depthwise kernel is far faster (a 4x4 blur of 128 x 259 x 259: forward 165 -> 31 ms,
    # input gradient 499 -> 28 ms on 2 cores); it was half of a 256-px generator step.
    weight = torch.flip(kernel, [0, 1]).reshape(1, 1, kh, kw).to(out).expand(c, 1, kh, kw)
    out = F.conv2d(out, weight, groups=c)
    if down > 1:  # a copy: a strided view would keep the full-rate result alive
        out = out[:, :, ::down, ::down].clone(memory_format=torch.preserve_format)
    return out


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor | None, negative_slope: float = 0.2,
                     scale: float = math.sqrt(2), *, noise: torch.Tensor | None = None,
                     noise_strength: torch.Tensor | None = None) -> torch.Tensor:
    """``leaky_relu(x + noise_strength * noise + bias) * scale`` with ``bias`` (C,) broadcast along dim 1 of
    x (N, C, ...), and StyleGAN2's noise injection (``noise`` (N or 1, 1, H, W) times the learned
    one-element ``noise_strength``) when ``noise`` is given."""
    if noise is not None:
        x = x + noise_strength * noise
    if bias is not None:
        x = x + bias.reshape((1, -1) + (1,) * (x.ndim - 2)).to(x.dtype)
    return F.leaky_relu(x, negative_slope) * scale


def modulated_weight(weight: torch.Tensor, styles: torch.Tensor, scale: float, demodulate: bool = True,
                     eps: float = 1e-8) -> torch.Tensor:
    """Per-sample weights of a modulated convolution (StyleGAN2 Sec. 2.2).

    Args:
        weight: (1, O, I, k, k) stored weight (equalised learning rate: ``scale`` applied here).
        styles: (N, I) per-sample input-channel scales.
        scale: ``1 / sqrt(I * k * k)``.
        demodulate: divide each output filter by its L2 norm (``eps`` inside the root).

    Returns:
        (N, O, I, k, k) ``scale * weight * styles``, demodulated when asked.
    """
    batch = styles.shape[0]
    w = scale * weight * styles.view(batch, 1, -1, 1, 1)
    if demodulate:
        d = torch.rsqrt(w.pow(2).sum([2, 3, 4]) + eps)
        w = w * d.view(batch, -1, 1, 1, 1)
    return w
