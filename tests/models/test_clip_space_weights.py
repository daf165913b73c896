"""CLIP space and audio encoders by weights.lock name (cache, offline behaviour)."""

from __future__ import annotations

import pytest

from soundedit.errors import InputError, WeightsMissingError
from soundedit.models import load_audio_encoder, load_clip_space
from soundedit.testing.clip import write_tiny_audio_encoder, write_tiny_openai_clip

LOCK = """version = 1

[weights.tiny-clip]
file = "tiny-clip.pt"
urls = ["https://example.invalid/tiny-clip.pt"]
sha256 = "unknown"
size = "unknown"
layout = "openai-clip-pt"
licence = "test"
description = "seeded tiny CLIP"

[weights.tiny-encoder]
file = "tiny-encoder.pth"
urls = ["https://example.invalid/tiny-encoder.pth"]
sha256 = "unknown"
size = "unknown"
layout = "authors-audio-encoder-pth"
licence = "test"
description = "seeded tiny authors-layout encoder"
"""


def test_real_names_offline_say_what_is_missing(soundedit_home, monkeypatch):
    monkeypatch.setenv("SOUNDEDIT_OFFLINE", "1")
    with pytest.raises(WeightsMissingError, match="clip-vit-b-32"):
        load_clip_space()
    with pytest.raises(WeightsMissingError, match="authors-resnet18"):
        load_audio_encoder("authors-resnet18")
    with pytest.raises(InputError, match="no-such-clip"):
        load_clip_space("no-such-clip")


def test_load_by_name_from_the_cache(tmp_path, soundedit_home, monkeypatch):
    from soundedit import weights

    lock = tmp_path / "weights.lock"
    lock.write_text(LOCK)
    monkeypatch.setenv("SOUNDEDIT_WEIGHTS_LOCK", str(lock))
    monkeypatch.setenv("SOUNDEDIT_OFFLINE", "1")
    weights.import_file("tiny-clip", write_tiny_openai_clip(tmp_path / "c.pt", jit=True))
    weights.import_file("tiny-encoder", write_tiny_audio_encoder(tmp_path / "e.pth", layout="official"))
    space = load_clip_space("tiny-clip", audio_encoder="tiny-encoder")
    assert space.name == "tiny-clip" and space.embed_dim == 512
    assert space.audio_encoder.config.layout == "official"
