"""The StyleGAN2 generator: mapping network + synthesis network with skip ToRGB outputs.

Layout and names follow rosinality/stylegan2-pytorch so its ``g_ema`` state dicts
load directly; NVIDIA's pickles are converted to this layout (:mod:`.convert`).

Latent spaces (shapes are read from the model, never hard-coded):

- z: (N, style_dim) Gaussian input of the mapping network.
- W: (N, style_dim) output of the mapping network, one code for every layer.
- W+: (N, n_latent, style_dim) one code per style input; ``n_latent = 2*log2(resolution) - 2``
  (10 at 64 px, 14 at 256 px, 18 at 1024 px).  Layer 2i-1/2i drive the two convolutions
  of resolution 2^(i+2) and layer 2i+1 its ToRGB (which shares its code with the next
  block's first convolution).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from soundedit.errors import InputError
from soundedit.models.stylegan2.layers import (BLUR_KERNEL, ConstantInput, EqualLinear, PixelNorm, StyledConv,
                                               ToRGB)

#: Feature maps per resolution in rosinality's code (NVIDIA: min(channel_base / res, channel_max)).
_BASE_CHANNELS = {4: 512, 8: 512, 16: 512, 32: 512}
_MULTIPLIED_CHANNELS = {64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}
#: Samples averaged for the mean latent when a checkpoint carries none, and the fixed seed.
MEAN_LATENT_SAMPLES = 4096
MEAN_LATENT_SEED = 0


def default_channels(resolution: int, channel_multiplier: int) -> tuple[int, ...]:
    """Feature maps at 4, 8, ..., ``resolution`` px for a rosinality ``channel_multiplier``."""
    out = []
    res = 4
    while res <= resolution:
        out.append(_BASE_CHANNELS.get(res) or _MULTIPLIED_CHANNELS[res] * channel_multiplier)
        res *= 2
    return tuple(out)


@dataclass(frozen=True)
class GeneratorConfig:
    """Everything needed to build a :class:`Generator` (stored in our checkpoints as JSON).

    Args:
        resolution: output size in px, a power of two in 4..1024.
        style_dim: width of z and W (512 for all public models).
        n_mlp: layers of the mapping network (8 for all public models).
        channel_multiplier: rosinality's width knob (2 = config-f, 1 = config-e).
        channels: feature maps per resolution 4, 8, ..., resolution; derived from
            ``channel_multiplier`` when empty (NVIDIA models may use other widths).
        lr_mlp: learning-rate multiplier of the mapping layers (scales the stored weights).
        conv_clamp: clamp of activations in NVIDIA's ada-trained models, or None.
        blur_kernel: 1-D taps of the resampling FIR filter.
    """

    resolution: int
    style_dim: int = 512
    n_mlp: int = 8
    channel_multiplier: int = 2
    channels: tuple[int, ...] = ()
    lr_mlp: float = 0.01
    conv_clamp: float | None = None
    blur_kernel: tuple[int, ...] = BLUR_KERNEL

    def __post_init__(self) -> None:
        res = self.resolution
        if not isinstance(res, int) or res < 4 or res > 1024 or res & (res - 1):
            raise InputError(f"generator resolution: expected a power of two in 4..1024, got {res!r}")
        if self.style_dim < 1 or self.n_mlp < 1:
            raise InputError(f"generator config: style_dim and n_mlp must be >= 1, got {self.style_dim}, {self.n_mlp}")
        n_res = int(math.log2(res)) - 1
        channels = tuple(int(c) for c in self.channels) or default_channels(res, self.channel_multiplier)
        if len(channels) != n_res:
            raise InputError(f"generator config: expected {n_res} channel counts (4..{res} px), got {len(channels)}")
        object.__setattr__(self, "channels", channels)
        object.__setattr__(self, "blur_kernel", tuple(self.blur_kernel))

    @property
    def n_latent(self) -> int:
        return 2 * int(math.log2(self.resolution)) - 2



class Generator(nn.Module):
    """StyleGAN2 generator (rosinality layout).

    Attributes:
        n_latent: number of W+ codes (per-layer style inputs).
        resolution: output image size in px.
        style_dim: width of z / W.
        latent_avg: (style_dim,) mean W used for truncation, or None until computed.
    """

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        self.resolution = config.resolution
        self.style_dim = config.style_dim
        self.n_latent = config.n_latent
        sd, ch, clamp, taps = config.style_dim, config.channels, config.conv_clamp, config.blur_kernel

        self.style = nn.Sequential(PixelNorm(), *[EqualLinear(sd, sd, lr_mul=config.lr_mlp, activation=True)
                                                  for _ in range(config.n_mlp)])
        self.input = ConstantInput(ch[0])
        self.conv1 = StyledConv(ch[0], ch[0], sd, blur_taps=taps, conv_clamp=clamp)
        self.to_rgb1 = ToRGB(ch[0], sd, upsample=False, conv_clamp=clamp)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        for c_in, c_out in zip(ch[:-1], ch[1:]):
            self.convs.append(StyledConv(c_in, c_out, sd, upsample=True, blur_taps=taps, conv_clamp=clamp))
            self.convs.append(StyledConv(c_out, c_out, sd, blur_taps=taps, conv_clamp=clamp))
            self.to_rgbs.append(ToRGB(c_out, sd, blur_taps=taps, conv_clamp=clamp))
        # One stored noise map per StyledConv: 4x4, then two per resolution 8..res.
        self.num_noise_layers = 2 * len(ch) - 1
        self.noises = nn.Module()
        for i in range(self.num_noise_layers):
            size = 4 * 2 ** ((i + 1) // 2)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, size, size))
        # Not in the state dict: rosinality keeps it beside g_ema, NVIDIA in mapping.w_avg.
        self.register_buffer("latent_avg", None, persistent=False)

    # ----------------------------------------------------------------- latents
    def map(self, z: torch.Tensor, truncation: float = 1.0) -> torch.Tensor:
        """Map z to W+ (the same W at every layer), truncated toward the mean latent.

        Args:
            z: (N, style_dim) standard-normal codes.
            truncation: psi; 1 = no truncation, 0 = the mean latent.

        Returns:
            (N, n_latent, style_dim) W+ codes (differentiable w.r.t. z).
        """
        if z.ndim != 2 or z.shape[1] != self.style_dim:
            raise InputError(f"G.map: z must be (N, {self.style_dim}), got {tuple(z.shape)}")
        w = self.style(z)
        if truncation != 1.0:
            avg = self.mean_latent().to(w)
            w = avg + truncation * (w - avg)
        return w.unsqueeze(1).expand(-1, self.n_latent, -1).clone()

    @torch.no_grad()
    def mean_latent(self, n_samples: int = MEAN_LATENT_SAMPLES, *, seed: int = MEAN_LATENT_SEED) -> torch.Tensor:
        """The checkpoint's mean W (``latent_avg``); computed once from ``n_samples`` z and cached.

        Returns:
            (style_dim,) tensor on the generator's device.
        """
        if self.latent_avg is None:
            device = self.input.input.device
            z = torch.randn(n_samples, self.style_dim, generator=torch.Generator().manual_seed(seed)).to(device)
            chunks = [self.style(c).sum(0) for c in z.split(1024)]
            self.latent_avg = torch.stack(chunks).sum(0) / n_samples
        return self.latent_avg

    def to_w_plus(self, w: torch.Tensor) -> torch.Tensor:
        """Accept W (N, style_dim) or W+ (N, n_latent, style_dim); return W+ (broadcasting W)."""
        if w.ndim == 2 and w.shape[1] == self.style_dim:
            return w.unsqueeze(1).expand(-1, self.n_latent, -1)
        if w.ndim == 3 and w.shape[1:] == (self.n_latent, self.style_dim):
            return w
        raise InputError(f"generator latent: expected W (N, {self.style_dim}) or W+ (N, {self.n_latent}, "
                         f"{self.style_dim}), got {tuple(w.shape)}")

    # --------------------------------------------------------------- synthesis
    def make_noise(self, batch: int = 1, *, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Fresh Gaussian noise maps, one per StyledConv: list of (batch, 1, H, W)."""
        device = self.input.input.device
        out = []
        for i in range(self.num_noise_layers):
            size = 4 * 2 ** ((i + 1) // 2)
            out.append(torch.randn(batch, 1, size, size, generator=generator).to(device))
        return out

    def _noise_list(self, noise, batch: int, generator: torch.Generator | None) -> list[torch.Tensor | None]:
        if isinstance(noise, str):
            if noise == "const":
                return [getattr(self.noises, f"noise_{i}") for i in range(self.num_noise_layers)]
            if noise == "random":
                return self.make_noise(batch, generator=generator)
            if noise == "none":
                return [None] * self.num_noise_layers
            raise InputError(f"G.synthesize: noise must be 'const', 'random', 'none' or a list of tensors, got {noise!r}")
        noise = list(noise)
        if len(noise) != self.num_noise_layers:
            raise InputError(f"G.synthesize: expected {self.num_noise_layers} noise tensors, got {len(noise)}")
        return noise

    def synthesize(self, w_plus: torch.Tensor, noise: str | Sequence[torch.Tensor] = "const", *,
                   generator: torch.Generator | None = None) -> torch.Tensor:
        """Render images from W+ (or W, broadcast to every layer).

        Args:
            w_plus: (N, n_latent, style_dim) or (N, style_dim).
            noise: ``"const"`` (the checkpoint's stored noise maps: deterministic),
                ``"random"`` (fresh noise from ``generator``), ``"none"``, or a list of
                ``num_noise_layers`` tensors (N or 1, 1, H, W) as from :meth:`make_noise`.
            generator: torch.Generator for ``noise="random"``.

        Returns:
            (N, 3, resolution, resolution) images in about [-1, 1]; differentiable w.r.t. w_plus.
        """
        latent = self.to_w_plus(w_plus)
        batch = latent.shape[0]
        noises = self._noise_list(noise, batch, generator)
        out = self.input(batch)
        # One split into per-layer codes: its backward is one stack, where indexing each layer would
        # cost a zero-filled (N, n_latent, style_dim) gradient and an add per layer.
        codes = latent.unbind(1)
        out = self.conv1(out, codes[0], noises[0])
        skip = self.to_rgb1(out, codes[1])
        i = 1
        for k, to_rgb in enumerate(self.to_rgbs):
            out = self.convs[2 * k](out, codes[i], noises[2 * k + 1])
            out = self.convs[2 * k + 1](out, codes[i + 1], noises[2 * k + 2])
            skip = to_rgb(out, codes[i + 2], skip)
            i += 2
        return skip.contiguous()  # channels-last on the scaled-input path (CPU): callers may view() it

    def forward(self, w_plus: torch.Tensor, noise: str | Sequence[torch.Tensor] = "const") -> torch.Tensor:
        """Same as :meth:`synthesize`."""
        return self.synthesize(w_plus, noise)


def mix_styles(base: torch.Tensor, other: torch.Tensor, layers: range | slice | Sequence[int]) -> torch.Tensor:
    """Style mixing: W+ codes from ``base`` with the given layers taken from ``other``.

    Args:
        base, other: (N, n_latent, style_dim) W+ codes (or (1, ...) to broadcast).
        layers: 0-based layer indices, e.g. ``range(0, 9)`` for the coarse + middle layers.

    Returns:
        (N, n_latent, style_dim); differentiable w.r.t. both inputs.
    """
    if base.ndim != 3 or other.ndim != 3 or base.shape[1:] != other.shape[1:]:
        raise InputError(f"mix_styles: expected two W+ codes (N, n_latent, style_dim) of the same layout, "
                         f"got {tuple(base.shape)} and {tuple(other.shape)}")
    n_latent = base.shape[1]
    mask = torch.zeros(n_latent, dtype=torch.bool)
    idx = list(range(n_latent))[layers] if isinstance(layers, slice) else list(layers)
    for j in idx:
        if not -n_latent <= j < n_latent:
            raise InputError(f"mix_styles: layer {j} is out of range for n_latent={n_latent}")
        mask[j] = True
    mask = mask.to(base.device).view(1, n_latent, 1)
    return torch.where(mask, other, base)
