"""Audio encoders that map a sound into CLIP's joint embedding space.

Two layouts share one module, :class:`AudioEncoder`:

* ``official`` — the paper authors' released encoder (``resnet18_57.pth``): a
  ``Conv2d(1, 3, 3x3)`` named ``conv`` (no padding, stride 1, so 128x512 becomes
  126x510) in front of a timm ``resnet18`` with 512 outputs named
  ``feature_extractor``.  It only works on the authors' scrambled
  ``(1, 128, 512)`` input (:func:`soundedit.audio.official_model_input`), which
  is what it was trained on.
* ``clean`` — our own encoders for training: a timm ResNet (``resnet50`` as in
  the paper, or any timm ResNet) whose stem takes one channel, applied to the
  clean ``(1, n_mels, frames)`` log-mel of :class:`soundedit.audio.features.LogMel`.

The state dict of an ``AudioEncoder`` is exactly the authors' key layout
(``conv.*`` + ``feature_extractor.*``; the clean layout has no ``conv``), so the
authors' file loads without renaming.  Our checkpoints are self-describing:
safetensors weights with the :class:`~soundedit.config.EncoderConfig` as JSON in
the file's metadata (:func:`save_audio_encoder`), loaded by the same
:func:`load_audio_encoder`.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from soundedit.config import AudioConfig, EncoderConfig, from_dict, to_dict
from soundedit.errors import CheckpointError, InputError

logger = logging.getLogger("soundedit")

#: Value of the ``format`` entry in the safetensors metadata of our checkpoints.
CHECKPOINT_FORMAT = "soundedit.audio_encoder"
CHECKPOINT_VERSION = "1"

#: The authors' transform gives exactly this input (batch, channel, rows, cols).
OFFICIAL_INPUT_SHAPE = (1, 128, 512)

# (blocks per stage, bottleneck?) -> timm name, to rebuild an authors'-layout file
# from its keys alone (their release is resnet18, but the code takes any depth).
_RESNET_BY_STRUCTURE = {
    ((2, 2, 2, 2), False): "resnet18",
    ((3, 4, 6, 3), False): "resnet34",
    ((3, 4, 6, 3), True): "resnet50",
    ((3, 4, 23, 3), True): "resnet101",
    ((3, 8, 36, 3), True): "resnet152",
}


class AudioEncoder(nn.Module):
    """Log-mel (or the authors' scrambled input) -> an embedding in CLIP space.

    Build one with :func:`build_audio_encoder` or load one with
    :func:`load_audio_encoder`.

    Attributes:
        config: the :class:`EncoderConfig` that built it (arch, embed_dim, layout, audio).
        embed_dim: output size (512 for CLIP ViT-B/32).
        conv: the authors' ``Conv2d(1, 3, 3)`` stem (``official`` layout) or ``nn.Identity``.
        feature_extractor: the timm ResNet.
    """

    def __init__(self, config: EncoderConfig, *, pretrained_file: str | os.PathLike | None = None) -> None:
        super().__init__()
        import timm

        self.config = config
        self.embed_dim = config.embed_dim
        official = config.layout == "official"
        kwargs: dict[str, Any] = {"num_classes": config.embed_dim, "in_chans": 3 if official else 1}
        if pretrained_file is not None:
            # A local timm weight file only (never a hub download); timm sums the RGB
            # stem filters into one channel and drops the ImageNet classifier.
            path = Path(pretrained_file)
            if not path.is_file():
                raise InputError(f"pretrained_file: expected a local timm weight file for {config.arch}, got {str(path)!r} (not a file)")
            kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(path)})
        try:
            backbone = timm.create_model(config.arch, **kwargs)
        except RuntimeError as exc:  # timm: unknown model name, or weights that do not fit
            raise InputError(f"audio encoder arch {config.arch!r}: {exc}") from exc
        # Authors: Conv2d(1, 3, (3, 3)) with PyTorch defaults (stride 1, no padding).
        self.conv: nn.Module = nn.Conv2d(1, 3, (3, 3)) if official else nn.Identity()
        self.feature_extractor = backbone
        # Channels-last convolution weights make the activations channels-last too (a 1-channel input
        # cannot say which it is): oneDNN runs the ResNets 25 % (train step) to 38 % (forward) faster so
        # on 2 CPU cores, and it is cuDNN's native layout. load_state_dict copies into these tensors;
        # save_audio_encoder writes contiguous copies.
        self.to(memory_format=torch.channels_last)
        self._frontends: dict[str, nn.Module] = {}  # LogMel per device, not part of the state dict

    @property
    def layout(self) -> str:
        """``"official"`` (authors' scrambled input) or ``"clean"`` (log-mel)."""
        return self.config.layout

    @property
    def sample_rate(self) -> int:
        """Sample rate (Hz) the encoder's input is computed at."""
        return self.config.audio.sample_rate

    def forward(self, model_input: torch.Tensor) -> torch.Tensor:
        """Embed a batch of prepared inputs.

        Args:
            model_input: ``(N, 1, n_mels, frames)`` log-mel for the clean layout, or
                ``(N, 1, 128, 512)`` from :func:`soundedit.audio.official_model_input`
                for the official layout (see :meth:`prepare`).

        Returns:
            ``(N, embed_dim)`` embeddings, not normalised (CLIP space normalises).
        """
        self._check_input(model_input)
        return self.feature_extractor(self.conv(model_input))

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 1:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise InputError(f"audio encoder input: expected a (N, 1, n_mels, frames) tensor, got {got}")
        if self.layout == "official" and tuple(x.shape[1:]) != OFFICIAL_INPUT_SHAPE:
            raise InputError(
                f"audio encoder input: the authors' layout expects (N, {', '.join(map(str, OFFICIAL_INPUT_SHAPE))}) "
                f"from soundedit.audio.official_model_input, got {tuple(x.shape)}")
        if self.layout == "clean" and x.shape[2] != self.config.audio.n_mels:
            raise InputError(f"audio encoder input: expected {self.config.audio.n_mels} mel bins "
                             f"(N, 1, {self.config.audio.n_mels}, frames), got {tuple(x.shape)}")

    def prepare(self, audio: Any, *, device: str | torch.device | None = None) -> torch.Tensor:
        """Turn audio into this encoder's model input, batched.

        Args:
            audio: a path, raw file bytes, a :class:`soundedit.audio.Waveform`, or a
                list of them (one batch row each).
            device: where the result goes (default: the encoder's device).

        Returns:
            ``(N, 1, n_mels, frames)`` float32.  Clean layout: resampled to
            ``config.audio.sample_rate``, mono, cut/padded to ``config.audio.duration``
            by the config's deterministic crop/pad policy, then :class:`LogMel`.
            Official layout: the authors' exact transform
            (:func:`soundedit.audio.official_model_input`), ``(N, 1, 128, 512)``.

        Raises:
            AudioError: a file that cannot be decoded, or that is shorter than one STFT window
                of the front end (``n_fft`` samples at its sample rate, 46 ms for the paper's).
        """
        from soundedit.audio.features import LogMel, official_model_input, prepare_clips

        items = list(audio) if isinstance(audio, (list, tuple)) else [audio]
        if not items:
            raise InputError("audio: expected at least one clip, got an empty list")
        device = torch.device(device) if device is not None else next(self.parameters()).device
        cfg = self.config.audio
        # A file shorter than one STFT window is all padding to the front end (one sample embedded
        # like any sound): refused, so embed/classify report it as a failed file, not a vector.
        # Short clips that fill a window (dataset clips can be short) are kept.
        min_duration = cfg.n_fft / cfg.sample_rate
        if self.layout == "official":  # a Waveform named by its position, as prepare_clips names them
            return torch.cat([official_model_input(item, crop=cfg.crop, device=device, min_duration=min_duration,
                                                   name=f"clip {i + 1}") for i, item in enumerate(items)])
        waves = prepare_clips(items, cfg, device=device, min_duration=min_duration)  # (N, n) mono, fixed length
        key = str(device)
        if key not in self._frontends:
            self._frontends[key] = LogMel(cfg).to(device).eval()
        with torch.no_grad():
            mel = self._frontends[key](waves)  # (N, n_mels, frames)
        return mel.unsqueeze(1)  # one input channel for the 1-channel stem


# ----------------------------------------------------------------------------------------------
# building, saving, loading


def build_audio_encoder(config: EncoderConfig | None = None, *, pretrained_file: str | os.PathLike | None = None,
                        device: str | torch.device = "cpu") -> AudioEncoder:
    """A fresh encoder for ``config`` (training starts here).

    Args:
        config: architecture, embed_dim, layout and audio settings (default: the paper's
            resnet50 on 128-bin log-mel, 512-d, clean layout).
        pretrained_file: a local timm weight file (``.safetensors``/``.pth``) for an
            ImageNet start; its RGB stem is summed into one channel. Never downloaded.
        device: where the module goes.

    Returns:
        An :class:`AudioEncoder` in train mode.
    """
    return AudioEncoder(config or EncoderConfig(), pretrained_file=pretrained_file).to(device)


def save_audio_encoder(encoder: AudioEncoder, path: str | os.PathLike) -> Path:
    """Write ``encoder`` as safetensors with its config in the metadata (atomically).

    Returns:
        The path written; :func:`load_audio_encoder` rebuilds the encoder from it alone.
    """
    from safetensors.torch import save

    from soundedit.fileio import write_bytes

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in encoder.state_dict().items()}
    metadata = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
                "config": json.dumps(to_dict(encoder.config))}
    return write_bytes(path, save(tensors, metadata=metadata))


