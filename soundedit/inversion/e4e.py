"""encoder4editing (Tov et al. 2021): one forward pass from an aligned face to W+.

Checkpoint layout of the public ``e4e_ffhq_encode.pt`` (pSp framework,
omertov/encoder4editing ``models/psp.py`` and ``models/encoders/psp_encoders.py``)::

    {"state_dict": {"encoder.*": ..., "decoder.*": ...},  # decoder = rosinality StyleGAN2
     "latent_avg": (18, 512) or (512,),                     # W+ = latent_avg + encoder output
     "opts": {...}}                                          # training options (dict)

``encoder.*`` is an ``Encoder4Editing`` over an IR-SE50 body:
``input_layer.{0,1,2}`` (3x3 conv, BN, PReLU), ``body.0..23`` (the 3/4/14/3 IR-SE units,
64/128/256/512 channels, same unit as the ArcFace net: ``shortcut_layer``, ``res_layer``),
``styles.0..K-1`` (``GradualStyleBlock``: ``convs.{0,2,..}`` strided 3x3 convs with
LeakyReLU between, then ``linear`` an equalised linear layer), and the feature-pyramid
laterals ``latlayer1`` (256->512, 1x1) and ``latlayer2`` (128->512, 1x1).  Styles 0-2 read
the 16x16 map of the last stage, 3-6 the 32x32 pyramid level, 7.. the 64x64 level.
e4e predicts one code ``w0`` (style 0) and per-layer offsets: ``w_i = w0 + delta_i``.

The module names below equal the checkpoint's, so it loads with strict matching; the
widths and counts are read from the keys, so smaller encoders in the same layout
(tests) load too.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from soundedit.errors import CheckpointError, InputError
from soundedit.models.checkpoint import check_state_dict
from soundedit.models.identity import BottleneckIRSE
from soundedit.models.stylegan2.layers import EqualLinear

logger = logging.getLogger("soundedit")

#: The encoder's input side (e4e resizes aligned faces to 256x256, normalised to [-1, 1]).
INPUT_SIZE = 256
#: Style blocks reading the coarse (16 px), middle (32 px) and fine (64 px) pyramid levels.
COARSE_END, MIDDLE_END = 3, 7
#: IR-SE50 body: residual units per stage.
_STAGE_UNITS = (3, 4, 14, 3)


class GradualStyleBlock(nn.Module):
    """Strided 3x3 convs (with LeakyReLU) down to 1x1, then an equalised linear layer: one W code."""

    def __init__(self, channels: int, out_dim: int, spatial: int) -> None:
        super().__init__()
        n_convs = int(math.log2(spatial))
        layers: list[nn.Module] = []
        c_in = channels
        for _ in range(n_convs):
            layers += [nn.Conv2d(c_in, out_dim, 3, stride=2, padding=1), nn.LeakyReLU()]
            c_in = out_dim
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(out_dim, out_dim)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(x).reshape(-1, self.out_dim))


class Encoder4Editing(nn.Module):
    """e4e encoder: ``(N, 3, 256, 256)`` aligned faces in [-1, 1] -> W+ offsets ``(N, n_styles, style_dim)``.

    Args:
        n_styles: W+ rows (the generator's ``n_latent``: 18 at 1024 px).
        units: IR-SE units per stage (3, 4, 14, 3 for IR-SE50).
        widths: channels per stage (64, 128, 256, 512).
        style_dim: W width (512).
        spatial: input side of the (coarse, middle, fine) style blocks (16, 32, 64 at 256 px input).
    """

    def __init__(self, n_styles: int, *, units: Sequence[int] = _STAGE_UNITS, widths: Sequence[int] = (64, 128, 256, 512),
                 style_dim: int = 512, spatial: Sequence[int] = (16, 32, 64)) -> None:
        super().__init__()
        if len(units) != 4 or len(widths) != 4:
            raise InputError(f"Encoder4Editing: expected 4 stages, got units {units}, widths {widths}")
        self.n_styles, self.style_dim = n_styles, style_dim
        self.input_layer = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]),
                                         nn.PReLU(widths[0]))
        body, c_in = [], widths[0]
        for n, depth in zip(units, widths):
            body.append(BottleneckIRSE(c_in, depth, 2))
            body.extend(BottleneckIRSE(depth, depth, 1) for _ in range(n - 1))
            c_in = depth
        self.body = nn.Sequential(*body)
        # outputs of stages 2, 3 and 4 feed the fine, middle and coarse pyramid levels
        ends = [sum(units[:k + 1]) - 1 for k in range(4)]
        self._taps = (ends[1], ends[2], ends[3])
        self.styles = nn.ModuleList(
            GradualStyleBlock(widths[3], style_dim, spatial[0] if i < COARSE_END else spatial[1] if i < MIDDLE_END
                              else spatial[2]) for i in range(n_styles))
        self.latlayer1 = nn.Conv2d(widths[2], widths[3], 1)
        self.latlayer2 = nn.Conv2d(widths[1], widths[3], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_layer(x)
        feats = {}
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in self._taps:
                feats[i] = x
        fine_in, middle_in, coarse = (feats[i] for i in self._taps)
        w0 = self.styles[0](coarse)
        codes = [w0]
        middle = fine = None
        for i in range(1, self.n_styles):
            if i < COARSE_END:
                level = coarse
            elif i < MIDDLE_END:
                if middle is None:  # top-down pathway: upsampled coarser map + 1x1 lateral of the finer stage
                    middle = _upsample_add(coarse, self.latlayer1(middle_in))
                level = middle
            else:
                if fine is None:
                    middle = middle if middle is not None else _upsample_add(coarse, self.latlayer1(middle_in))
                    fine = _upsample_add(middle, self.latlayer2(fine_in))
                level = fine
            codes.append(w0 + self.styles[i](level))  # e4e: every layer is w0 plus its own offset
        return torch.stack(codes, dim=1)


def _upsample_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y


class E4E(nn.Module):
    """A loaded e4e checkpoint: ``E(aligned) -> W+`` ``(N, n_styles, style_dim)`` (latent_avg added).

    Attributes:
        encoder: the :class:`Encoder4Editing`.
        latent_avg: ``(n_styles, style_dim)`` the centre the encoder's output is relative to.
        opts: the checkpoint's training options (dict).
        decoder_state: the checkpoint's ``decoder.*`` generator weights (rosinality keys), kept so
            the matching generator can be built from the same file.
    """

    def __init__(self, encoder: Encoder4Editing, latent_avg: torch.Tensor, opts: dict | None = None,
                 decoder_state: dict[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        self.encoder = encoder.eval()
        self.register_buffer("latent_avg", latent_avg.float())
        self.opts = dict(opts or {})
        self.decoder_state = decoder_state or {}

    @property
    def n_styles(self) -> int:
        return self.encoder.n_styles

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` aligned faces in [-1, 1] (resized to 256 px here) -> ``(N, n_styles, style_dim)``."""
        if image.ndim != 4 or image.shape[1] != 3:
            raise InputError(f"e4e: expected aligned faces (N, 3, H, W) in [-1, 1], got {tuple(image.shape)}")
        if image.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            image = F.interpolate(image, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False,
                                  antialias=image.shape[-1] > INPUT_SIZE)
        return self.encoder(image) + self.latent_avg


def infer_encoder_architecture(state: dict[str, torch.Tensor], *, source: str = "checkpoint") -> dict:
    """Encoder4Editing arguments read from ``encoder.*`` keys (prefix stripped)."""
    try:
        n_units = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"body\.(\d+)\.", k)))
        n_styles = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"styles\.(\d+)\.", k)))
        widths = []
        units = []
        for i in range(n_units):
            depth = state[f"body.{i}.res_layer.1.weight"].shape[0]
            if i == 0 or depth != widths[-1]:
                widths.append(depth)
                units.append(0)
            units[-1] += 1
        style_dim = state["styles.0.linear.weight"].shape[0]
        spatial = []
        for idx in (0, COARSE_END, MIDDLE_END):
            if idx >= n_styles:
                break
            n_convs = len({m.group(1) for k in state if (m := re.match(rf"styles\.{idx}\.convs\.(\d+)\.weight", k))})
            spatial.append(2 ** n_convs)
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{source}: not an Encoder4Editing state dict (IR-SE body, styles, latlayers); "
                              f"{type(exc).__name__}: {exc}") from exc
    if len(units) != 4:
        raise CheckpointError(f"{source}: expected an IR-SE body with 4 stages, found widths {widths}")
    spatial += [spatial[-1] * 2] * (3 - len(spatial))
    return {"n_styles": n_styles, "units": tuple(units), "widths": tuple(widths), "style_dim": style_dim,
            "spatial": tuple(spatial)}


