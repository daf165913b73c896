"""CLIP's joint embedding space, extended with sound.

:func:`load_clip_space` loads OpenAI's released CLIP weights (ViT-B/32 by default,
the paper's model) through open_clip — OpenAI's own ``clip`` package no longer
imports on current setuptools — and pairs CLIP with an audio encoder.
:class:`ClipSpace` then embeds text, images and sounds into the same
L2-normalised space:

* ``embed_text`` tokenises with CLIP's BPE tokenizer and averages over prompt
  templates (a template ensemble when more than one is given);
* ``embed_image`` takes generator output in [-1, 1] and is differentiable: one
  antialiased resize of the short side to the model's input size, a centre crop
  and CLIP's mean/std normalisation, i.e. CLIP's own preprocessing done on tensors
  (not the authors' 7x upsample followed by pooling);
* ``embed_audio`` goes through the paired :class:`AudioEncoder`.

CLIP's parameters are frozen (``requires_grad=False``) and it stays in eval mode;
the paired audio encoder is left as it is.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from soundedit.errors import CheckpointError, InputError, WeightsMissingError

logger = logging.getLogger("soundedit")

#: Default: the text as given, as the paper (and StyleCLIP) feed an edit's prompt to CLIP.
DEFAULT_TEMPLATES: tuple[str, ...] = ("{}",)
#: CLIP's usual single image prompt.
PHOTO_TEMPLATES: tuple[str, ...] = ("a photo of {}.",)
#: A small image-prompt ensemble (wordings from CLIP's ImageNet prompt set).
PHOTO_ENSEMBLE: tuple[str, ...] = ("a photo of {}.", "a photo of the {}.", "a bad photo of a {}.",
                                   "a good photo of the {}.", "a close-up photo of the {}.", "a rendering of a {}.")


class ClipSpace(nn.Module):
    """A frozen CLIP model plus an optional audio encoder, all mapping into one space.

    Attributes:
        model: the open_clip ``CLIP`` module (frozen, eval mode).
        audio_encoder: the paired :class:`AudioEncoder` or ``None``.
        embed_dim: size of the joint space (512 for ViT-B/32), read from the model.
        image_size: ``(H, W)`` the image tower takes, read from the model.
        templates: prompt templates ``embed_text`` uses by default.
        name: what was loaded (weights name or path), for logs and reports.
    """

    def __init__(self, model: nn.Module, tokenizer: Any, *, audio_encoder: nn.Module | None = None,
                 templates: Sequence[str] = DEFAULT_TEMPLATES, name: str = "") -> None:
        super().__init__()
        from open_clip import get_model_preprocess_cfg
        from open_clip.transform import PreprocessCfg

        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.tokenizer = tokenizer
        self.name = name
        self.templates = _check_templates(templates)
        self.embed_dim = int(model.text_projection.shape[-1]) if _has_tensor(model, "text_projection") \
            else int(model.visual.output_dim)
        fields = set(PreprocessCfg.__dataclass_fields__)
        cfg = PreprocessCfg(**{k: v for k, v in get_model_preprocess_cfg(model).items() if k in fields})
        size = cfg.size if isinstance(cfg.size, (tuple, list)) else (cfg.size, cfg.size)
        self.image_size: tuple[int, int] = (int(size[0]), int(size[1]))
        if cfg.resize_mode not in ("shortest", "squash"):
            raise CheckpointError(f"{name}: image resize mode {cfg.resize_mode!r} is not supported "
                                  f"(expected 'shortest' or 'squash')")
        if cfg.interpolation not in ("bicubic", "bilinear"):
            raise CheckpointError(f"{name}: image interpolation {cfg.interpolation!r} is not supported "
                                  f"(expected 'bicubic' or 'bilinear')")
        self._resize_mode = cfg.resize_mode
        self._interpolation = cfg.interpolation
        self.register_buffer("image_mean", torch.tensor(cfg.mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(cfg.std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.audio_encoder = None
        if audio_encoder is not None:
            self.pair_audio_encoder(audio_encoder)

    # -- properties ---------------------------------------------------------------------------

    @property
    def logit_scale(self) -> float:
        """CLIP's learned logit multiplier, ``exp(model.logit_scale)`` (100 for OpenAI CLIP = 1/τ)."""
        return float(self.model.logit_scale.detach().exp())

    @property
    def device(self) -> torch.device:
        return self.image_mean.device

    def train(self, mode: bool = True) -> "ClipSpace":
        """Switch the audio encoder's mode; CLIP itself always stays in eval mode."""
        super().train(mode)
        self.model.eval()
        return self

    def pair_audio_encoder(self, audio_encoder: nn.Module) -> None:
        """Attach an audio encoder; its ``embed_dim`` must equal CLIP's."""
        enc_dim = getattr(audio_encoder, "embed_dim", None)
        if enc_dim != self.embed_dim:
            raise InputError(f"audio_encoder: expected an encoder with embed_dim {self.embed_dim} "
                             f"(the CLIP model's {self.name or 'space'}), got embed_dim {enc_dim}")
        self.audio_encoder = audio_encoder.to(self.device)

    # -- text ---------------------------------------------------------------------------------

    def embed_text(self, texts: Sequence[str], *, templates: Sequence[str] | None = None) -> torch.Tensor:
        """Embed texts through prompt templates.

        Args:
            texts: N strings, e.g. ``["rain", "a dog barking"]``.
            templates: format strings with one ``{}`` (or ``{label}``, as in
                :mod:`soundedit.text.templates`) where the text goes (default:
                ``self.templates``, the text as given); with several (e.g.
                :data:`PHOTO_ENSEMBLE`), each text's embedding is the normalised mean
                of its prompts' embeddings.

        Returns:
            ``(N, embed_dim)`` unit-norm embeddings (no gradient: CLIP is frozen).
        """
        if isinstance(texts, str) or not isinstance(texts, Sequence) or not texts \
                or not all(isinstance(t, str) for t in texts):
            raise InputError(f"texts: expected a non-empty list of strings, got {texts!r:.80}")
        temps = self.templates if templates is None else _check_templates(templates)
        prompts = [tpl.replace("{label}", "{}").format(text) for text in texts for tpl in temps]  # (N * T), text-major
        tokens = self.tokenizer(prompts)
        for prompt in (p for p, row in zip(prompts, tokens) if row[-1] != 0 and self._cut(p, len(row))):
            logger.warning("text %r is longer than CLIP's %d-token context; words past it are ignored",
                           prompt, tokens.shape[1])
        tokens = tokens.to(self.device)
        emb = F.normalize(self.model.encode_text(tokens).float(), dim=-1)
        emb = emb.view(len(texts), len(temps), -1).mean(dim=1)  # template ensemble
        return F.normalize(emb, dim=-1)

    def _cut(self, prompt: str, context: int) -> bool:
        """Whether the tokenizer cut ``prompt`` (its row was filled to the end): with BPE ``encode``
        (open_clip's SimpleTokenizer) count the tokens plus start/end; otherwise a full row is taken as cut."""
        encode = getattr(self.tokenizer, "encode", None)
        return len(encode(prompt)) + 2 > context if callable(encode) else True

    # -- images -------------------------------------------------------------------------------

    def image_input(self, img: torch.Tensor) -> torch.Tensor:
        """CLIP's preprocessing on a tensor, differentiably.

        Args:
            img: ``(N, 3, H, W)`` in [-1, 1] (generator output; not clamped, so gradients
                also flow where it overshoots).

        Returns:
            ``(N, 3, *image_size)`` normalised with CLIP's mean/std: one antialiased resize
            (short side to the input size, then a centre crop — CLIP's own transform) or a
            plain resize to the input size for models that squash.
        """
        if not isinstance(img, torch.Tensor) or img.ndim != 4 or img.shape[1] != 3:
            got = tuple(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__
            raise InputError(f"image: expected a (N, 3, H, W) tensor in [-1, 1], got {got}")
        x = (img.to(self.device, torch.float32) + 1) / 2  # [-1, 1] -> [0, 1] like ToTensor
        th, tw = self.image_size
        h, w = x.shape[-2:]
        if self._resize_mode == "shortest" and th == tw:
            # torchvision Resize(int): short side -> size, long side int(size * long / short)
            short, long = (h, w) if h <= w else (w, h)
            new_short, new_long = th, int(th * long / short)
            new_h, new_w = (new_short, new_long) if h <= w else (new_long, new_short)
        else:
            new_h, new_w = th, tw
        if (new_h, new_w) != (h, w):
            x = F.interpolate(x, size=(new_h, new_w), mode=self._interpolation, align_corners=False, antialias=True)
        top, left = int(round((new_h - th) / 2.0)), int(round((new_w - tw) / 2.0))  # torchvision CenterCrop
        x = x[..., top:top + th, left:left + tw]
        return (x - self.image_mean) / self.image_std

    def embed_image(self, img: torch.Tensor) -> torch.Tensor:
        """Embed generator images; differentiable with respect to ``img``.

        Args:
            img: ``(N, 3, H, W)`` in [-1, 1].

        Returns:
            ``(N, embed_dim)`` unit-norm embeddings.
        """
        return F.normalize(self.model.encode_image(self.image_input(img)).float(), dim=-1)

    # -- audio --------------------------------------------------------------------------------

    def embed_audio(self, audio: Any) -> torch.Tensor:
        """Embed sounds through the paired audio encoder.

        Args:
            audio: a path, file bytes, a ``Waveform`` or a list of them (prepared by the
                encoder for its layout), or an already prepared ``(N, 1, n_mels, frames)``
                model-input tensor.

        Returns:
            ``(N, embed_dim)`` unit-norm embeddings (gradients reach the encoder's weights).
        """
        if self.audio_encoder is None:
            raise InputError("embed_audio: this CLIP space has no audio encoder; "
                             "pass audio_encoder=... to load_clip_space")
        x = audio if isinstance(audio, torch.Tensor) else self.audio_encoder.prepare(audio, device=self.device)
        return F.normalize(self.audio_encoder(x.to(self.device)).float(), dim=-1)


def _has_tensor(module: nn.Module, name: str) -> bool:
    return isinstance(getattr(module, name, None), torch.Tensor)


def _check_templates(templates: Sequence[str]) -> tuple[str, ...]:
    if isinstance(templates, str) or not templates:
        raise InputError(f"templates: expected a non-empty list of strings with one '{{}}', got {templates!r}")
    bad = [t for t in templates if not isinstance(t, str) or t.count("{}") + t.count("{label}") != 1]
    if bad:
        raise InputError(f"templates: each needs exactly one '{{}}' (or '{{label}}') where the text goes, got {bad!r}")
    return tuple(templates)


# ----------------------------------------------------------------------------------------------
# loading


def load_clip_space(name_or_path: str | os.PathLike = "clip-vit-b-32", *, audio_encoder: Any = None,
                    device: str | torch.device = "cpu", model_name: str | None = None,
                    templates: Sequence[str] = DEFAULT_TEMPLATES) -> ClipSpace:
    """Load CLIP (and optionally an audio encoder) as a :class:`ClipSpace`.

    Args:
        name_or_path: a weights.lock name (default ``"clip-vit-b-32"``, OpenAI's
            ``ViT-B-32.pt``) or a local file. Without ``model_name`` the file is in
            OpenAI's release layout — a TorchScript archive or a plain state dict — and
            the architecture is read from its tensors.
        audio_encoder: an :class:`AudioEncoder`, or a name/path for
            :func:`load_audio_encoder`, or ``None`` (then ``embed_audio`` is unavailable).
        device: where the models go (``"auto"``, ``"cpu"``, ``"cuda"``, ... or a ``torch.device``).
        model_name: an open_clip architecture name (e.g. ``"ViT-B-16"``) when the file is
            an open_clip checkpoint instead of an OpenAI one. Loading never contacts the
            Hugging Face hub for a local file.
        templates: default prompt templates of ``embed_text``.

    Returns:
        A frozen :class:`ClipSpace` on ``device``.

    Raises:
        CheckpointError: the file is not a CLIP checkpoint of the expected layout.
        WeightsMissingError / InputError: from name resolution.
    """
    from soundedit.runtime import resolve_device

    device = resolve_device(device)
    from soundedit.weights import resolve

    path = resolve(name_or_path)
    if model_name is None:
        model = _load_openai_layout(path)
        tokenizer = _openai_tokenizer(model, path)
    else:
        model, tokenizer = _load_open_clip(model_name, path)
    space = ClipSpace(model, tokenizer, templates=templates, name=str(name_or_path)).to(device)
    logger.info("%s: CLIP with %dx%d image input, %d-d joint space", path, *space.image_size, space.embed_dim)
    if audio_encoder is not None:
        if not isinstance(audio_encoder, nn.Module):
            from soundedit.models.audio_encoder import load_audio_encoder

            audio_encoder = load_audio_encoder(audio_encoder, device=device)
        space.pair_audio_encoder(audio_encoder)  # moved to the space's device
    return space


def _load_openai_layout(path: Path) -> nn.Module:
    """OpenAI's ``.pt`` (TorchScript archive or plain state dict) -> open_clip ``CLIP`` in fp32."""
    from open_clip.model import build_model_from_openai_state_dict

    from soundedit.models.checkpoint import load_torch, sniff_file

    state = None
    if sniff_file(path) == "torch":  # TorchScript archives are zips; anything else is refused by load_torch
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated but is OpenAI's format
            try:
                # Only the tensors of the archive are used; none of its TorchScript code is run.
                state = {k: v for k, v in torch.jit.load(str(path), map_location="cpu").state_dict().items()}
            except (RuntimeError, ValueError):
                state = None  # not a TorchScript archive: a plain state dict then
    if state is None:
        state = load_torch(path, what="a CLIP checkpoint (OpenAI's TorchScript .pt or a state dict)")
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = {k.removeprefix("module."): v for k, v in state["state_dict"].items()}
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a CLIP state dict of tensors in OpenAI's layout, got {type(state).__name__}")
    required = ["text_projection", "positional_embedding", "token_embedding.weight", "ln_final.weight", "logit_scale"]
    missing = [k for k in required if k not in state]
    if missing or not ("visual.proj" in state or "visual.attnpool.positional_embedding" in state):
        raise CheckpointError(f"{path}: expected OpenAI's CLIP layout (keys like 'visual.proj', "
                              f"'token_embedding.weight', 'text_projection'); missing {missing or ['visual.proj']}")
    try:
        model = build_model_from_openai_state_dict(state)
    except (KeyError, RuntimeError, AssertionError) as exc:
        raise CheckpointError(f"{path}: OpenAI CLIP layout with keys/shapes that do not fit the architecture "
                              f"read from it: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
    return model.float().eval()


def _openai_tokenizer(model: nn.Module, path: Path):
    from open_clip.tokenizer import SimpleTokenizer

    tokenizer = SimpleTokenizer(context_length=model.context_length)
    if len(tokenizer.encoder) != model.vocab_size:
        raise CheckpointError(f"{path}: token embedding has {model.vocab_size} rows, expected CLIP's BPE "
                              f"vocabulary of {len(tokenizer.encoder)}")
    return tokenizer


@contextlib.contextmanager
def _hub_offline():
    """Keep Hugging Face libraries offline while a local file is loaded, then restore their setting.

    huggingface_hub reads ``HF_HUB_OFFLINE`` once, at import, so besides the variable
    (for a first import inside this block) its already-imported constant is set too.
    """
    import sys

    old_env = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    old_const = getattr(constants, "HF_HUB_OFFLINE", None)
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        if old_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old_env
        if constants is not None:
            constants.HF_HUB_OFFLINE = old_const


def _load_open_clip(model_name: str, path: Path):
    import open_clip

    if model_name.startswith(("hf-hub:", "local-dir:")):
        raise InputError(f"model_name: expected an open_clip architecture name (see open_clip.list_models()), "
                         f"got {model_name!r}; pass the weights file as name_or_path")
    if model_name not in open_clip.list_models():
        raise InputError(f"model_name: {model_name!r} is not an open_clip architecture "
                         f"(e.g. {', '.join(open_clip.list_models()[:3])} ...)")
    with _hub_offline():
        try:
            model = open_clip.create_model(model_name, pretrained=str(path), device="cpu")
            tokenizer = open_clip.get_tokenizer(model_name)
        except (RuntimeError, KeyError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
            raise CheckpointError(f"{path}: does not load as open_clip {model_name!r}: "
                                  f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
        except OSError as exc:  # a tokenizer/config that would need the Hugging Face hub
            raise WeightsMissingError(f"open_clip {model_name!r} needs files from the Hugging Face hub, which "
                                      f"is not used offline: {exc}") from exc
    return model.float().eval(), tokenizer
