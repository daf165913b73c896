"""LPIPS-VGG perceptual distance (Zhang et al. 2018) through the PyPI package ``lpips``.

``lpips`` ships its learned linear layers (``weights/v0.1/vgg.pth``) but takes the
VGG16 backbone from torchvision, which would download ``vgg16-397923af.pth`` from the
internet.  Here the backbone is built without weights and filled from the file that
:func:`soundedit.weights.resolve` gives for ``vgg16-imagenet`` (or any path), so the
hash-pinned cache is the only source and nothing is fetched behind the user's back.
"""

from __future__ import annotations

import logging
import os
import warnings

import torch
from torch import nn

from soundedit.errors import CheckpointError, InputError

logger = logging.getLogger("soundedit")

#: torchvision VGG16 ``features`` indices that lpips' five slices hold (relu1_2 ... relu5_3).
_SLICES = ((1, range(0, 4)), (2, range(4, 9)), (3, range(9, 16)), (4, range(16, 23)), (5, range(23, 30)))

#: LPIPS works on images of at most this side (larger ones are area-downsampled, as projectors do).
LPIPS_SIZE = 256


class LPIPS(nn.Module):
    """LPIPS-VGG distance between images in [-1, 1]: ``(N, 3, H, W) x2 -> (N,)``.

    Images larger than 256 px are area-downsampled to 256 first (the projectors of
    NVIDIA and rosinality compare at 256 px: faster, and LPIPS was calibrated on
    patches of that scale).
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        # channels-last weights run VGG's convolutions (and the projection's backward through them)
        # about 16 % faster on CPU (oneDNN); the images follow the weights' layout
        self.net = net.eval().requires_grad_(False).to(memory_format=torch.channels_last)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        a, b = _downsample(a), _downsample(b)
        return self.net(a, b, normalize=False).flatten()


def _downsample(x: torch.Tensor) -> torch.Tensor:
    if x.shape[-1] > LPIPS_SIZE:
        x = nn.functional.adaptive_avg_pool2d(x, (LPIPS_SIZE, LPIPS_SIZE))
    return x


def vgg16_features_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """``features.*`` tensors of a torchvision VGG16 checkpoint (``vgg16-397923af.pth`` layout).

    Raises:
        CheckpointError: unreadable file or missing/misshaped convolution weights.
    """
    from soundedit.models.checkpoint import load_torch

    state = load_torch(path, what="a torchvision VGG16 checkpoint")
    if not isinstance(state, dict):
        raise CheckpointError(f"VGG16 checkpoint {str(path)!r}: expected a torchvision state dict, got {type(state).__name__}")
    feats = {k: v for k, v in state.items() if k.startswith("features.")}
    from torchvision.models import vgg16

    with torch.device("meta"):  # shapes only: no 138 M parameters allocated and initialised
        expected = {k: v.shape for k, v in vgg16(weights=None).features.state_dict().items()}
    got = {k[len("features."):]: v for k, v in feats.items()}
    missing = sorted(set(expected) - set(got))
    wrong = sorted(k for k in expected if k in got and tuple(got[k].shape) != tuple(expected[k]))
    if missing or wrong or set(got) - set(expected):
        raise CheckpointError(f"VGG16 checkpoint {str(path)!r}: expected torchvision vgg16 'features.*' keys; "
                              f"missing {missing[:4]}, wrong shapes {wrong[:4]}, "
                              f"unexpected {sorted(set(got) - set(expected))[:4]}")
    return got


def load_lpips(vgg: str | os.PathLike = "vgg16-imagenet", *, device: str | torch.device = "cpu") -> LPIPS:
    """LPIPS-VGG with its backbone read from ``vgg`` (a weights.lock name or a path).

    Args:
        vgg: torchvision's ImageNet VGG16 (``vgg16-397923af.pth``), by name or path.
        device: where to put the network.

    Returns:
        an :class:`LPIPS` module (frozen, eval mode).

    Raises:
        InputError: the ``lpips`` package is missing (names it).
        WeightsMissingError: the VGG16 file is not cached and cannot be fetched.
        CheckpointError: the file is not a VGG16 state dict.
    """
    try:
        import lpips
    except ImportError as exc:
        raise InputError("the LPIPS perceptual loss needs the package 'lpips', which is not installed: "
                         "pip install lpips (or use perceptual=None for a pixel-only projection)") from exc
    from soundedit.weights import resolve

    features = vgg16_features_state(resolve(vgg))
    with warnings.catch_warnings():
        # lpips passes torchvision's deprecated ``pretrained=False``; the backbone is filled below
        warnings.simplefilter("ignore", UserWarning)
        net = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False)
    mapped = {f"slice{s}.{i}.{k.split('.', 1)[1]}": v for s, idx in _SLICES for i in idx
              for k, v in features.items() if k.split(".", 1)[0] == str(i)}
    result = net.net.load_state_dict(mapped, strict=True)
    logger.debug("LPIPS backbone loaded from %s (%s)", vgg, result)
    return LPIPS(net).to(device)
