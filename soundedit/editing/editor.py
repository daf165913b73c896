"""The ``Editor`` facade: models loaded once, then ``edit``/``mix`` with sounds, text and sources.

    editor = Editor.from_pretrained(generator="landscape-256", audio_encoder="authors-resnet18")
    result = editor.edit(audio="rain.wav", source=3)        # seed 3, scenes preset
    result.save("out/rain")

Settings come from :class:`~soundedit.config.EditConfig`, then the domain preset
(``faces``/``scenes``/``art``), then the keyword arguments of each call.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch

from soundedit.config import EditConfig
from soundedit.editing.mixing import interpolate as interpolate_codes
from soundedit.editing.mixing import check_interpolate, parse_layers, style_mix
from soundedit.editing.optimize import Callback, optimize_latent
from soundedit.editing.presets import resolve_config
from soundedit.editing.result import EditResult, MixResult
from soundedit.editing.schedules import RampSchedule
from soundedit.editing.sources import check_one_code, is_latent_file, resolve_source
from soundedit.editing.targets import build_target
from soundedit.errors import InputError

logger = logging.getLogger("soundedit")

_SETTINGS = {f.name for f in dataclasses.fields(EditConfig)}


class Editor:
    """Sound- and text-guided editing with one generator, CLIP space and (for faces) identity net.

    Args:
        generator: a loaded StyleGAN2 ``Generator``.
        clip_space: a ``ClipSpace`` with an audio encoder (``embed_image/embed_text/embed_audio``).
        identity: an ``IdentityNet``, or a weights.lock name/path loaded the first time an
            edit uses ``lambda_id > 0``, or ``None``.
        config: default settings.
        names: names of the models (for reports and the default preset), e.g.
            ``{"generator": "ffhq-1024"}``.
    """

    def __init__(self, generator: torch.nn.Module, clip_space: Any, *, identity: Any = None,
                 config: EditConfig | None = None, names: dict[str, str] | None = None) -> None:
        self.generator = generator.eval()
        self.clip_space = clip_space
        self._identity = identity
        self.config = config or EditConfig()
        self.names = dict(names or {})

    @classmethod
    def from_pretrained(cls, *, generator: str = "ffhq-1024", audio_encoder: str = "authors-resnet18",
                        clip: str = "clip-vit-b-32", identity: str | None = "ir-se50", device: str = "auto",
                        config: EditConfig | None = None) -> "Editor":
        """Load the models by weights.lock name or path.

        All checkpoints are located (cache or download) before any is loaded, so a
        missing one fails within seconds with the fetch instructions.  The identity
        net is only loaded when an edit uses it (``lambda_id > 0``).

        Raises:
            WeightsMissingError: a named checkpoint is not cached and cannot be fetched.
            InputError: an unknown name or a path that does not exist.
        """
        from soundedit.models import load_audio_encoder, load_clip_space, load_generator
        from soundedit.runtime import resolve_device
        from soundedit.weights import resolve

        dev = resolve_device(device)
        for name in (generator, audio_encoder, clip):
            resolve(name)
        encoder = load_audio_encoder(audio_encoder, device=dev).eval()
        clip_space = load_clip_space(clip, audio_encoder=encoder, device=dev)
        gen = load_generator(generator, device=dev)
        names = {"generator": str(generator), "audio_encoder": str(audio_encoder), "clip": str(clip)}
        if identity is not None:
            names["identity"] = str(identity)
        return cls(gen, clip_space, identity=identity, config=config, names=names)

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device

    # ------------------------------------------------------------------ settings
    def settings(self, **overrides: Any) -> tuple[EditConfig, dict[str, Any]]:
        """The effective config for one call: defaults, then preset, then ``overrides`` (``None`` = keep).

        Returns:
            ``(config with lambda_sim/lambda_id filled in, JSON-able dict of it)``.

        Raises:
            InputError: an unknown setting name or preset.
        """
        unknown = sorted(set(overrides) - _SETTINGS)
        if unknown:
            raise InputError(f"edit: unknown settings {unknown}; expected some of {sorted(_SETTINGS)}")
        cfg = resolve_config(self.config, self.names.get("generator"), **overrides)
        return cfg, dataclasses.asdict(cfg)

    def identity_net(self) -> torch.nn.Module:
        """The identity net, loaded on first use from the name/path given at construction."""
        if self._identity is None:
            raise InputError("lambda_id > 0 needs an identity network: pass identity='ir-se50' (or a path), "
                             "or set lambda_id=0")
        if isinstance(self._identity, torch.nn.Module):
            return self._identity
        from soundedit.models import load_identity_net

        self._identity = load_identity_net(self._identity, device=self.device).eval()
        return self._identity

    def _identity_for(self, lambda_id: float) -> torch.nn.Module | None:
        """The identity net for an edit: loaded when the loss uses it; passed along when already
        loaded anyway, so the report gets the identity cosine (costs one forward pass)."""
        if lambda_id > 0:
            return self.identity_net()
        return self._identity if isinstance(self._identity, torch.nn.Module) else None

    # ------------------------------------------------------------------ edits
    def edit(self, audio: Any = None, text: str | None = None, source: Any = None, *,
             gains_db: list[float] | None = None, audio_weight: float = 1.0, text_weight: float = 1.0,
             free: bool = False, callback: Callback | None = None, **settings: Any) -> EditResult:
        """Edit one source towards a sound, a text, or both.

        Args:
            audio: a sound (path, bytes or ``Waveform``) or a list of sounds to mix.
            text: a prompt (alone, or combined with the sound).
            source: ``int`` seed, W/W+ tensor, ``.pt``/``.npy`` code or photo path (see
                :func:`~soundedit.editing.sources.resolve_source`).
            gains_db: one gain per sound when mixing.
            audio_weight, text_weight: weights of a sound+text target.
            free: free generation from the mean latent (no regulariser, no source).
            callback: per-step ``callback(step, losses)``.
            **settings: :class:`EditConfig` fields (``steps``, ``lr``, ``lambda_sim``,
                ``lambda_id``, ``preset``, ``layer_mask``, ``truncation``, ``frame_every`` ...).

        Returns:
            an :class:`EditResult` (one item per code in the source).
        """
        job = {"audio": audio, "text": text, "source": source, "gains_db": gains_db,
               "audio_weight": audio_weight, "text_weight": text_weight}
        return self.edit_many([job], free=free, callback=callback, **settings)

    def edit_many(self, jobs: list[dict[str, Any]], *, free: bool = False, callback: Callback | None = None,
                  **settings: Any) -> EditResult:
        """Run several edits as one batch (same settings; per-item targets and sources).

        Args:
            jobs: dicts with the keyword arguments of :meth:`edit` (``audio``, ``text``, ``source``,
                ``gains_db``, ``audio_weight``, ``text_weight``).
            free, callback, **settings: as in :meth:`edit`, shared by all jobs.

        Returns:
            one :class:`EditResult` whose items follow the jobs' order; ``meta`` holds
            per-item ``label``, ``source`` and ``target`` descriptions.
        """
        if not jobs:
            raise InputError("edit_many: expected at least one job, got none")
        cfg, cfg_dict = self.settings(**settings)
        lambda_sim, lambda_id = (0.0, 0.0) if free else (cfg.lambda_sim, cfg.lambda_id)
        targets, codes, meta = [], [], {"label": [], "source": [], "target": []}
        resolved: dict = {}  # each distinct named source resolved once (mix edits one photo twice)
        for job in jobs:
            unknown = sorted(set(job) - {"audio", "text", "source", "gains_db", "audio_weight", "text_weight"})
            if unknown:
                raise InputError(f"edit job: unknown keys {unknown}")
            # a photo source is face-aligned only for face generators (others are centre-cropped),
            # as `soundedit edit IMAGE` does
            source = job.get("source")
            key = (type(source), source) if source is None or isinstance(source, (str, int, Path)) else None
            src = resolved.get(key) if key is not None else None
            if src is None:
                src = resolve_source(self.generator, source, truncation=cfg.truncation, free=free,
                                     inversion={"align": cfg.preset == "faces"})
                if key is not None:
                    resolved[key] = src
            target, info = build_target(self.clip_space, audio=job.get("audio"), gains_db=job.get("gains_db"),
                                        text=job.get("text"), audio_weight=job.get("audio_weight", 1.0),
                                        text_weight=job.get("text_weight", 1.0))
            n = src.w_plus.shape[0]
            codes.append(src.w_plus)
            targets.append(target.expand(n, -1))
            meta["label"] += [info["label"]] * n
            meta["source"] += [src.info] * n
            meta["target"] += [info] * n
        result = optimize_latent(
            self.generator, self.clip_space, torch.cat(targets), torch.cat(codes),
            steps=cfg.steps, lr=cfg.lr, lambda_sim=lambda_sim, lambda_id=lambda_id,
            layer_mask=cfg.layer_mask, identity=self._identity_for(lambda_id),
            schedule=RampSchedule(rampup=cfg.lr_rampup, rampdown=cfg.lr_rampdown), noise=cfg.noise,
            max_gate_ratio=cfg.max_gate_ratio, frame_every=cfg.frame_every, callback=callback)
        result.settings = {**cfg_dict, **result.settings, "free": free}
        result.meta = {**meta, "models": dict(self.names), "device": str(self.device)}
        return result

    def mix(self, audio: Any = None, text: str | None = None, source: Any = None, *,
            gains_db: list[float] | None = None, layers: str | list[str] | None = None, interpolate: int = 0,
            free: bool = False, callback: Callback | None = None, **settings: Any) -> MixResult:
        """Sound-guided and text-guided edits of one source, mixed by W+ layer range.

        Both edits run as one batch of two.  The mixed code takes each layer from
        the code ``layers`` names (default: sound on the first 9/18 of the layers,
        text on the rest); ``interpolate=n`` also renders n codes from the
        sound-guided to the text-guided one.

        Returns:
            a :class:`MixResult`.
        """
        if audio is None or not text:
            raise InputError("mix: expected both a sound (--sound) and a text (--text)")
        check_interpolate(interpolate)  # before the two edits run
        n_latent = int(self.generator.n_latent)
        assignment = layers if isinstance(layers, list) else parse_layers(layers, n_latent)
        if len(assignment) != n_latent:
            raise InputError(f"mix: expected {n_latent} layer names, got {len(assignment)}")
        _check_single_code(self.generator, source)  # before the two edits run
        jobs = [{"audio": audio, "gains_db": gains_db, "source": source}, {"text": text, "source": source}]
        edits = self.edit_many(jobs, free=free, callback=callback, **settings)
        codes = {"sound": edits.w_plus[0:1], "text": edits.w_plus[1:2], "source": edits.w_source[0:1]}
        mixed = style_mix(codes, assignment)
        with torch.no_grad():
            image = self.generator.synthesize(mixed.to(self.device), noise=edits.settings["noise"]).cpu()
            frames = None
            if interpolate:
                path = interpolate_codes(codes["sound"], codes["text"], interpolate).squeeze(1)
                frames = torch.cat([self.generator.synthesize(chunk.to(self.device), noise=edits.settings["noise"]).cpu()
                                    for chunk in path.split(4)])
            embedding = self.clip_space.embed_image(image.to(self.device)).cpu()
        metrics = {"sound_cosine": torch.cosine_similarity(embedding, edits.target[0:1], dim=-1),
                   "text_cosine": torch.cosine_similarity(embedding, edits.target[1:2], dim=-1)}
        return MixResult(edits=edits, w_plus=mixed, image=image, layers=assignment, interpolation=frames,
                         metrics=metrics)


#: what a mix's source must hold (one code: the two edits start from it)
ONE_CODE_FOR_A_MIX = "one code (a mix edits one source)"


def _check_single_code(generator: torch.nn.Module, source: Any) -> None:
    """A mix edits one source: a saved code or tensor holding several is refused before any optimisation
    (seeds and photos are one code each)."""
    if isinstance(source, torch.Tensor) or is_latent_file(source):
        check_one_code(source, "mix source", generator, expected=ONE_CODE_FOR_A_MIX)
