"""Log-mel parity (librosa, the golden fixture), the authors' transform, fixed-length policies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from soundedit.audio import (LogMel, fix_length, load_audio, mel_filterbank, official_layout, official_model_input,
                             power_to_db, prepare_clips)
from soundedit.config import AudioConfig
from soundedit.errors import InputError

librosa = pytest.importorskip("librosa")


def _librosa_db(y: np.ndarray, cfg: AudioConfig) -> np.ndarray:
    # pad_mode="reflect": librosa 0.8's default, which the paper's code used (0.10+ pads with zeros)
    power = librosa.feature.melspectrogram(y=y, sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                                           n_mels=cfg.n_mels, pad_mode="reflect")
    return librosa.power_to_db(power, ref=np.max, top_db=cfg.top_db)


def test_filterbank_equals_librosa_and_torchaudio():
    import torchaudio.functional as AF

    fb = mel_filterbank(44100, 2048, 128)
    ref = librosa.filters.mel(sr=44100, n_fft=2048, n_mels=128, dtype=np.float64)
    np.testing.assert_allclose(fb.numpy(), ref, rtol=1e-10, atol=1e-14)
    ta = AF.melscale_fbanks(1025, 0.0, 22050.0, 128, 44100, norm="slaney", mel_scale="slaney").T
    torch.testing.assert_close(fb.float(), ta, rtol=0, atol=1e-6)  # torchaudio's float32 construction
    low = mel_filterbank(16000, 1024, 64, f_min=50.0, f_max=7000.0)
    ref_low = librosa.filters.mel(sr=16000, n_fft=1024, n_mels=64, fmin=50.0, fmax=7000.0, dtype=np.float64)
    np.testing.assert_allclose(low.numpy(), ref_low, rtol=1e-10, atol=1e-14)


def test_logmel_matches_librosa_on_real_clips(formats_dir, esc50_root):
    paths = [formats_dir / "cat.mp3", formats_dir / "booth_chainsaw04.wav",
             *sorted((esc50_root / "audio").glob("*.flac"))[:2]]
    for path in paths:
        wave = load_audio(path, mono=True)
        cfg = AudioConfig(sample_rate=wave.sample_rate)
        ref = _librosa_db(wave.samples[0].numpy(), cfg)
        db64 = LogMel(cfg, compute_dtype=torch.float64, normalize=False)(wave.samples[0]).numpy()
        np.testing.assert_allclose(db64, ref, rtol=1e-5, atol=1e-4, err_msg=path.name)  # dB
        norm32 = LogMel(cfg)(wave.samples[0]).numpy()  # default float32, normalised
        np.testing.assert_allclose(norm32, ref / 80 + 1, rtol=1e-4, atol=2e-5, err_msg=path.name)
        assert norm32.min() >= 0 and norm32.max() == pytest.approx(1.0)


def test_logmel_matches_golden_mel(golden_dir):
    expected = torch.load(golden_dir / "official_audio_encoder.expected.pt", weights_only=True)
    wave = load_audio(golden_dir / "official_audio_encoder.wav")
    gold = expected["mel_db_over_80_plus_1"]
    mel64 = LogMel(AudioConfig(), compute_dtype=torch.float64)(wave.samples)[0]
    torch.testing.assert_close(mel64, gold, rtol=0, atol=1e-6)
    mel32 = LogMel(AudioConfig())(wave.samples)[0]
    torch.testing.assert_close(mel32, gold, rtol=1e-4, atol=2e-5)


def test_official_model_input_matches_golden(golden_dir):
    expected = torch.load(golden_dir / "official_audio_encoder.expected.pt", weights_only=True)
    path = golden_dir / "official_audio_encoder.wav"
    x = official_model_input(path)
    assert x.shape == (1, 1, 128, 512) and x.dtype == torch.float32
    torch.testing.assert_close(x, expected["model_input"], rtol=0, atol=1e-5)
    torch.testing.assert_close(official_model_input(path.read_bytes()), x)
    torch.testing.assert_close(official_model_input(load_audio(path)), x)


def test_official_layout_is_opencv_bilinear_then_plain_reshape():
    # A ramp along time (cols) and mel (rows) makes OpenCV's INTER_LINEAR result predictable:
    # cols 864 -> 128: sx = (dx + .5) * 6.75 - .5; rows 128 -> 512: sy = (dy + .5) / 4 - .5, clamped to [0, 127].
    mel_axis = torch.arange(128, dtype=torch.float64)[:, None]
    time_axis = torch.arange(864, dtype=torch.float64)[None, :]
    x = (mel_axis * 1000 + time_axis)[None]  # (1, 128, 864), linear in both axes
    out = official_layout(x)
    assert out.shape == (1, 1, 128, 512)
    resized = out.reshape(512, 128)  # undo the plain reshape: cv2's (512 rows, 128 cols)
    sx = (torch.arange(128, dtype=torch.float64) + 0.5) * 6.75 - 0.5
    sy = ((torch.arange(512, dtype=torch.float64) + 0.5) / 4 - 0.5).clamp(0, 127)
    torch.testing.assert_close(resized, sy[:, None] * 1000 + sx[None, :], rtol=0, atol=1e-3)
    # Not a transpose: row 0 of the model input is the first 4 rows of cv2's array back to back.
    torch.testing.assert_close(out[0, 0, 0], resized[:4].reshape(-1))
    # Longer than 864 frames: a deterministic crop (start by default), never random.
    long = torch.rand(2, 128, 1000, dtype=torch.float64)
    torch.testing.assert_close(official_layout(long), official_layout(long[..., :864]))
    torch.testing.assert_close(official_layout(long, crop="centre"), official_layout(long[..., 68:932]))


def test_logmel_batched_differentiable_and_shapes():
    cfg = AudioConfig(sample_rate=16000, n_fft=512, hop_length=160, n_mels=40)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 16000, generator=gen) * torch.tensor([[0.1], [1.0], [0.01]])
    logmel = LogMel(cfg)
    batch = logmel(x)
    assert batch.shape == (3, 40, 101)
    for i in range(3):  # batched == one by one, bit for bit on CPU (normalised per clip)
        assert torch.equal(batch[i], logmel(x[i]))
    # A clip and a quieter copy give the same normalised log-mel (ref = per-clip max).
    torch.testing.assert_close(logmel(x[0]), logmel(x[0] * 0.01), rtol=1e-4, atol=1e-4)
    power = logmel.power(x)
    assert torch.equal(power_to_db(power.clone(), inplace=True), power_to_db(power))
    xg = x.clone().requires_grad_(True)
    # The in-place CPU path (no autograd) and the differentiable torch.stft path agree.
    torch.testing.assert_close(logmel(xg), batch, rtol=1e-5, atol=1e-6)
    logmel(xg).sum().backward()
    assert xg.grad is not None and torch.isfinite(xg.grad).all() and xg.grad.abs().sum() > 0
    short = logmel(torch.randn(100, generator=gen))  # shorter than n_fft/2: zero-padded frames
    assert short.shape == (40, 1) and torch.isfinite(short).all()
    with pytest.raises(InputError, match="LogMel"):
        logmel(torch.zeros(1, 1, 100))


@pytest.mark.cuda
def test_logmel_same_on_gpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    x = torch.randn(4, 44100 * 2, generator=torch.Generator().manual_seed(1))
    cpu = LogMel()(x)
    gpu = LogMel().to("cuda")(x.to("cuda")).cpu()
    torch.testing.assert_close(gpu, cpu, rtol=1e-4, atol=2e-5)


def test_fix_length_policies():
    x = torch.arange(10.0)[None]  # (1, 10)
    assert fix_length(x, 4, crop="start").tolist() == [[0, 1, 2, 3]]
    assert fix_length(x, 4, crop="centre").tolist() == [[3, 4, 5, 6]]
    assert fix_length(x, 4, crop="center").tolist() == [[3, 4, 5, 6]]
    loud = torch.zeros(2, 10)
    loud[1, 6:9] = 1.0  # the loudest 4-sample window starts at 5 (earliest of the ties 5, 6)
    assert fix_length(loud, 4, crop="loudest")[1].tolist() == [0, 1, 1, 1]
    assert fix_length(x, 13, pad="silence").tolist() == [list(range(10)) + [0, 0, 0]]
    assert fix_length(x, 13, pad="loop").tolist() == [list(range(10)) + [0, 1, 2]]
    assert fix_length(x[:, :3], 8, pad="loop").tolist() == [[0, 1, 2, 0, 1, 2, 0, 1]]
    assert fix_length(x, 10) is x


def test_random_crop_needs_a_generator_and_is_reproducible():
    x = torch.arange(1000.0)
    with pytest.raises(InputError, match="generator"):
        fix_length(x, 100, crop="random")
    a = [fix_length(x, 100, crop="random", generator=torch.Generator().manual_seed(7))[0].item() for _ in range(3)]
    assert len(set(a)) == 1
    gen = torch.Generator().manual_seed(7)
    starts = {int(fix_length(x, 100, crop="random", generator=gen)[0]) for _ in range(50)}
    assert len(starts) > 10 and min(starts) >= 0 and max(starts) <= 900
    with pytest.raises(InputError, match="crop"):
        fix_length(x, 100, crop="middle")
    with pytest.raises(InputError, match="pad"):
        fix_length(x, 2000, pad="reflect")


def test_prepare_clips_fixed_length_at_the_config_rate(esc50_root, formats_dir, tmp_path):
    import soundfile as sf

    cfg = AudioConfig(sample_rate=22050, duration=2.0)
    flac = sorted((esc50_root / "audio").glob("*.flac"))[0]  # 16 kHz, 5 s
    batch = prepare_clips([flac, formats_dir / "animals__amphibians__frog.ogg"], cfg)  # 5 s and 1.5 s
    assert batch.shape == (2, 44100) and batch.dtype == torch.float32
    assert float(batch[1, 40000:].abs().max()) == 0.0  # padded with silence
    looped = prepare_clips([formats_dir / "animals__amphibians__frog.ogg"], cfg, pad="loop")
    assert float(looped[0, 40000:].abs().max()) > 0.0
    # start/centre crops decode only their window of a long file: same as slicing the whole
    t = np.arange(16000 * 6) / 16000
    y = (0.3 * np.sin(2 * np.pi * 200 * t) * (1 + t)).astype(np.float32) / 7
    path = tmp_path / "long.wav"
    sf.write(path, y, 16000, subtype="FLOAT")
    cfg16 = AudioConfig(sample_rate=16000, duration=2.0)
    np.testing.assert_array_equal(prepare_clips(path, cfg16, crop="centre")[0].numpy(), y[32000:64000])
    np.testing.assert_array_equal(prepare_clips(path, cfg16, crop="loudest")[0].numpy(), y[-32000:])
    mel = LogMel(cfg)(batch)
    assert mel.shape == (2, 128, 1 + 44100 // 512)


@pytest.mark.parametrize("sr,n_fft,n_mels,f_min,f_max", [(44100, 2048, 128, 0.0, None), (16000, 512, 40, 0.0, None),
                                                         (22050, 4096, 64, 300.0, 8000.0), (8000, 256, 80, 0.0, None)])
def test_block_sparse_filterbank_covers_every_weight(sr, n_fft, n_mels, f_min, f_max):
    from soundedit.audio.banded import column_blocks

    fb = mel_filterbank(sr, n_fft, n_mels, f_min=f_min, f_max=f_max)
    power = torch.rand(n_fft // 2 + 1, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for blocks in (column_blocks(fb), column_blocks(fb, step=64, overhead=0)):
        mel = torch.zeros(n_mels, 7, dtype=torch.float64)
        for k0, k1, m0, m1 in blocks:
            assert k0 < k1 and m0 < m1
            mel[m0:m1] += fb[m0:m1, k0:k1] @ power[k0:k1]
        torch.testing.assert_close(mel, fb @ power, rtol=1e-12, atol=0)
    cfg = AudioConfig(sample_rate=sr, n_fft=n_fft, hop_length=n_fft // 4, n_mels=n_mels, f_min=f_min, f_max=f_max)
    x = torch.randn(2, sr // 2, generator=torch.Generator().manual_seed(1))
    logmel = LogMel(cfg, compute_dtype=torch.float64)
    torch.testing.assert_close(logmel.power(x), logmel._power(x.double()), rtol=1e-10, atol=1e-12)


def test_cpu_plan_is_reused_for_short_clips_and_dropped_for_long_ones(monkeypatch):
    from soundedit.audio.features import _ClipPlan

    logmel = LogMel(AudioConfig(sample_rate=16000, n_fft=512, hop_length=160, n_mels=40))
    x = torch.randn(2, 16000, generator=torch.Generator().manual_seed(0))
    first = logmel(x)
    plan = _ClipPlan._last.plan
    assert plan is not None and plan.n == 16000
    torch.testing.assert_close(logmel(x), first, rtol=0, atol=0)  # the reused buffers give the same numbers
    assert _ClipPlan._last.plan is plan
    monkeypatch.setattr(_ClipPlan, "MAX_KEPT_BYTES", plan.nbytes - 1)
    logmel(torch.randn(1, 20000))
    assert _ClipPlan._last.plan is None  # too big to keep
