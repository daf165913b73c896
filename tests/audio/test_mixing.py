"""Mixing with gains in dB, loudness measurement and normalisation."""

from __future__ import annotations

import logging
import math

import pytest
import torch

from soundedit.audio import Waveform, db_to_gain, load_audio, loudness, mix, normalize_loudness
from soundedit.errors import InputError


def _sine(freq: float, rate: int = 16000, seconds: float = 1.0, amp: float = 0.5, channels: int = 1) -> Waveform:
    t = torch.arange(int(rate * seconds), dtype=torch.float64) / rate
    x = (amp * torch.sin(2 * math.pi * freq * t)).float()
    return Waveform(x.repeat(channels, 1), rate)


def test_gains_in_db_are_amplitude_factors():
    assert db_to_gain(0.0) == 1.0
    assert db_to_gain(-6.0) == pytest.approx(0.501187, rel=1e-5)
    assert db_to_gain(20.0) == pytest.approx(10.0)
    a, b = _sine(440, amp=0.2), _sine(660, amp=0.2, seconds=0.5)
    out = mix([a, b], [0.0, -6.0])
    assert out.sample_rate == 16000 and out.samples.shape == (1, 16000)  # longest sound
    expected = a.samples.clone()
    expected[:, :8000] += b.samples * db_to_gain(-6.0)
    torch.testing.assert_close(out.samples, expected)
    torch.testing.assert_close(out.samples[:, 8000:], a.samples[:, 8000:])  # the shorter ends in silence
    # default gains are 0 dB
    torch.testing.assert_close(mix([a, a]).samples, 2 * a.samples)


def test_mix_guards_clipping_and_keeps_relative_gains(caplog):
    a = _sine(440, amp=0.8)
    with caplog.at_level(logging.INFO, logger="soundedit"):
        out = mix([a, a], [0.0, 0.0])
    assert float(out.samples.abs().max()) == pytest.approx(1.0)
    torch.testing.assert_close(out.samples, a.samples / a.samples.abs().max())
    assert any("clipping" in r.getMessage() for r in caplog.records)
    raw = mix([a, a], [0.0, 0.0], clip_guard=False)
    assert float(raw.samples.abs().max()) == pytest.approx(1.6, rel=1e-4)


def test_mix_resamples_and_spreads_channels():
    mono = _sine(440, rate=16000)
    stereo = _sine(440, rate=8000, channels=2, amp=0.1)
    out = mix([mono, stereo], [0.0, 0.0])
    assert out.sample_rate == 16000 and out.num_channels == 2 and out.num_frames == 16000
    torch.testing.assert_close(out.samples[0], out.samples[1])
    out44 = mix([mono, stereo], sample_rate=44100)
    assert out44.sample_rate == 44100 and out44.num_frames == 44100
    five = _sine(440, channels=6)
    assert mix([stereo, five]).num_channels == 1  # different multi-channel layouts: mono mix


def test_mix_checks_its_arguments():
    a = _sine(440)
    with pytest.raises(InputError, match="one gain per sound"):
        mix([a, a], [0.0])
    with pytest.raises(InputError, match="at least one"):
        mix([])
    for bad in (float("nan"), 1000.0, -121.0):  # +1000 dB overflowed float32: a NaN mix
        with pytest.raises(InputError, match=r"mix: expected gains in dB within ±120, got \[" + str(bad)):
            mix([a, a], [0.0, bad])
    assert torch.isfinite(mix([a, a], [0.0, 120.0]).samples).all()


def test_loudness_rms_and_lufs_reference_values():
    full = _sine(1000, rate=48000, amp=1.0)
    assert loudness(full, method="rms") == pytest.approx(-3.0103, abs=1e-3)  # full-scale sine
    assert loudness(full, method="lufs") == pytest.approx(-3.01, abs=0.02)  # BS.1770's 1 kHz reference
    assert loudness(_sine(1000, rate=44100, amp=1.0), method="lufs") == pytest.approx(-3.01, abs=0.02)
    quiet = Waveform(full.samples * 0.1, 48000)
    assert loudness(quiet, method="lufs") == pytest.approx(-23.01, abs=0.02)
    rumble = _sine(20, rate=48000, amp=1.0)  # K-weighting discounts low rumble
    assert loudness(rumble, method="lufs") < -15.0
    click = _sine(1000, rate=48000, seconds=0.1, amp=1.0)  # shorter than one 400 ms block
    assert loudness(click, method="lufs") == pytest.approx(-3.01, abs=0.1)
    assert loudness(Waveform(torch.zeros(1, 100), 16000)) == -math.inf
    with pytest.raises(InputError, match="loudness method"):
        loudness(full, method="peak")


def test_normalize_loudness_and_matched_mix(formats_dir, caplog):
    frog = load_audio(formats_dir / "animals__amphibians__frog.ogg")
    cow = load_audio(formats_dir / "esc50_44k_2-103426-A-3.wav")
    for method, target in (("rms", -20.0), ("lufs", -23.0)):
        assert loudness(normalize_loudness(frog, method=method), method=method) == pytest.approx(target, abs=0.05)
    assert loudness(normalize_loudness(cow, -30.0)) == pytest.approx(-30.0, abs=1e-3)
    # match_loudness: gains become relative loudness; at -6 dB the second is 6 dB quieter
    out = mix([cow, frog], [0.0, -6.0], match_loudness="rms", clip_guard=False)
    cow_part = normalize_loudness(cow).samples
    frog_part = normalize_loudness(frog).samples * db_to_gain(-6.0)
    expected = cow_part.clone()
    expected[:, : frog_part.shape[1]] += frog_part
    torch.testing.assert_close(out.samples, expected)
    silent = Waveform(torch.zeros(1, 1000), 16000)
    with caplog.at_level(logging.WARNING, logger="soundedit"):
        assert normalize_loudness(silent) is silent
    assert any("silent" in r.getMessage() for r in caplog.records)


def test_k_weighting_at_48k_is_the_standards_table():
    from soundedit.audio.mixing import _k_weighting

    (b1, a1), (b2, a2) = _k_weighting(48000)
    assert b1 == pytest.approx([1.53512485958697, -2.69169618940638, 1.19839281085285], abs=1e-9)
    assert a1 == pytest.approx([1.0, -1.69065929318241, 0.73248077421585], abs=1e-9)
    assert b2 == [1.0, -2.0, 1.0]
    assert a2 == pytest.approx([1.0, -1.99004745483398, 0.99007225036621], abs=1e-9)
