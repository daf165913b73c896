"""StyleGAN2 building blocks, with module and parameter names of rosinality's layout.

The attribute names (``weight``, ``bias``, ``modulation``, ``blur.kernel``,
``noise.weight``, ``activate.bias`` ...) are those of rosinality/stylegan2-pytorch
``model.py``, so a ``g_ema`` state dict from that code (and from StyleCLIP, e4e and the
paper's code, which all use it) loads with ``strict=True``.  The arithmetic is the one
of the StyleGAN2 paper: equalised learning rate (weights scaled at run time by
``1/sqrt(fan_in)``), weight modulation/demodulation, transposed-conv upsampling
followed by a [1,3,3,1] FIR blur, and additive per-pixel noise.

The hot operations (bias + leaky ReLU, FIR resampling, weight modulation) go through
:mod:`soundedit.models.stylegan2.ops`, which picks the compiled CUDA kernels when they
are available and the pure-PyTorch reference otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from soundedit.models.stylegan2 import ops

#: StyleGAN2's default FIR filter for up/down-sampling (a binomial low-pass).
BLUR_KERNEL = (1, 3, 3, 1)
#: leaky ReLU slope and the gain that keeps activations at unit variance.
LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2)


def make_kernel(taps: Sequence[float]) -> torch.Tensor:
    """Separable 2-D FIR kernel from 1-D taps, normalised to sum 1. Returns (k, k)."""
    k = torch.tensor(list(taps), dtype=torch.float32)
    k2 = k[None, :] * k[:, None]
    return k2 / k2.sum()


class PixelNorm(nn.Module):
    """Normalise each latent vector to unit root-mean-square (the mapping net's input)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x * x, dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate (weights and bias scaled at run time).

    Stored ``weight`` is ``randn / lr_mul``; the effective weight is
    ``weight * lr_mul / sqrt(in_dim)`` and the effective bias ``bias * lr_mul``.
    With ``activation=True`` a fused bias + leaky ReLU (gain sqrt 2) follows.
    """

    def __init__(self, in_dim: int, out_dim: int, *, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # lr_mul is 1 in every modulation layer (26 per 1024-px step): skip that multiply (x * 1 == x)
        bias = self.bias if self.lr_mul == 1 else self.bias * self.lr_mul
        if self.activation:
            return ops.fused_leaky_relu(F.linear(x, self.weight * self.scale), bias, LRELU_SLOPE, LRELU_GAIN)
        return F.linear(x, self.weight * self.scale, bias=bias)


class FusedLeakyReLU(nn.Module):
    """Per-channel bias then leaky ReLU scaled by sqrt 2 (``activate`` in StyledConv); with ``noise``,
    StyleGAN2's noise injection ``noise_strength * noise`` is added first, in the same kernel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None,
                noise_strength: torch.Tensor | None = None) -> torch.Tensor:
        return ops.fused_leaky_relu(x, self.bias, LRELU_SLOPE, LRELU_GAIN, noise=noise, noise_strength=noise_strength)


class Blur(nn.Module):
    """FIR low-pass filter applied after the transposed convolution of an upsampling layer."""

    def __init__(self, taps: Sequence[float], pad: tuple[int, int], upsample_factor: int = 1) -> None:
        super().__init__()
        # Zero insertion by `factor` divides the signal's DC gain by factor**2; the kernel restores it.
        self.register_buffer("kernel", make_kernel(taps) * upsample_factor ** 2)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.upfirdn2d(x, self.kernel, 1, 1, self.pad)


class Upsample(nn.Module):
    """2x FIR upsampling of the RGB skip image."""

    def __init__(self, taps: Sequence[float], factor: int = 2) -> None:
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(taps) * factor ** 2)
        p = self.kernel.shape[0] - factor
        # Padding that keeps the output exactly factor * input and centred (as in the paper's code).
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.upfirdn2d(x, self.kernel, self.factor, 1, self.pad)


