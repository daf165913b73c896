"""Settings of ``soundedit serve`` (plain data; importable without Gradio)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class AppSettings:
    """What ``soundedit serve`` was started with.

    Attributes:
        generators: generator weights.lock names or files offered in the menu (empty: every
            StyleGAN2 entry of weights.lock, present or not).
        audio_encoder, clip, identity: the other components (names or files); the identity
            net is loaded only for edits with ``lambda_id > 0``.
        device: ``auto``/``cpu``/``cuda``...
        max_queue, concurrency: waiting places and edits running at once.
        max_upload_mb: largest upload (sound, W+ file or photo).
        max_duration: longest sound, seconds.
        max_steps: the steps slider's maximum.
        steps: the steps slider's start value (``None``: as ``soundedit edit --steps auto``, ``config.auto_steps``).
        examples: a folder of example sounds (up to 16 are offered beside a synthetic siren).
    """

    generators: list[str] = field(default_factory=list)
    audio_encoder: str = "authors-resnet18"
    clip: str = "clip-vit-b-32"
    identity: str | None = "ir-se50"
    device: str = "auto"
    max_queue: int = 8
    concurrency: int = 1
    max_upload_mb: float = 50.0
    max_duration: float = 30.0
    max_steps: int = 1000
    steps: int | None = None
    examples: Path | None = None
