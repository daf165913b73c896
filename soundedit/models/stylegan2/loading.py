"""Load and save StyleGAN2 generators: rosinality ``.pt``, NVIDIA ``.pkl``, our ``.safetensors``.

Formats (detected from the file's first bytes, not its name):

- rosinality ``.pt`` (StyleCLIP, e4e, the paper's code): ``{"g_ema": state_dict,
  "latent_avg": (512,)}`` (or a bare g_ema state dict), read with
  ``torch.load(weights_only=True)``; size, widths and mapping depth are inferred from
  the keys and shapes.
- NVIDIA ``.pkl`` (stylegan2-ada-pytorch / stylegan3 pickles with ``G_ema``, and the
  original TensorFlow pickles ``(G, D, Gs)``): read with a restricted unpickler that
  turns NVIDIA's classes into plain data and refuses everything else
  (:mod:`.pickle_safe`), then converted to our layout (:mod:`.convert`).
- ours: safetensors with the :class:`GeneratorConfig` as JSON in the metadata; loads
  fastest and needs no inference (``soundedit weights convert`` writes it).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
from pathlib import Path

import torch

from soundedit.config import from_dict, to_dict
from soundedit.errors import CheckpointError
from soundedit.models.checkpoint import check_state_dict, describe_file, load_torch, sniff_file
from soundedit.models.stylegan2.generator import Generator, GeneratorConfig, default_channels

logger = logging.getLogger("soundedit")

#: metadata["format"] of our safetensors generator files.
SAFETENSORS_FORMAT = "soundedit.stylegan2"


def sniff_format(path: Path) -> str:
    """``"torch"`` (zip or legacy torch.save), ``"pickle"`` (plain pickle), ``"safetensors"``."""
    kind = sniff_file(path)
    if kind == "short":
        raise CheckpointError(f"{path}: file is empty or truncated ({path.stat().st_size} bytes); expected a checkpoint")
    if kind == "unknown":
        raise CheckpointError(f"{path}: not a StyleGAN2 generator: expected a PyTorch .pt, an NVIDIA .pkl or a "
                              f".safetensors file, got {describe_file(path)}")
    return kind


def read_generator_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], torch.Tensor | None,
                                                                 GeneratorConfig]:
    """Read any supported generator file into our layout.

    Returns:
        (state_dict in rosinality names, latent_avg (style_dim,) or None, config).

    Raises:
        CheckpointError: unreadable, truncated, unsafe or not a StyleGAN2 generator.
    """
    path = Path(path)
    kind = sniff_format(path)
    if kind == "safetensors":
        return _read_safetensors(path)
    if kind == "pickle":
        from soundedit.models.stylegan2.convert import nvidia_pickle_to_state

        return nvidia_pickle_to_state(path)
    obj = _torch_load(path)
    if isinstance(obj, dict) and "g_ema" in obj:
        state, latent_avg = obj["g_ema"], obj.get("latent_avg")
    elif isinstance(obj, dict) and "style.1.weight" in obj:
        state, latent_avg = obj, None
    else:
        keys = sorted(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{path}: expected a rosinality StyleGAN2 checkpoint ({{'g_ema': state_dict, "
                              f"'latent_avg': ...}} or a g_ema state dict), got {keys}")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: 'g_ema' should be a state dict, got {type(state).__name__}")
    config = infer_config(state, source=path)
    return state, latent_avg, config


def _torch_load(path: Path):
    # Training checkpoints of rosinality's train.py also hold an argparse.Namespace ("args"); it
    # only sets attributes, so it is safe to allow next to tensors.
    return load_torch(path, what="a StyleGAN2 generator", allow=[argparse.Namespace])


def _read_safetensors(path: Path):
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: cannot read the safetensors file (truncated or corrupt?): {err}") from None
    if meta.get("format") != SAFETENSORS_FORMAT or "config" not in meta:
        raise CheckpointError(f"{path}: expected a soundedit generator (metadata format {SAFETENSORS_FORMAT!r} "
                              f"with a config), got metadata {sorted(meta)}")
    try:
        config = from_dict(GeneratorConfig, json.loads(meta["config"]))  # lists become tuples in __post_init__
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: invalid generator config in metadata: {err}") from None
    latent_avg = tensors.pop("latent_avg", None)
    return tensors, latent_avg, config


def infer_config(state: dict[str, torch.Tensor], *, source: str | os.PathLike = "checkpoint",
                 conv_clamp: float | None = None, lr_mlp: float = 0.01) -> GeneratorConfig:
    """Infer size, style_dim, n_mlp and feature-map widths from a rosinality state dict."""
    try:
        n_mlp = sum(1 for k in state if re.fullmatch(r"style\.\d+\.weight", k))
        style_dim = int(state["style.1.weight"].shape[1])
        n_up = sum(1 for k in state if re.fullmatch(r"to_rgbs\.\d+\.conv\.weight", k))
        channels = [int(state["conv1.conv.weight"].shape[1])]
        channels += [int(state[f"convs.{2 * k}.conv.weight"].shape[1]) for k in range(n_up)]
    except (KeyError, IndexError, AttributeError) as err:
        raise CheckpointError(f"{source}: not a rosinality StyleGAN2 generator state dict: missing or malformed "
                              f"key {err} (expected style.N.weight, conv1.conv.weight, convs.N.conv.weight, "
                              f"to_rgbs.N.conv.weight ...)") from None
    resolution = 4 * 2 ** n_up
    if resolution > 1024:
        raise CheckpointError(f"{source}: generator of {resolution} px is not supported (4..1024)")
    multiplier = next((m for m in (1, 2, 4, 8) if default_channels(resolution, m) == tuple(channels)), None)
    return GeneratorConfig(resolution=resolution, style_dim=style_dim, n_mlp=n_mlp,
                           channel_multiplier=multiplier or 2, channels=tuple(channels), conv_clamp=conv_clamp,
                           lr_mlp=lr_mlp)


def build_generator(state: dict[str, torch.Tensor], latent_avg: torch.Tensor | None, config: GeneratorConfig, *,
                    source: str | os.PathLike = "checkpoint", device: str | torch.device = "cpu") -> Generator:
    """A frozen, eval-mode :class:`Generator` holding ``state`` (strictly checked)."""
    G = Generator(config)
    check_state_dict(G, state, source=source)
    G.load_state_dict(state, strict=True)  # copies into the float32 parameters (half-precision files too)
    if latent_avg is not None:
        latent_avg = latent_avg.detach().float().reshape(-1)
        if latent_avg.numel() != config.style_dim:
            raise CheckpointError(f"{source}: latent_avg should have {config.style_dim} values, "
                                  f"got shape {tuple(latent_avg.shape)}")
        G.latent_avg = latent_avg
    # Parameters are frozen: edits optimise latents; gradients still flow to W+.
    return G.eval().requires_grad_(False).to(device)


def load_generator(path_or_name: str | os.PathLike, *, device: str | torch.device = "cpu") -> Generator:
    """Load a StyleGAN2 generator from a weights.lock name or a local file.

    Args:
        path_or_name: ``"ffhq-1024"``, ``"landscape-256"`` ..., or a rosinality ``.pt``, an
            NVIDIA ``.pkl`` or our ``.safetensors`` file.
        device: where to put it (loading itself never needs a GPU).

    Returns:
        Frozen :class:`Generator` in eval mode (``.n_latent``, ``.resolution``, ``.style_dim``).

    Raises:
        CheckpointError: the file is truncated, unsafe, or its keys/shapes do not fit.
        WeightsMissingError / InputError: an unknown name or a named file not in the cache.
    """
    from soundedit.weights import resolve

    path = resolve(path_or_name)
    state, latent_avg, config = read_generator_checkpoint(path)
    G = build_generator(state, latent_avg, config, source=path, device=device)
    logger.info("loaded %d px StyleGAN2 generator (n_latent %d) from %s", G.resolution, G.n_latent, path)
    return G


def save_generator(G: Generator, path: str | os.PathLike) -> Path:
    """Write ``G`` in our format: safetensors with the config (and latent_avg) as metadata.

    The mean latent is included (computed first when the source had none), so loading
    the file never recomputes it.
    """
    from safetensors.torch import save

    from soundedit.fileio import write_bytes

    tensors = {k: v.detach().cpu().contiguous() for k, v in G.state_dict().items()}
    tensors["latent_avg"] = G.mean_latent().detach().cpu().contiguous()
    meta = {"format": SAFETENSORS_FORMAT, "config": json.dumps(to_dict(G.config))}
    return write_bytes(path, save(tensors, metadata=meta))
