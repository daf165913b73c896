"""IR-SE50 ArcFace identity network (TreB1eN/InsightFace_Pytorch layout) for the identity loss.

``model_ir_se50.pth`` is a plain state dict of TreB1eN's ``Backbone(112, 50, mode="ir_se")``:
``input_layer`` (3x3 conv, BN, PReLU), ``body`` (24 residual units with
squeeze-and-excitation in four stages of 3/4/14/3 units, 64/128/256/512 channels, each
stage halving the resolution 112 -> 7), ``output_layer`` (BN, dropout, flatten,
Linear(512*7*7, 512), BN1d) and an L2 normalisation.  Module names here match those
keys, so the file loads with ``strict=True``.  The stage layout is read from the keys,
so smaller nets in the same layout (tests) load too.

The identity loss compares faces as StyleCLIP / pSp do: pool the generator output to
256x256 (unless it is already 256), crop rows 35:223 and columns 32:220 (the face
region of an FFHQ-aligned image), pool to 112x112, embed.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from soundedit.errors import CheckpointError, InputError

logger = logging.getLogger("soundedit")

#: Face crop of the identity-loss convention, in a 256x256 image: rows, columns.
FACE_CROP = (slice(35, 223), slice(32, 220))


class _Flatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)


class SEModule(nn.Module):
    """Squeeze-and-excitation: channel gates from globally pooled features."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, max(channels // reduction, 1), kernel_size=1, bias=False)
        self.fc2 = nn.Conv2d(max(channels // reduction, 1), channels, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)))))
        return x * gate


class BottleneckIRSE(nn.Module):
    """Pre-activation residual unit: BN, conv3x3, PReLU, conv3x3 (strided), BN, SE."""

    def __init__(self, in_channels: int, depth: int, stride: int) -> None:
        super().__init__()
        if in_channels == depth:
            self.shortcut_layer: nn.Module = nn.MaxPool2d(1, stride)  # subsampling identity
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(in_channels, depth, 1, stride, bias=False),
                                                nn.BatchNorm2d(depth))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
            SEModule(depth, 16),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class IdentityNet(nn.Module):
    """IR-SE ArcFace backbone: (N, 3, 112, 112) faces in [-1, 1] -> (N, embed_dim) unit vectors.

    Args:
        units: residual units per stage (IR-SE50: 3, 4, 14, 3).
        widths: channels per stage (64, 128, 256, 512); the stem has ``widths[0]``.
        embed_dim: embedding size (512).
    """

    input_size = 112

    def __init__(self, units: Sequence[int] = (3, 4, 14, 3), widths: Sequence[int] = (64, 128, 256, 512),
                 embed_dim: int = 512) -> None:
        super().__init__()
        if len(units) != len(widths) or not units:
            raise InputError(f"IdentityNet: units and widths must have the same non-zero length, got {units}, {widths}")
        self.units, self.widths, self.embed_dim = tuple(units), tuple(widths), embed_dim
        self.input_layer = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]),
                                         nn.PReLU(widths[0]))
        body = []
        in_ch = widths[0]
        for n, depth in zip(units, widths):
            body.append(BottleneckIRSE(in_ch, depth, 2))  # each stage starts by halving the resolution
            body.extend(BottleneckIRSE(depth, depth, 1) for _ in range(n - 1))
            in_ch = depth
        self.body = nn.Sequential(*body)
        side = self.input_size // 2 ** len(units)
        self.output_layer = nn.Sequential(nn.BatchNorm2d(in_ch), nn.Dropout(0.6), _Flatten(),
                                          nn.Linear(in_ch * side * side, embed_dim), nn.BatchNorm1d(embed_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, 3, 112, 112) -> (N, embed_dim) L2-normalised embeddings."""
        if x.ndim != 4 or x.shape[1:] != (3, self.input_size, self.input_size):
            raise InputError(f"IdentityNet: expected faces (N, 3, 112, 112), got {tuple(x.shape)} "
                             f"(use embed_faces for generator images)")
        x = self.output_layer(self.body(self.input_layer(x)))
        return x / torch.norm(x, 2, 1, True)

    def embed_faces(self, img: torch.Tensor) -> torch.Tensor:
        """Embed generator output with the identity-loss crop convention.

        Args:
            img: (N, 3, H, W) images in about [-1, 1] (FFHQ-aligned faces).

        Returns:
            (N, embed_dim) L2-normalised embeddings; differentiable w.r.t. ``img``.
        """
        if img.ndim != 4 or img.shape[1] != 3:
            raise InputError(f"IdentityNet.embed_faces: expected images (N, 3, H, W), got {tuple(img.shape)}")
        if img.shape[-2:] != (256, 256):
            img = F.adaptive_avg_pool2d(img, (256, 256))
        face = img[:, :, FACE_CROP[0], FACE_CROP[1]]
        return self(F.adaptive_avg_pool2d(face, (self.input_size, self.input_size)))


def infer_architecture(state: dict[str, torch.Tensor], *, source: str | os.PathLike = "checkpoint") -> dict:
    """Units per stage, widths and embed_dim of a TreB1eN-layout state dict."""
    try:
        n_units = 1 + max(int(m.group(1)) for k in state if (m := re.fullmatch(r"body\.(\d+)\.res_layer\.1\.weight", k)))
        units, widths = [], []
        for i in range(n_units):
            depth, in_ch = state[f"body.{i}.res_layer.1.weight"].shape[:2]
            # A stage starts at unit 0 and wherever the width changes (that unit also has a conv shortcut).
            if i == 0 or in_ch != depth:
                units.append(0)
                widths.append(int(depth))
            units[-1] += 1
        embed_dim = int(state["output_layer.3.weight"].shape[0])
    except (KeyError, ValueError, IndexError, AttributeError) as err:
        raise CheckpointError(f"{source}: not an IR-SE (TreB1eN model_ir_se50.pth) state dict: missing or "
                              f"malformed key {err} (expected input_layer.*, body.N.res_layer.*, output_layer.*)"
                              ) from None
    return {"units": tuple(units), "widths": tuple(widths), "embed_dim": embed_dim}


def load_identity_net(path_or_name: str | os.PathLike = "ir-se50", *, device: str | torch.device = "cpu"
                      ) -> IdentityNet:
    """Load TreB1eN's IR-SE50 (``model_ir_se50.pth``) by weights.lock name or path.

    Args:
        path_or_name: ``"ir-se50"`` or a local ``.pth`` (plain state dict; a ``module.``
            prefix from DataParallel is accepted).
        device: where to put it.

    Returns:
        Frozen :class:`IdentityNet` in eval mode.

    Raises:
        CheckpointError: unreadable, unsafe, or keys/shapes that do not fit.
    """
    from soundedit.models.checkpoint import check_state_dict, load_torch
    from soundedit.weights import resolve

    path = resolve(path_or_name)
    state = load_torch(path, what="an IR-SE50 identity-net checkpoint")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected an IR-SE50 state dict, got {type(state).__name__}")
    if isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    model = IdentityNet(**infer_architecture(state, source=path))
    check_state_dict(model, state, source=path)
    model.load_state_dict(state, strict=True)  # copies into the float32 parameters
    logger.info("loaded IR-SE identity net (%d units) from %s", sum(model.units), path)
    return model.eval().requires_grad_(False).to(device)
