"""Configuration dataclasses.

Every checkpoint soundedit writes carries the config that built it (as JSON next
to the safetensors weights), so a file alone is enough to rebuild its model.
Each class is owned by the subsystem that reads it; keep them plain data
(no torch objects) so they serialise with :func:`dataclasses.asdict`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

from soundedit.text.templates import DEFAULT_TEMPLATE

T = TypeVar("T")


@dataclass(frozen=True)
class AudioConfig:
    """How a waveform becomes a log-mel spectrogram (read by ``soundedit.audio``).

    Defaults are the paper's: 44.1 kHz, n_fft 2048, hop 512, 128 Slaney mel bins,
    ``power_to_db(ref=max, top_db=80) / 80 + 1`` normalisation.
    """

    sample_rate: int = 44100
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128
    f_min: float = 0.0
    f_max: float | None = None
    top_db: float = 80.0
    duration: float = 5.0  # seconds fed to our own encoders (crop/pad policy in soundedit.audio)
    crop: str = "start"  # start | centre | loudest (deterministic; "random" only in training)
    pad: str = "silence"  # silence | loop


@dataclass(frozen=True)
class EncoderConfig:
    """An audio encoder that maps log-mel to CLIP space (read by ``soundedit.models.audio_encoder``)."""

    arch: str = "resnet50"  # any timm ResNet name; the authors' release is resnet18
    embed_dim: int = 512  # CLIP ViT-B/32's joint space; read from the CLIP model when training
    layout: str = "clean"  # clean: (1, n_mels, frames); official: the authors' scrambled (1, 128, 512)
    audio: AudioConfig = field(default_factory=AudioConfig)

    def __post_init__(self) -> None:
        # Checked here so a bad value fails when the config is made, not deep inside timm.
        if self.layout not in ("clean", "official"):
            raise ValueError(f"EncoderConfig.layout: expected 'clean' or 'official', got {self.layout!r}")
        if not (isinstance(self.embed_dim, int) and self.embed_dim > 0):
            raise ValueError(f"EncoderConfig.embed_dim: expected a positive int, got {self.embed_dim!r}")
        if not (isinstance(self.arch, str) and self.arch):
            raise ValueError(f"EncoderConfig.arch: expected a timm ResNet name (resnet18, resnet50, ...), got {self.arch!r}")


#: upper bound on edit/projection steps: far above any useful run (the paper edits for 300), and low enough
#: that the per-step history (steps x N floats on the device) can always be allocated
MAX_STEPS = 100_000
#: steps of an edit left to us (``--steps auto``, the web app's slider): the paper's 300 on a GPU; on a CPU
#: fewer, and the CLI says so. A step with CLIP ViT-B/32 takes 1.3 s at 256 px and 4.1 s at 1024 px on 2
#: cores (benchmarks/edit.py), so 60 steps are 1.3 and 4 minutes.
FULL_STEPS = 300
CPU_AUTO_STEPS = 60


def auto_steps(device_type: str) -> int:
    """Edit steps when the user leaves them to us, on a device of this type (``"cpu"``, ``"cuda"``, ``"mps"``)."""
    return CPU_AUTO_STEPS if device_type == "cpu" else FULL_STEPS


#: upper bound on learning rates (edits, projection, training): Adam moves a code by about lr per step while
#: W codes are O(1), so far smaller values already diverge; above float32's range torch itself fails (overflow)
MAX_LR = 1000.0
#: the optimizers a training recipe may name
OPTIMIZERS = ("sgd", "adamw")
#: largest gain magnitude (dB) of a sound in a mix: ±120 dB spans any audible balance (-120 dB is silence
#: next to full scale); +1000 dB is 1e50, beyond float32, and the mix would be inf/NaN
MAX_GAIN_DB = 120.0
#: ``mix --interpolate`` frames are rendered and kept in memory (a 1024-px frame takes 12 MB), so they are capped
MAX_INTERPOLATE = 100


@dataclass(frozen=True)
class EditConfig:
    """Settings of one sound-guided latent optimisation (read by ``soundedit.editing``).

    ``lambda_sim``/``lambda_id`` left at ``None`` take the preset's values
    (``soundedit.editing.presets``: faces 0.008/0.004, scenes and art 0.002/0);
    ``preset`` ``None`` picks the preset from the generator's domain.
    """

    steps: int = FULL_STEPS
    lr: float = 0.1
    lambda_sim: float | None = None
    lambda_id: float | None = None
    preset: str | None = None  # faces | scenes | art
    layer_mask: str = "adaptive"  # adaptive | uniform | authors
    max_gate_ratio: float = 10.0  # adaptive: bound on the largest/smallest per-layer weight
    truncation: float = 0.7
    lr_rampup: float = 0.05
    lr_rampdown: float = 0.25
    noise: str = "const"
    frame_every: int = 0  # keep an intermediate image every k steps (0: none)


@dataclass(frozen=True)
class TrainConfig:
    """Alignment training of an audio encoder (read by ``soundedit.training``); paper recipe by default.

    The defaults are the paper's recipe (ResNet50 on 128-bin log-mel, SGD lr 1e-3,
    momentum 0.9, weight decay 1e-4, batch 384, cosine cyclic LR, 50 epochs);
    :meth:`preset` gives ``"paper"`` and ``"fast"``.  ``batch_size`` is the global
    batch (all ranks, all accumulation steps together).
    """

    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    optimizer: str = "sgd"  # one of OPTIMIZERS
    lr: float = 1e-3
    momentum: float = 0.9  # SGD momentum (AdamW: beta1)
    weight_decay: float = 1e-4
    batch_size: int = 384
    epochs: int = 50
    schedule: str = "cosine_cyclic"  # cosine_cyclic (restarts every cycle_epochs) | cosine | constant
    cycle_epochs: int = 10
    min_lr_ratio: float = 0.0  # lowest lr of a cosine cycle, as a fraction of lr
    warmup_steps: int = 0
    grad_accum: int = 1  # micro-batches per optimizer step (InfoNCE negatives come from one micro-batch)
    amp: bool = True  # mixed precision on CUDA (bf16 where supported, else fp16 + loss scaling); ignored on CPU
    logit_scale: float = 1 / 0.07  # CLIP's initial 1/temperature
    learn_logit_scale: bool = True
    max_logit_scale: float = 100.0  # CLIP's clamp
    weight_text: float = 1.0  # L(a<->t)
    weight_image: float = 1.0  # L(a<->v), only when the manifest has frames
    weight_augment: float = 1.0  # L(a<->a^) against the SpecAugment view
    freq_mask_ratio: float = 0.15
    time_mask_ratio: float = 0.3
    precise_bn_batches: int = 0  # before validating, re-estimate BatchNorm statistics on N training batches (0: off)
    crop_seconds: float = 0.0  # train on random windows of this length of each clip's log-mel (0: whole clip)
    text_augment: bool = True  # WordNet synonym replacement/insertion, permutation, random insertion
    p_synonym_replace: float = 0.3
    p_synonym_insert: float = 0.2
    p_permute: float = 0.1
    p_random_insert: float = 0.1
    template: str = DEFAULT_TEMPLATE  # label -> prompt when a manifest row has no text
    save_every_steps: int = 0  # extra resume checkpoints within an epoch (0: at epoch ends only)
    log_every_steps: int = 10
    seed: int = 0

    @classmethod
    def preset(cls, name: str) -> "TrainConfig":
        """``"paper"`` (the defaults) or ``"fast"`` (ResNet18, AdamW, batch 64, 10 epochs) for quick runs.

        Raises:
            ValueError: unknown preset name.
        """
        if name == "paper":
            return cls()
        if name == "fast":
            return cls(encoder=EncoderConfig(arch="resnet18"), optimizer="adamw", lr=5e-4, weight_decay=0.05,
                       batch_size=64, epochs=10, schedule="cosine", warmup_steps=50)
        raise ValueError(f"--config: expected 'paper' or 'fast', got {name!r}")

def to_dict(cfg: Any) -> dict:
    """A config as plain JSON-able data."""
    return dataclasses.asdict(cfg)


def from_dict(cls: type[T], data: dict) -> T:
    """Rebuild a (possibly nested) config dataclass from :func:`to_dict` output.

    Unknown keys raise ``TypeError`` naming them, so a checkpoint from a newer
    version fails loudly rather than silently dropping settings.
    """
    kwargs = {}
    hints = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(hints)
    if unknown:
        raise TypeError(f"{cls.__name__}: unknown config keys {sorted(unknown)}")
    for name, value in data.items():
        default = hints[name].default_factory if hints[name].default_factory is not dataclasses.MISSING else None
        if isinstance(value, dict) and default is not None and dataclasses.is_dataclass(default()):
            value = from_dict(type(default()), value)
        kwargs[name] = value
    return cls(**kwargs)
