"""Decoding: every real format, windows, bytes, resampling, and every kind of bad input."""

from __future__ import annotations

import io
import logging
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from soundedit.audio import Waveform, audio_info, load_audio, resample
from soundedit.errors import AudioError, InputError


def _sine(freq: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(rate * seconds))) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_every_real_format_decodes_with_its_rate_channels_and_duration(formats_dir):
    files = sorted(formats_dir.iterdir())
    assert {f.suffix for f in files} >= {".wav", ".ogg", ".mp3"}
    for path in files:
        info = sf.info(str(path))
        wave = load_audio(path)
        assert wave.sample_rate == info.samplerate, path.name
        assert wave.num_channels == info.channels, path.name
        assert wave.num_frames == info.frames, path.name
        assert wave.duration == pytest.approx(info.duration, abs=1e-3), path.name
        assert wave.samples.dtype == torch.float32
        peak = float(wave.samples.abs().max())
        assert 0.01 < peak <= 1.0, path.name  # real sound, full-scale convention
        from_bytes = load_audio(path.read_bytes())
        assert torch.equal(from_bytes.samples, wave.samples), path.name


def test_real_formats_resample_and_mono(formats_dir):
    wave = load_audio(formats_dir / "cat.mp3", 16000, mono=True)  # 48 kHz MP3
    info = sf.info(str(formats_dir / "cat.mp3"))
    assert wave.sample_rate == 16000 and wave.num_channels == 1
    assert wave.num_frames == math.ceil(info.frames * 16000 / 48000)
    stereo = load_audio(formats_dir / "us8k_101848-9-0-2.wav")
    mono = stereo.to_mono()
    torch.testing.assert_close(mono.samples[0], stereo.samples.mean(0))


def test_esc50_flac(esc50_root):
    path = sorted((esc50_root / "audio").glob("*.flac"))[0]
    wave = load_audio(path)
    assert (wave.sample_rate, wave.num_channels, wave.num_frames) == (16000, 1, 80000)


@pytest.mark.parametrize("subtype,fmt,tol", [("PCM_U8", "WAV", 1 / 64), ("PCM_16", "WAV", 1e-4),
                                             ("PCM_24", "WAV", 1e-6), ("PCM_32", "WAV", 1e-6),
                                             ("FLOAT", "WAV", 0), ("DOUBLE", "WAV", 1e-7),
                                             ("PCM_16", "WAVEX", 1e-4), ("PCM_24", "FLAC", 1e-6),
                                             ("VORBIS", "OGG", 0.05)])
def test_wav_flac_ogg_encodings_roundtrip(tmp_path, subtype, fmt, tol):
    x = np.stack([_sine(440, 22050, 0.5), _sine(660, 22050, 0.5, 0.25)], axis=1)  # (n, 2)
    path = tmp_path / f"x_{subtype}.{fmt.lower()}"
    sf.write(path, x, 22050, subtype=subtype, format=fmt)
    wave = load_audio(path)
    assert (wave.sample_rate, wave.num_channels) == (22050, 2)
    if fmt != "OGG":
        assert wave.num_frames == x.shape[0]
        assert float((wave.samples - torch.from_numpy(x.T)).abs().max()) <= tol + 1e-7
    else:  # lossy: compare levels
        assert float(wave.samples[0].square().mean().sqrt()) == pytest.approx(0.5 / math.sqrt(2), rel=0.05)


def test_window_reads_only_the_window(tmp_path):
    x = _sine(100, 8000, 3.0)
    x[16000:] += 0.25  # a step at 2 s tells windows apart
    path = tmp_path / "long.wav"
    sf.write(path, x, 8000, subtype="FLOAT")
    win = load_audio(path, start=1.5, duration=1.0)
    np.testing.assert_array_equal(win.samples[0].numpy(), x[12000:20000])
    tail = load_audio(path, start=2.5, duration=10.0)  # past the end: shortened
    assert tail.num_frames == 4000
    whole = load_audio(path)
    np.testing.assert_array_equal(whole.window(1.5, 1.0).samples[0].numpy(), x[12000:20000])
    with pytest.raises(InputError, match="start"):
        load_audio(path, start=3.5)
    with pytest.raises(InputError, match="duration"):
        load_audio(path, duration=0)


def test_too_long_needs_a_window(tmp_path):
    path = tmp_path / "field_recording.wav"
    sf.write(path, _sine(100, 8000, 3.0), 8000)
    with pytest.raises(AudioError, match=r"field_recording\.wav.*longer than the 2 s limit"):
        load_audio(path, max_duration=2.0)
    assert load_audio(path, duration=1.0, max_duration=2.0).num_frames == 8000
    assert load_audio(path, max_duration=None).num_frames == 24000


