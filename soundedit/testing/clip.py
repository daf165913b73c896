"""Tiny seeded CLIP models and audio encoders in their real file layouts, for tests.

* :func:`write_tiny_openai_clip` writes a small ViT CLIP exactly as OpenAI's
  release stores one (OpenAI's key names, fp16 weights with fp32 layer norms,
  CLIP's real 49408-token vocabulary and 77-token context), either as a plain
  state dict or as a TorchScript archive like the real ``ViT-B-32.pt``; it loads
  through ``load_clip_space(path)``, where open_clip reads the architecture from
  the tensors.
* :func:`write_tiny_audio_encoder` writes an audio encoder in the authors' layout
  (a ``module.``-prefixed ``.pth``) or ours (safetensors + config); it loads
  through ``load_audio_encoder(path)``.

Both default to ``embed_dim=512`` (CLIP ViT-B/32's joint space), so a tiny CLIP
and a tiny encoder pair up without arguments.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import torch
from torch import nn

from soundedit.config import AudioConfig, EncoderConfig
from soundedit.fileio import write_bytes

#: CLIP's BPE vocabulary size and context length (what the real tokenizer produces).
CLIP_VOCAB_SIZE = 49408
CLIP_CONTEXT_LENGTH = 77


def write_tiny_openai_clip(path: str | os.PathLike, *, embed_dim: int = 512, image_size: int = 64,
                           patch_size: int = 16, width: int = 64, layers: int = 2, seed: int = 0,
                           jit: bool = False) -> Path:
    """Write a tiny seeded ViT CLIP in OpenAI's checkpoint layout.

    Vision: ViT of ``width`` and ``layers`` on ``image_size`` px with ``patch_size``
    patches; text: a transformer of the same width and depth, context 77, vocabulary
    49408.  Heads are ``width // 64`` as OpenAI's (and open_clip's) loader assumes.
    About 7 MB with the defaults.

    Args:
        path: output file (written atomically).
        embed_dim: joint-space size (``text_projection`` / ``visual.proj`` columns).
        image_size: input size; a multiple of ``patch_size`` (open_clip infers it as
            ``patch_size * sqrt(n_positions - 1)``).
        patch_size: ViT patch size.
        width: transformer width of both towers, a multiple of 64.
        layers: transformer depth of both towers.
        seed: weights are a function of the seed alone (global RNG untouched).
        jit: write a TorchScript archive like OpenAI's released ``.pt`` files instead
            of a plain state dict.

    Returns:
        ``path`` as a ``Path``.
    """
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    if width % 64 or image_size % patch_size:
        raise ValueError(f"width must be a multiple of 64 and image_size of patch_size, "
                         f"got width={width}, image_size={image_size}, patch_size={patch_size}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIP(embed_dim,
                     vision_cfg=CLIPVisionCfg(layers=layers, width=width, patch_size=patch_size, image_size=image_size),
                     text_cfg=CLIPTextCfg(context_length=CLIP_CONTEXT_LENGTH, vocab_size=CLIP_VOCAB_SIZE,
                                          width=width, heads=width // 64, layers=layers),
                     quick_gelu=True)
        _sensitive_init(model)
    # OpenAI's release stores every float tensor in fp16; the loader casts back to fp32.
    state = {k: v.detach().half() if v.is_floating_point() else v.detach().clone()
             for k, v in model.state_dict().items()}
    buf = io.BytesIO()
    if jit:
        # OpenAI's archive also carries these three scalars among its tensors.
        state.update(input_resolution=torch.tensor(image_size), context_length=torch.tensor(CLIP_CONTEXT_LENGTH),
                     vocab_size=torch.tensor(CLIP_VOCAB_SIZE))
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.jit.save(torch.jit.script(_tensor_tree(state)), buf)
    else:
        torch.save(state, buf)
    return write_bytes(path, buf.getvalue())


def _sensitive_init(model: nn.Module) -> None:
    """Fan-in weights, zero biases and class token, small positions.

    CLIP's own init makes a tiny random model map every image to nearly the same
    embedding (cosines above 0.99), which would let a wrong preprocessing pass a
    comparison test; with this init different images (and unnormalised inputs)
    give clearly different embeddings.
    """
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2 and "embedding" not in name:
                p.copy_(torch.randn_like(p) / math.sqrt(p[0].numel()))
            elif name.endswith("bias"):
                p.zero_()
        model.visual.class_embedding.zero_()
        model.visual.positional_embedding.mul_(0.1)


class _Node(nn.Module):
    """A module that only holds named tensors (for scripting a bare state dict)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _tensor_tree(state: dict[str, torch.Tensor]) -> nn.Module:
    """Modules nested along the dotted key paths, so ``state_dict()`` gives ``state`` back."""
    root = _Node()
    for key, value in state.items():
        *parents, leaf = key.split(".")
        node = root
        for name in parents:
            if name not in node._modules:
                node.add_module(name, _Node())
            node = node._modules[name]
        if value.is_floating_point():
            node.register_parameter(leaf, nn.Parameter(value, requires_grad=False))
        else:
            node.register_buffer(leaf, value)
    return root


def write_tiny_audio_encoder(path: str | os.PathLike, *, layout: str = "clean", arch: str = "resnet18",
                             embed_dim: int = 512, seed: int = 0, audio: AudioConfig | None = None) -> Path:
    """Write a seeded audio encoder in a real file layout.

    Args:
        path: output file (written atomically).
        layout: ``"clean"`` — our safetensors with the EncoderConfig in its metadata;
            ``"official"`` — the authors' ``resnet18_57.pth`` layout: a torch state dict
            with DataParallel's ``module.`` prefix (``arch`` must then be a plain ResNet
            18/34/50/101/152, as the authors' loader builds).
        arch: timm ResNet name (e.g. ``"resnet18"``, ``"resnet10t"`` for a smaller clean one).
        embed_dim: output size (match the CLIP model's; 512 as the tiny CLIP's default).
        seed: weights are a function of the seed alone (global RNG untouched); batch-norm
            statistics are randomised too, so eval-mode outputs depend on every tensor.
        audio: front-end settings of a clean encoder (default ``AudioConfig()``); ignored
            by the official layout, whose transform is fixed.

    Returns:
        ``path`` as a ``Path``.
    """
    from soundedit.models.audio_encoder import AudioEncoder, save_audio_encoder

    # The authors' front end is fixed (their transform), so their layout keeps the default settings.
    audio = (audio or AudioConfig()) if layout == "clean" else AudioConfig()
    config = EncoderConfig(arch=arch, embed_dim=embed_dim, layout=layout, audio=audio)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = AudioEncoder(config)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for module in encoder.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.running_mean.copy_(0.1 * torch.randn(module.num_features, generator=gen))
                    module.running_var.copy_(1.0 + 0.1 * torch.randn(module.num_features, generator=gen).abs())
                    module.weight.copy_(1.0 + 0.1 * torch.randn(module.num_features, generator=gen))
                    module.bias.copy_(0.1 * torch.randn(module.num_features, generator=gen))
    if layout == "clean":
        return save_audio_encoder(encoder, path)
    buf = io.BytesIO()
    torch.save({f"module.{k}": v for k, v in encoder.state_dict().items()}, buf)
    return write_bytes(path, buf.getvalue())


def seeded_image(n: int = 1, size: int = 64, *, seed: int = 0) -> torch.Tensor:
    """A smooth seeded ``(n, 3, size, size)`` image batch in [-1, 1], like generator output."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=gen) * 2 - 1
    img = nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    return img.clamp(-1, 1)
