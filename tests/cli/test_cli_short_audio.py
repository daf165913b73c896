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
MINIMUM = "expected at least 0.0464399 s"


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