def test_resample_is_band_limited():
    rate = 48000
    t = torch.arange(rate) / rate
    tone = 0.5 * torch.sin(2 * math.pi * 1000 * t)
    high = 0.5 * torch.sin(2 * math.pi * 20000 * t)  # above the 8 kHz Nyquist of 16 kHz
    both = torch.stack([tone, high])  # batched: (2, n)
    out = resample(both, rate, 16000)
    assert out.shape == (2, 16000)
    core = slice(1000, 15000)
    assert float(out[0, core].square().mean().sqrt()) == pytest.approx(0.5 / math.sqrt(2), rel=1e-2)
    assert float(out[1, core].abs().max()) < 1e-2  # removed, not aliased to 4 kHz
    best = resample(both, rate, 16000, quality="kaiser_best")
    assert float(best[1, core].abs().max()) < 5e-3
    with pytest.raises(InputError, match="quality"):
        resample(both, rate, 16000, quality="fast")


@pytest.mark.parametrize("orig,new,quality", [(16000, 44100, "default"), (44100, 16000, "default"),
                                               (48000, 44100, "default"), (44100, 22050, "kaiser_best")])
def test_resample_computes_torchaudios_resampler(orig, new, quality):
    import torchaudio.functional as AF

    from soundedit.audio.io import _RESAMPLE_SETTINGS

    x = torch.randn(2, 3, 4001, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = AF.resample(x, orig, new, **_RESAMPLE_SETTINGS[quality])
    got = resample(x, orig, new, quality=quality)
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-12)  # float64: the same sums
    torch.testing.assert_close(resample(x.float(), orig, new, quality=quality), ref.float(), rtol=0, atol=5e-6)
    # differentiable like torchaudio's (a waveform being optimised can be resampled)
    xg, weights = x.clone().requires_grad_(True), torch.randn(ref.shape, dtype=torch.float64)
    (resample(xg, orig, new, quality=quality) * weights).sum().backward()
    expected = torch.autograd.grad((AF.resample(xg, orig, new, **_RESAMPLE_SETTINGS[quality]) * weights).sum(), xg)[0]
    torch.testing.assert_close(xg.grad, expected, rtol=0, atol=1e-12)
    with pytest.raises(InputError, match="floating-point"):
        resample(torch.zeros(10, dtype=torch.int16), orig, new)


def test_waveform_checks_its_fields():
    with pytest.raises(InputError, match="channels, n"):
        Waveform(torch.zeros(10), 16000)
    with pytest.raises(InputError, match="sample_rate"):
        Waveform(torch.zeros(1, 10), 0)


# ---- bad input: each a clear AudioError (a ValueError) naming the file and the problem


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(AudioError, match=r"nope\.wav: no such file"):
        load_audio(tmp_path / "nope.wav")
    with pytest.raises(AudioError, match="not a file"):
        load_audio(tmp_path)


def test_audio_error_is_a_value_error_with_exit_code_2():
    assert issubclass(AudioError, ValueError)
    assert AudioError.exit_code == 2


def test_png_renamed_wav_is_not_audio(tmp_path):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buf, format="PNG")
    path = tmp_path / "photo.wav"
    path.write_bytes(buf.getvalue())
    with pytest.raises(AudioError, match=r"photo\.wav: not a readable audio file"):
        load_audio(path)
    with pytest.raises(AudioError, match=r"<bytes>: not a readable audio file"):
        load_audio(buf.getvalue())


def test_truncated_and_corrupt_headers(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, _sine(440, 16000, 0.5), 16000)
    data = good.read_bytes()
    cut = tmp_path / "cut_header.wav"
    cut.write_bytes(data[:30])  # RIFF header cut inside the fmt chunk
    with pytest.raises(AudioError, match=r"cut_header\.wav"):
        load_audio(cut)
    garbled = bytearray(data)
    garbled[12:16] = b"junk"  # the fmt chunk id
    bad = tmp_path / "garbled.wav"
    bad.write_bytes(bytes(garbled))
    with pytest.raises(AudioError, match=r"garbled\.wav"):
        load_audio(bad)


def test_truncated_data_still_loads_what_is_there(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, _sine(440, 16000, 1.0), 16000)
    data = good.read_bytes()
    half = tmp_path / "half.wav"
    half.write_bytes(data[: 44 + 16000])  # header + 8000 of 16000 int16 samples
    wave = load_audio(half)
    assert 0 < wave.num_frames <= 8000
    np.testing.assert_allclose(wave.samples[0].numpy(), _sine(440, 16000, 1.0)[: wave.num_frames], atol=1e-4)


def test_zero_length(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioError, match=r"empty\.wav: empty file"):
        load_audio(empty)
    no_frames = tmp_path / "no_frames.wav"
    sf.write(no_frames, np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match=r"no_frames\.wav: the file holds no samples"):
        load_audio(no_frames)
    with pytest.raises(AudioError, match="<bytes>: empty"):
        load_audio(b"")


def test_nan_and_inf_samples(tmp_path):
    x = _sine(440, 16000, 0.5)
    x[100], x[200] = np.nan, np.inf
    path = tmp_path / "nan.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan\.wav: 2 NaN/Inf samples"):
        load_audio(path)


