"""Audio front end speed: decode + resample + log-mel per clip, against librosa.

Prints ms per clip for (a) one 5 s clip and (b) a batch of 64 ESC-50 clips
(16 kHz FLAC, resampled to the paper's 44.1 kHz, 128-bin log-mel), each warm
(after one untimed run, so librosa's numba JIT and torch's kernels are loaded),
best of ``--repeats``.  Two librosa references on the same clips:

* ``librosa mel``: ``power_to_db(melspectrogram(y), ref=np.max)`` on the same
  already decoded and resampled waveforms (compare with our log-mel stage);
* ``librosa end-to-end``: ``librosa.load(path, sr=44100)`` (its default soxr_hq
  resampler) + the same mel (compare with our whole pipeline).

Usage::

    python benchmarks/audio_frontend.py            # CPU
    python benchmarks/audio_frontend.py --device cuda --repeats 5

The clips are read from ``$SOUNDEDIT_SHARED/audio/esc50_fold1`` (default: the
``shared/`` folder beside the checkout).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from soundedit.audio import LogMel, prepare_clips
from soundedit.config import AudioConfig


def _shared() -> Path:
    return Path(os.environ.get("SOUNDEDIT_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))


def _best_ms(fn, repeats: int, sync) -> float:
    fn()  # warm-up (untimed)
    sync()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    parser.add_argument("--batch", type=int, default=64, help="clips in the batch case")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the best is reported")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="decoding threads")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--no-librosa", action="store_true", help="skip the librosa reference")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    root = _shared() / "audio" / "esc50_fold1" / "audio"
    paths = sorted(root.glob("*.flac"))[: args.batch]
    if len(paths) < args.batch:
        raise SystemExit(f"need {args.batch} FLAC clips under {root}, found {len(paths)} (set SOUNDEDIT_SHARED)")
    device = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    config = AudioConfig()  # 44.1 kHz, n_fft 2048, hop 512, 128 mels, 5 s
    logmel = LogMel(config).to(device)

    def ours(clips, workers):
        with torch.no_grad():
            return logmel(prepare_clips(clips, config, device=device, num_workers=workers))

    def ours_stages(clips, workers):
        return prepare_clips(clips, config, device=device, num_workers=workers)

    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs, {config.sample_rate} Hz, n_fft {config.n_fft}, hop {config.hop_length}, "
          f"{config.n_mels} mels, {config.duration:g} s clips from 16 kHz FLAC, "
          f"load average {os.getloadavg()[0]:.1f}")
    rows = []
    for label, clips, workers in (("one 5 s clip", paths[:1], 0), (f"batch of {len(paths)}", paths, args.workers)):
        n = len(clips)
        total = _best_ms(lambda: ours(clips, workers), args.repeats, sync) / n
        prep = _best_ms(lambda: ours_stages(clips, workers), args.repeats, sync) / n
        waves = prepare_clips(clips, config, device=device)
        with torch.no_grad():
            mel_ms = _best_ms(lambda: logmel(waves), args.repeats, sync) / n
        row = {"case": label, "ours_total": total, "ours_decode_resample": prep, "ours_logmel": mel_ms}
        if not args.no_librosa:
            import librosa

            ys = [w.cpu().numpy() for w in waves]

            def lib_mel():
                for y in ys:
                    librosa.power_to_db(librosa.feature.melspectrogram(
                        y=y, sr=config.sample_rate, n_fft=config.n_fft, hop_length=config.hop_length,
                        n_mels=config.n_mels, pad_mode="reflect"), ref=np.max)

            def lib_all():
                for p in clips:
                    y, sr = librosa.load(p, sr=config.sample_rate)
                    librosa.power_to_db(librosa.feature.melspectrogram(
                        y=y, sr=sr, n_fft=config.n_fft, hop_length=config.hop_length, n_mels=config.n_mels,
                        pad_mode="reflect"), ref=np.max)

            row["librosa_mel"] = _best_ms(lib_mel, args.repeats, lambda: None) / n
            row["librosa_total"] = _best_ms(lib_all, args.repeats, lambda: None) / n
        rows.append(row)

    for row in rows:
        line = (f"{row['case']:>16}: ours {row['ours_total']:7.2f} ms/clip "
                f"(decode+resample {row['ours_decode_resample']:.2f}, log-mel {row['ours_logmel']:.2f})")
        if "librosa_mel" in row:
            line += (f" | librosa mel {row['librosa_mel']:.2f} ms/clip -> our log-mel is "
                     f"{row['librosa_mel'] / row['ours_logmel']:.1f}x faster"
                     f" | librosa load+resample+mel {row['librosa_total']:.2f} ms/clip -> our pipeline is "
                     f"{row['librosa_total'] / row['ours_total']:.1f}x faster")
        print(line)


if __name__ == "__main__":
    main()
