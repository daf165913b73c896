"""`soundedit embed` and `soundedit classify` on a file shorter than one STFT window of the encoder's
front end: a failed file naming its duration and the minimum, not an embedding of padding."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile

from soundedit.cli.main import main
from soundedit.config import AudioConfig

#: the encoder's front end: n_fft 2048 at 44.1 kHz, so files need 2048 / 44100 = 46.4 ms
MINIMUM = "expected at least 0.0464399 s, 2048 samples"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from soundedit.testing.clip import write_tiny_audio_encoder, write_tiny_openai_clip

    d = tmp_path_factory.mktemp("models")
    enc = write_tiny_audio_encoder(d / "enc.safetensors", arch="resnet10t", embed_dim=64,
                                   audio=AudioConfig(duration=1.0))
    clip = write_tiny_openai_clip(d / "clip.pt", embed_dim=64)
    return ["--encoder", str(enc), "--clip", str(clip), "--device", "cpu", "--no-cache"]


@pytest.fixture
def clips(tmp_path):
    """A one-sample file and a 50 ms clip (short, but more than one window)."""
    rng = np.random.default_rng(0)
    one, short = tmp_path / "one.wav", tmp_path / "short.wav"
    soundfile.write(one, np.array([0.5], np.float32), 44100)
    soundfile.write(short, rng.uniform(-0.5, 0.5, 2205).astype(np.float32), 44100)
    return one, short


def test_embed_refuses_a_one_sample_file_and_keeps_a_short_clip(models, clips, soundedit_home, capsys):
    one, short = clips
    assert main(["embed", str(short), "--json", *models]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["source"] == str(short) and len(row["embedding"]) == 64
    assert main(["embed", str(one), str(short), "--json", *models]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.strip() == (f"error: SOUNDS: 1 of 2 file(s) could not be embedded ({one}: 0.023 ms of "
                                         f"audio (1 samples at 44100 Hz); {MINIMUM})")


def test_classify_reports_a_one_sample_file_as_failed_and_classifies_the_rest(models, clips, soundedit_home, capsys):
    one, short = clips
    assert main(["classify", str(one), str(short), "--labels", "dog,rain", "--json", *models]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [item["file"] for item in result["items"]] == [str(short)]
    assert result["failures"] == [{"file": str(one), "reason": f"0.023 ms of audio (1 samples at 44100 Hz); {MINIMUM}"}]


def test_an_embedding_cached_before_short_files_were_refused_is_not_served(models, clips, soundedit_home, tmp_path,
                                                                            monkeypatch):
    """The cache key carries the input revision: an embedding of padding that an earlier version cached for
    a one-sample file (revision 1) is a miss, so the file is refused as it is uncached."""
    from soundedit.evaluation import embeddings
    from soundedit.models.audio_encoder import load_audio_encoder

    one, _ = clips
    encoder = load_audio_encoder(models[1])
    monkeypatch.setattr(embeddings, "INPUT_REVISION", 1)
    old_key = embeddings.encoder_fingerprint(encoder)
    cache = embeddings.EmbeddingCache(tmp_path / "cache", old_key, dim=64)
    cache.put(embeddings.hashlib.sha256(one.read_bytes()).hexdigest(), np.ones(64, np.float32))
    assert embeddings.embed_files(encoder, [one], cache_dir=tmp_path / "cache", encoder_id=old_key).ok == [0]
    monkeypatch.setattr(embeddings, "INPUT_REVISION", 2)
    assert embeddings.encoder_fingerprint(encoder) != old_key
    result = embeddings.embed_files(encoder, [one], cache_dir=tmp_path / "cache")
    assert result.ok == [] and result.cache_hits == 0 and "expected at least 0.0464399 s" in result.failures[0]