def test_float_audio_far_beyond_full_scale_is_refused_and_int16_scale_floats_are_read(tmp_path):
    """Samples of 1e30 made every embedding NaN (the spectrum overflows float32); float files holding
    int16-scale values (peak ~32767) are real files and give the same model input as full scale."""
    from soundedit.audio import official_model_input

    x = _sine(440, 16000, 0.5)
    sf.write(tmp_path / "huge.wav", x * 1e30, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"huge\.wav: samples reach 5e\+29; expected audio in about \[-1, 1\]"):
        load_audio(tmp_path / "huge.wav")
    sf.write(tmp_path / "int16scale.wav", x * 65534, 16000, subtype="FLOAT")
    sf.write(tmp_path / "unit.wav", x, 16000, subtype="FLOAT")
    assert load_audio(tmp_path / "int16scale.wav").samples.abs().max() == pytest.approx(32767, rel=1e-3)
    torch.testing.assert_close(official_model_input(tmp_path / "int16scale.wav"),
                               official_model_input(tmp_path / "unit.wav"), rtol=0, atol=1e-5)


@pytest.mark.parametrize("rate", [4, 4_000_000])
def test_absurd_sample_rate(tmp_path, rate):
    path = tmp_path / "rate.wav"
    sf.write(path, _sine(440, 16000, 0.1), 16000)
    data = bytearray(path.read_bytes())
    data[24:28] = rate.to_bytes(4, "little")  # WAV fmt chunk: sample rate
    data[28:32] = (rate * 2).to_bytes(4, "little")  # and the matching byte rate
    path.write_bytes(bytes(data))
    with pytest.raises(AudioError, match=r"rate\.wav"):
        load_audio(path)
    with pytest.raises(InputError, match="sample_rate"):
        load_audio(tmp_path / "rate.wav", sample_rate=10)


def test_more_than_eight_channels(tmp_path):
    path = tmp_path / "many.wav"
    sf.write(path, np.zeros((100, 9), np.float32) + 0.1, 16000, format="WAV", subtype="PCM_16")
    with pytest.raises(AudioError, match=r"many\.wav: 9 channels; expected 1\.\.8"):
        load_audio(path)


def test_all_silent_warns_and_still_loads(tmp_path, caplog):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(1600, np.float32), 16000)
    with caplog.at_level(logging.WARNING, logger="soundedit"):
        wave = load_audio(path)
    assert wave.num_frames == 1600
    assert any("silence" in r.getMessage() and "silence.wav" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="soundedit"):
        load_audio(path)  # decoded again (edit checks a sound before the models load, then uses it)
    assert not caplog.records  # said once per process


def test_audio_info(formats_dir):
    info = audio_info(formats_dir / "booth_chainsaw04.wav")
    assert (info["sample_rate"], info["channels"], info["subtype"]) == (44100, 2, "PCM_32")


def test_truncated_wav_warns_and_is_too_short_to_guide(tmp_path, caplog):
    from soundedit.audio.io import MIN_GUIDE_DURATION, check_guide_sound

    full = tmp_path / "full.wav"
    sf.write(full, (0.1 * np.sin(np.arange(44100 * 5) / 10)).astype(np.float32), 44100, subtype="PCM_16")
    cut = tmp_path / "trunc.wav"
    cut.write_bytes(full.read_bytes()[:100])  # the header promises 5 s; 28 samples are there
    with caplog.at_level(logging.WARNING, logger="soundedit"):
        wave = load_audio(cut)
    assert wave.num_frames == 28
    assert "holds 28 of the 220500 frames its header promises" in caplog.text and "truncated file?" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="soundedit"), pytest.raises(AudioError) as err:
        check_guide_sound(cut, what="--sound")
    assert str(err.value) == (f"--sound: {cut}: 0.6 ms of audio (28 samples at 44100 Hz; the header promises "
                              f"5.00 s: truncated file?); expected at least {MIN_GUIDE_DURATION:g} s, 4410 samples")
    assert caplog.text == ""  # the error says it all; no extra warning line
    short = tmp_path / "click.wav"
    sf.write(short, np.full(441 * 5, 0.5, np.float32), 44100)  # a complete 50 ms file
    with pytest.raises(AudioError, match=r"click\.wav: 50\.0 ms of audio \(2205 samples at 44100 Hz\); expected at least 0\.1 s"):
        check_guide_sound(short)
    assert check_guide_sound(full) == pytest.approx(5.0)


def test_truncated_mp3_says_it_cannot_be_decoded(tmp_path, formats_dir):
    cut = tmp_path / "trunc.mp3"
    cut.write_bytes((formats_dir / "cat.mp3").read_bytes()[:50])
    with pytest.raises(AudioError) as err:
        load_audio(cut)
    assert str(err.value).startswith(f"{cut}: not a readable audio file (it cannot be decoded: not a recognised "
                                     "audio format, or a truncated or corrupt file)")
    assert "pipe" not in str(err.value)


def test_named_bytes_name_their_file():
    from soundedit.audio.io import NamedBytes

    with pytest.raises(AudioError, match=r"^sounds/x\.wav: not a readable audio file"):
        load_audio(NamedBytes(b"hello, not audio", "sounds/x.wav"))
    with pytest.raises(AudioError, match=r"^sounds/e\.wav: empty"):
        load_audio(NamedBytes(b"", "sounds/e.wav"))