def load_audio_encoder(path_or_name: str | os.PathLike, *, device: str | torch.device = "cpu") -> AudioEncoder:
    """Load an audio encoder: the authors' checkpoint or one of ours.

    Args:
        path_or_name: a weights.lock name (e.g. ``"authors-resnet18"``), the authors'
            ``.pth`` state dict (with or without DataParallel's ``module.`` prefix), or
            our ``.safetensors`` written by :func:`save_audio_encoder`.
        device: where the module goes (``"auto"``, ``"cpu"``, ``"cuda"``, ... or a ``torch.device``).

    Returns:
        An :class:`AudioEncoder` in eval mode; ``.config.layout`` says which input it takes.

    Raises:
        CheckpointError: the file is not a checkpoint, or its keys/shapes do not fit
            either layout (the message names the file and what was expected).
        WeightsMissingError / InputError: from name resolution (see ``soundedit.weights``).
    """
    from soundedit.runtime import resolve_device

    device = resolve_device(device)
    from soundedit.weights import resolve

    path = resolve(path_or_name)
    from soundedit.models.checkpoint import sniff_file

    if sniff_file(path) == "safetensors":
        encoder = _load_ours(path)
    else:
        encoder = _load_official(path)
    return encoder.to(device).eval()


def _load_ours(path: Path) -> AudioEncoder:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    if metadata.get("format") != CHECKPOINT_FORMAT or "config" not in metadata:
        raise CheckpointError(f"{path}: expected a soundedit audio encoder (safetensors with format="
                              f"{CHECKPOINT_FORMAT!r} and an EncoderConfig in its metadata), "
                              f"got metadata keys {sorted(metadata)}")
    try:
        config = from_dict(EncoderConfig, json.loads(metadata["config"]))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: bad EncoderConfig in metadata: {exc}") from exc
    encoder = AudioEncoder(config)
    _load_state(encoder, tensors, path, f"a {config.layout}-layout {config.arch} encoder")
    return encoder