def load_e4e(path_or_name: str | os.PathLike = "e4e-ffhq", *, device: str | torch.device = "cpu") -> E4E:
    """Load an e4e/pSp checkpoint (``e4e_ffhq_encode.pt`` layout) with strict key matching.

    Args:
        path_or_name: a path or a weights.lock name (``e4e-ffhq``).
        device: where to put the encoder.

    Returns:
        an :class:`E4E` in eval mode.

    Raises:
        WeightsMissingError: a named file is not cached and cannot be fetched.
        CheckpointError: unreadable file, a pSp checkpoint of another encoder type, or any
            missing/unexpected/misshaped key.
    """
    from soundedit.weights import resolve

    path = resolve(path_or_name)
    from soundedit.models.checkpoint import load_torch

    # opts is a plain dict of numbers/strings; weights_only refuses anything executable
    ckpt = load_torch(path, what="an e4e checkpoint")
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        got = sorted(map(str, ckpt))[:6] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"e4e checkpoint {str(path)!r}: expected a dict with 'state_dict' (pSp/e4e layout), got {got}")
    opts = ckpt.get("opts") if isinstance(ckpt.get("opts"), dict) else {}
    encoder_type = opts.get("encoder_type", "Encoder4Editing")
    if encoder_type != "Encoder4Editing":
        raise CheckpointError(f"e4e checkpoint {str(path)!r}: expected encoder_type 'Encoder4Editing', got "
                              f"{encoder_type!r} (pSp's GradualStyleEncoder predicts codes differently)")
    state = ckpt["state_dict"]
    enc = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    dec = {k[len("decoder."):]: v for k, v in state.items() if k.startswith("decoder.")}
    other = sorted(k for k in state if not k.startswith(("encoder.", "decoder.")))
    if other:
        raise CheckpointError(f"e4e checkpoint {str(path)!r}: unexpected keys outside encoder./decoder.: {other[:5]}")
    arch = infer_encoder_architecture(enc, source=f"e4e checkpoint {str(path)!r}")
    encoder = Encoder4Editing(**arch)
    check_state_dict(encoder, enc, source=f"e4e checkpoint {str(path)!r}", what=f"Encoder4Editing{arch} (encoder.*)")
    encoder.load_state_dict(enc, strict=True)
    avg = ckpt.get("latent_avg")
    if not isinstance(avg, torch.Tensor):
        raise CheckpointError(f"e4e checkpoint {str(path)!r}: expected a 'latent_avg' tensor (e4e starts from the "
                              "average latent), got none")
    n, d = arch["n_styles"], arch["style_dim"]
    if tuple(avg.shape) == (d,):
        avg = avg.expand(n, d)
    elif avg.ndim == 2 and avg.shape[1] == d and avg.shape[0] >= n:
        avg = avg[:n]  # stored repeated to the generator's layer count
    else:
        raise CheckpointError(f"e4e checkpoint {str(path)!r}: latent_avg must be ({d},) or ({n}, {d}), got {tuple(avg.shape)}")
    return E4E(encoder, avg.clone(), opts, dec).to(device).eval()
