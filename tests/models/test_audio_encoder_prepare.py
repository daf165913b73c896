"""AudioEncoder.prepare: files, bytes and waveforms -> the model input of each layout."""

from __future__ import annotations

import pytest
import torch

from soundedit.config import AudioConfig
from soundedit.errors import InputError
from soundedit.models import load_audio_encoder
from soundedit.testing.clip import write_tiny_audio_encoder

SHORT = AudioConfig(duration=2.0)


@pytest.fixture(scope="module")
def official(seeded_checkpoint, tmp_path_factory):
    path, expected = seeded_checkpoint("official_audio_encoder", tmp_path_factory.mktemp("off") / "resnet18_57.pth")
    return load_audio_encoder(path), expected


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    path = write_tiny_audio_encoder(tmp_path_factory.mktemp("clean") / "enc.safetensors", audio=SHORT, seed=0)
    return load_audio_encoder(path)


def test_official_end_to_end_from_the_wav(official, golden_dir):
    """File -> authors' transform -> encoder reproduces the golden embedding."""
    enc, expected = official
    x = enc.prepare(golden_dir / expected["wav_file"])
    assert x.shape == (1, 1, 128, 512)
    torch.testing.assert_close(x, expected["model_input"], rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        torch.testing.assert_close(enc(x), expected["embedding"], rtol=1e-4, atol=1e-4)


def test_official_batch_of_bytes_and_waveform(official, golden_dir):
    from soundedit.audio import load_audio

    enc, expected = official
    wav = golden_dir / expected["wav_file"]
    x = enc.prepare([wav.read_bytes(), load_audio(wav)])
    assert x.shape == (2, 1, 128, 512)
    for row in x:
        torch.testing.assert_close(row[None], expected["model_input"], rtol=1e-4, atol=1e-4)


def test_clean_batch_from_every_format(clean, formats_dir):
    files = sorted(p for p in formats_dir.iterdir() if p.is_file())
    x = clean.prepare(files)
    frames = 1 + round(SHORT.duration * SHORT.sample_rate) // SHORT.hop_length
    assert x.shape == (len(files), 1, SHORT.n_mels, frames)
    assert torch.isfinite(x).all() and x.min() >= 0 and x.max() <= 1
    # each clip normalised to its own maximum (dB ref = max -> 1.0)
    torch.testing.assert_close(x.amax(dim=(1, 2, 3)), torch.ones(len(files)))
    with torch.no_grad():
        emb = clean(x)
    assert emb.shape == (len(files), 512)
    assert not torch.allclose(emb[0], emb[1], atol=1e-3)  # different sounds, different embeddings


def test_clean_waveform_resampled_and_file_agree(clean, esc50_root):
    from soundedit.audio import load_audio

    path = sorted((esc50_root / "audio").glob("*.flac"))[0]
    wave16k = load_audio(path)  # ESC-50 fold at 16 kHz; the encoder wants 44.1 kHz
    assert wave16k.sample_rate != SHORT.sample_rate
    from_file, from_wave = clean.prepare(path), clean.prepare(wave16k)
    torch.testing.assert_close(from_wave, from_file, atol=1e-4, rtol=0)


def test_bad_items(clean, tmp_path):
    with pytest.raises(InputError, match="missing.wav"):
        clean.prepare(tmp_path / "missing.wav")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF not really")
    with pytest.raises(InputError, match="junk.wav"):
        clean.prepare([junk])
    with pytest.raises(InputError, match="empty"):
        clean.prepare([])


def _noise(path, samples: int, rate: int):
    import numpy as np
    import soundfile

    soundfile.write(path, np.random.default_rng(0).uniform(-0.5, 0.5, samples).astype(np.float32), rate)
    return path


def test_a_file_shorter_than_one_stft_window_is_refused(clean, official, tmp_path):
    """One sample embedded like any sound (all padding to the front end); a clip that fills one
    window (n_fft = 2048 samples at 44.1 kHz, 46 ms) still works, at any file rate."""
    from soundedit.errors import AudioError

    assert (SHORT.n_fft, SHORT.sample_rate) == (2048, 44100)
    for enc in (clean, official[0]):
        # 46.44 ms at 16 kHz is 743.04 samples: the file's own rate counts, before resampling
        for samples, rate, duration, least in ((1, 44100, "0.023 ms", 2048), (2047, 44100, "46.4 ms", 2048),
                                               (743, 16000, "46.4 ms", 744)):
            path = _noise(tmp_path / f"short-{samples}-{rate}.wav", samples, rate)
            with pytest.raises(AudioError) as err:
                enc.prepare(path)
            assert str(err.value) == (f"{path}: {duration} of audio ({samples} samples at {rate} Hz); "
                                      f"expected at least 0.0464399 s, {least} samples")
        x = enc.prepare([_noise(tmp_path / "one-window.wav", 2048, 44100), _noise(tmp_path / "k16.wav", 744, 16000)])
        assert x.shape[0] == 2 and torch.isfinite(x).all()
        # a decoded Waveform handed in directly is held to the same minimum (it went through unchecked)
        from soundedit.audio import Waveform

        short = Waveform(torch.full((1, 2047), 0.25), 44100)
        with pytest.raises(AudioError) as err:
            enc.prepare([Waveform(torch.full((2, 2048), 0.25), 44100), short])
        assert str(err.value) == ("clip 2: 46.4 ms of audio (2047 samples at 44100 Hz); "
                                  "expected at least 0.0464399 s, 2048 samples")
        assert torch.isfinite(enc.prepare(Waveform(torch.full((2, 2048), 0.25), 44100))).all()