class ModulatedConv2d(nn.Module):
    """Convolution whose weights are scaled per input channel by a style, then demodulated.

    Each sample gets its own weights, so the batch is folded into the channel axis and
    run as one grouped convolution (groups = batch). Where :func:`ops.scales_input` says so (on CPU)
    the styles scale the input instead (:meth:`_scaled_input`).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int, *,
                 demodulate: bool = True, upsample: bool = False, blur_taps: Sequence[float] = BLUR_KERNEL) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.upsample = upsample
        self.demodulate = demodulate
        if upsample:
            factor = 2
            p = (len(blur_taps) - factor) - (kernel_size - 1)
            # The stride-2 transposed conv grows the map by kernel_size - 1 more than 2x; the blur's
            # padding trims that back to exactly 2x.
            self.blur = Blur(blur_taps, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size ** 2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1.0)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """x (N, C_in, H, W), style (N, style_dim) -> (N, C_out, H', W') (H' = 2H when upsampling)."""
        batch, in_ch, height, width = x.shape
        k = self.kernel_size
        styles = self.modulation(style)  # (N, C_in)
        if ops.scales_input(x):
            return self._scaled_input(x, styles)
        # (N, C_out, C_in, k, k) per-sample weights
        weight = ops.modulated_weight(self.weight, styles, self.scale, self.demodulate)
        x = x.reshape(1, batch * in_ch, height, width)  # fold the batch into channels for a grouped conv
        if self.upsample:
            # conv_transpose2d wants (in, out/groups, k, k) per group
            weight = weight.transpose(1, 2).reshape(batch * in_ch, self.out_channels, k, k)
            out = F.conv_transpose2d(x, weight, padding=0, stride=2, groups=batch)
            out = out.view(batch, self.out_channels, out.shape[2], out.shape[3])
            return self.blur(out)
        weight = weight.reshape(batch * self.out_channels, in_ch, k, k)
        out = F.conv2d(x, weight, padding=self.padding, groups=batch)
        return out.view(batch, self.out_channels, out.shape[2], out.shape[3])

    def _scaled_input(self, x: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
        """The same convolution with the styles moved onto the input (StyleGAN2's non-fused form):
        ``conv(x * s, w) * d`` equals ``conv(x, w * s * d)`` because s scales input channels and d
        output channels. The shared weight needs no gradient, so backward skips the weight gradient
        of the per-sample weights: one convolution in three. With channels-last maps, a generator
        forward + backward on 2 CPU cores: 256 px 1.23 -> 0.82 s, 1024 px 4.1 -> 3.15 s.

        x (N, C_in, H, W), styles (N, C_in) -> (N, C_out, H', W').
        """
        batch = x.shape[0]
        s = styles * self.scale  # the equalised learning rate folded into the styles
        weight = self.weight[0]  # (C_out, C_in, k, k)
        # oneDNN's convolutions (and their backward) run 10-25 % faster on channels-last maps; the
        # layers' outputs stay channels-last, so only the first layer copies (the image is made
        # contiguous again at the end of Generator.synthesize)
        x = (x * s.reshape(batch, -1, 1, 1)).contiguous(memory_format=torch.channels_last)
        if self.upsample:
            out = F.conv_transpose2d(x, weight.transpose(0, 1), padding=0, stride=2)  # wants (in, out, k, k)
        else:
            out = F.conv2d(x, weight, padding=self.padding)
        if self.demodulate:
            # |w_o * s|^2 = sum_i s_i^2 * sum_(kh, kw) w_oi^2: one (N, C_in) x (C_in, C_out) product
            d = torch.rsqrt(s.square() @ weight.square().sum((2, 3)).t() + 1e-8)  # (N, C_out)
            out = out * d.reshape(batch, -1, 1, 1)
        return self.blur(out) if self.upsample else out


class NoiseInjection(nn.Module):
    """The learned strength (``weight``, one element) of the per-pixel noise (N or 1, 1, H, W) a StyledConv
    adds; the addition itself happens in the activation's kernel (:class:`FusedLeakyReLU`)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))


class ConstantInput(nn.Module):
    """The learned 4x4 constant the synthesis network starts from."""

    def __init__(self, channels: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.expand(batch, -1, -1, -1)


class StyledConv(nn.Module):
    """Modulated 3x3 conv (optionally upsampling), noise, bias + leaky ReLU (optionally clamped)."""

    def __init__(self, in_channels: int, out_channels: int, style_dim: int, *, upsample: bool = False,
                 blur_taps: Sequence[float] = BLUR_KERNEL, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, style_dim, upsample=upsample, blur_taps=blur_taps)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channels)
        # NVIDIA's ada-trained models clamp activations (conv_clamp, for fp16 safety); None = no clamp.
        self.conv_clamp = conv_clamp

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        out = self.activate(self.conv(x, style), noise, None if noise is None else self.noise.weight)
        if self.conv_clamp is not None:
            out = out.clamp(-self.conv_clamp, self.conv_clamp)
        return out


class ToRGB(nn.Module):
    """Modulated 1x1 conv to RGB (no demodulation) plus bias, added to the upsampled skip image."""

    def __init__(self, in_channels: int, style_dim: int, *, upsample: bool = True,
                 blur_taps: Sequence[float] = BLUR_KERNEL, conv_clamp: float | None = None) -> None:
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_taps)
        self.conv = ModulatedConv2d(in_channels, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        self.conv_clamp = conv_clamp

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias
        if self.conv_clamp is not None:
            out = out.clamp(-self.conv_clamp, self.conv_clamp)
        if skip is not None:
            out = out + self.upsample(skip)
        return out
