"""Alignment-training throughput: clips/s (data loading + one optimizer step, batch 32).

Encoders: ResNet18 and ResNet50 on the paper's 128-bin log-mel (5 s); mel cache on
(memory-mapped, pre-computed) and off (decode + resample + log-mel per clip).
Targets come from a tiny seeded CLIP text tower (its cost is negligible next to the
encoder), so no weights are needed.  Uses ESC-50 fold 1 from ../shared/audio (set
SOUNDEDIT_SHARED), 16 kHz FLAC resampled to the encoder's 44.1 kHz.

    python benchmarks/train.py [--device cpu|cuda] [--steps 3] [--archs resnet18,resnet50] [--workers 2]

Prints one row per (arch, cache) with clips/s over the timed steps (after a warm-up step).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=3, help="timed optimizer steps per setting")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--archs", default="resnet18,resnet50")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    import torch

    from soundedit.config import EncoderConfig, TrainConfig
    from soundedit.models import load_clip_space
    from soundedit.testing.clip import write_tiny_openai_clip
    from soundedit.training import importers
    from soundedit.training.loop import train_alignment

    shared = Path(os.environ.get("SOUNDEDIT_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    rows = importers.esc50(shared / "audio" / "esc50_fold1", folds=[1])
    n = args.batch_size * (args.steps + 1)  # one warm-up step + timed steps, one epoch
    rows = rows[:n]
    device = torch.device(args.device)
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else os.cpu_count()} "
          f"{'GPU' if device.type == 'cuda' else 'CPU cores'}), torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"batch {args.batch_size}, workers {args.workers}")
    print(f"{'encoder':10s} {'mel cache':10s} {'clips/s':>8s}")
    with tempfile.TemporaryDirectory() as tmp:
        clip = load_clip_space(write_tiny_openai_clip(Path(tmp) / "clip.pt", embed_dim=512), device=device)
        cache_dir = Path(tmp) / "mels"
        for arch in args.archs.split(","):
            for cached in (False, True):
                cfg = TrainConfig(encoder=EncoderConfig(arch=arch), batch_size=args.batch_size, epochs=1,
                                  text_augment=False, log_every_steps=0)
                if cached:  # build the cache outside the timing (it is computed once per dataset)
                    from soundedit.training.data import MelCache

                    MelCache.for_rows(rows, cfg.encoder.audio, cache_dir)
                times: list[float] = []

                def hook(step: int) -> None:
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    times.append(time.perf_counter())

                train_alignment(cfg, rows, clip=clip, out_dir=Path(tmp) / f"{arch}-{cached}", device=device,
                                cache_dir=cache_dir if cached else None, num_workers=args.workers, on_step=hook)
                rate = args.batch_size * (len(times) - 1) / (times[-1] - times[0])
                print(f"{arch:10s} {'on' if cached else 'off':10s} {rate:8.1f}", flush=True)


if __name__ == "__main__":
    main()
