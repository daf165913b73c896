"""Audio front end speed: decode + resample + log-mel per clip, against librosa.

Prints ms per clip for (a) one 5 s clip and (b) a batch of 64 ESC-50 clips
(16 kHz FLAC, resampled to the paper's 44.1 kHz, 128-bin log-mel), each warm
(after three untimed runs, so librosa's numba JIT, torch's kernels and glibc's
allocator thresholds have settled), best of ``--repeats``.  Two librosa references
on the same clips:

* ``librosa mel``: ``power_to_db(melspectrogram(y), ref=np.max)`` on the same
  already decoded and resampled waveforms (compare with our log-mel stage);
* ``librosa end-to-end``: ``librosa.load(path, sr=44100)`` (its default soxr_hq
  resampler) + the same mel (compare with our whole pipeline).

The issue's target (>= 5x librosa per clip for the batch) is for the log-mel stage
against ``librosa.feature.melspectrogram``, with both sides at their default
threads; the end-to-end ratio is bounded by FLAC decoding (libsndfile, the same
decoder librosa uses, ~0.7 ms per 5 s clip per core).

Wall and process-CPU times are printed.  On a shared machine, compare like with
like: pin both sides to one thread, e.g.::

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
        python benchmarks/audio_frontend.py --threads 1 --workers 1

Other uses::

    python benchmarks/audio_frontend.py                      # torch's default threads
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


def _best_ms(fn, repeats: int, sync) -> tuple[float, float]:
    """Best wall-clock and best process-CPU milliseconds of ``fn`` over ``repeats`` warm runs.

    CPU time is reported too because on a shared machine wall time mostly measures the
    neighbours; with ``--threads 1`` the CPU time is the work itself.
    """
    for _ in range(3):  # warm-up (untimed): JITs, kernels, and the allocator's steady state
        fn()
    sync()
    wall = cpu = float("inf")
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        sync()
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    return wall * 1e3, cpu * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    parser.add_argument("--batch", type=int, default=64, help="clips in the batch case")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs; the best is reported")
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
        row = {"case": label}
        row["ours"] = _per_clip(_best_ms(lambda: ours(clips, workers), args.repeats, sync), n)
        row["ours decode+resample"] = _per_clip(_best_ms(lambda: ours_stages(clips, workers), args.repeats, sync), n)
        waves = prepare_clips(clips, config, device=device)
        with torch.no_grad():
            row["ours log-mel"] = _per_clip(_best_ms(lambda: logmel(waves), args.repeats, sync), n)
        if not args.no_librosa:
            import librosa

            ys = [w.cpu().numpy() for w in waves]

            def mel(y):
                return librosa.power_to_db(librosa.feature.melspectrogram(
                    y=y, sr=config.sample_rate, n_fft=config.n_fft, hop_length=config.hop_length,
                    n_mels=config.n_mels, pad_mode="reflect"), ref=np.max)

            row["librosa mel"] = _per_clip(_best_ms(lambda: [mel(y) for y in ys], args.repeats, lambda: None), n)
            row["librosa load+mel"] = _per_clip(_best_ms(
                lambda: [mel(librosa.load(p, sr=config.sample_rate)[0]) for p in clips], args.repeats, lambda: None), n)
        rows.append(row)

    for row in rows:
        print(f"{row['case']} (ms per clip, wall / process CPU):")
        for key, value in row.items():
            if key != "case":
                print(f"  {key:<22} {value[0]:8.2f} / {value[1]:8.2f}")
        if "librosa mel" in row:
            for what, ours_key, ref_key in (("log-mel stage vs librosa mel", "ours log-mel", "librosa mel"),
                                            ("whole pipeline vs librosa load+mel", "ours", "librosa load+mel")):
                (w_ours, c_ours), (w_ref, c_ref) = row[ours_key], row[ref_key]
                print(f"  speed-up, {what}: {w_ref / w_ours:.1f}x wall, {c_ref / c_ours:.1f}x CPU")


def _per_clip(times: tuple[float, float], n: int) -> tuple[float, float]:
    return times[0] / n, times[1] / n

if __name__ == "__main__":
    main()