def _load_official(path: Path) -> AudioEncoder:
    from soundedit.models.checkpoint import load_torch

    obj = load_torch(path, what="an audio encoder checkpoint (the authors' .pth or our .safetensors)")
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected the authors' audio encoder state dict (tensors keyed "
                              f"'[module.]conv.*' and '[module.]feature_extractor.*'), got {type(obj).__name__}")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}
    expected = "the authors' layout (Conv2d(1,3,3x3) 'conv' + timm ResNet 'feature_extractor')"
    conv_w = state.get("conv.weight")
    fc_w = state.get("feature_extractor.fc.weight")
    if conv_w is None or fc_w is None:
        raise CheckpointError(f"{path}: expected {expected}; missing "
                              f"{[k for k in ('conv.weight', 'feature_extractor.fc.weight') if k not in state]} "
                              f"(keys start {sorted(state)[:4]})")
    if tuple(conv_w.shape) != (3, 1, 3, 3) or fc_w.ndim != 2:
        raise CheckpointError(f"{path}: expected {expected}: conv.weight (3, 1, 3, 3) and a 2-D fc.weight, "
                              f"got {tuple(conv_w.shape)} and {tuple(fc_w.shape)}")
    arch = _infer_resnet(state, path)
    config = EncoderConfig(arch=arch, embed_dim=int(fc_w.shape[0]), layout="official",
                           audio=AudioConfig(sample_rate=44100, n_fft=2048, hop_length=512, n_mels=128))
    encoder = AudioEncoder(config)
    _load_state(encoder, state, path, f"the authors' layout ({arch}, {config.embed_dim} outputs)")
    logger.info("%s: authors' audio encoder layout (%s, %d outputs)", path, arch, config.embed_dim)
    return encoder


def _infer_resnet(state: dict[str, torch.Tensor], path: Path) -> str:
    blocks = []
    for stage in range(1, 5):
        ids = {int(m.group(1)) for k in state if (m := re.match(rf"feature_extractor\.layer{stage}\.(\d+)\.", k))}
        blocks.append(len(ids))
    bottleneck = "feature_extractor.layer1.0.conv3.weight" in state
    arch = _RESNET_BY_STRUCTURE.get((tuple(blocks), bottleneck))
    if arch is None:
        raise CheckpointError(f"{path}: feature_extractor is not a timm ResNet-18/34/50/101/152 "
                              f"(blocks per stage {blocks}, bottleneck={bottleneck})")
    return arch


def _load_state(encoder: AudioEncoder, state: dict[str, torch.Tensor], path: Path, what: str) -> None:
    from soundedit.models.checkpoint import check_state_dict

    check_state_dict(encoder, state, source=path, what=what)
    encoder.load_state_dict(state, strict=True)
