"""Embedding throughput (clips/s) on ESC-50 fold 1: the authors' encoder layout vs ours, on CPU.

* authors: timm resnet18 behind a Conv2d(1->3) stem, fed by the authors' compat
  transform (librosa-style mel at 44.1 kHz -> pad to 864 frames -> resize -> reshape
  to (1, 128, 512)); weights seeded in their released ``.pth`` layout.
* ours: timm resnet50 (the paper's recipe) on the clean (1, 128, frames) log-mel of a
  5 s clip at 44.1 kHz; weights seeded in our safetensors layout.

Weights are seeded (real ones cannot be downloaded here), which does not change the
cost.  Reports front-end (decode + features), model forward and end-to-end rates;
the end-to-end run goes through ``soundedit.evaluation.embed_files`` with the cache
off, i.e. exactly what ``soundedit classify`` / ``eval`` do on a first run.

    python benchmarks/embedding_throughput.py [--root ../shared/audio/esc50_fold1] [--clips 400]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from soundedit.evaluation.datasets import load_dataset
from soundedit.evaluation.embeddings import embed_files
from soundedit.models import load_audio_encoder
from soundedit.testing.clip import write_tiny_audio_encoder

DEFAULT_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "audio" / "esc50_fold1"


def measure(name: str, encoder, paths: list[Path], batch_size: int) -> dict:
    t0 = time.perf_counter()
    inputs = [encoder.prepare(p) for p in paths]
    t_front = time.perf_counter() - t0
    batch = torch.cat(inputs)
    with torch.no_grad():
        encoder(batch[:2])  # warm-up (allocator, oneDNN primitives)
        t0 = time.perf_counter()
        for i in range(0, len(batch), batch_size):
            encoder(batch[i:i + batch_size])
        t_model = time.perf_counter() - t0
    t0 = time.perf_counter()
    got = embed_files(encoder, paths, batch_size=batch_size, cache_dir=None)
    t_total = time.perf_counter() - t0
    assert not got.failures and got.embeddings.shape == (len(paths), encoder.embed_dim)
    return {"encoder": name, "input": tuple(batch.shape[1:]), "front_end": len(paths) / t_front,
            "forward": len(paths) / t_model, "end_to_end": len(paths) / t_total}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="ESC-50 folder (fold 1 is enough)")
    ap.add_argument("--clips", type=int, default=400, help="clips to embed (fold 1 has 400)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    ds = load_dataset(args.root, folds=[1], limit=args.clips)
    paths = [c.path for c in ds.clips]
    with tempfile.TemporaryDirectory() as tmp:
        authors = load_audio_encoder(write_tiny_audio_encoder(Path(tmp) / "resnet18_57.pth", layout="official",
                                                              arch="resnet18")).eval()
        ours = load_audio_encoder(write_tiny_audio_encoder(Path(tmp) / "ours.safetensors", layout="clean",
                                                           arch="resnet50")).eval()
        rows = [measure("authors resnet18 + compat transform", authors, paths, args.batch_size),
                measure("ours resnet50, clean log-mel", ours, paths, args.batch_size)]
    print(f"ESC-50 fold 1, {len(paths)} clips (5 s, 16 kHz FLAC), CPU, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, batch {args.batch_size}")
    print(f"{'encoder':40s} {'model input':>16s} {'front end':>10s} {'forward':>10s} {'end to end':>11s}  (clips/s)")
    for r in rows:
        print(f"{r['encoder']:40s} {str(r['input']):>16s} {r['front_end']:10.1f} {r['forward']:10.1f} "
              f"{r['end_to_end']:11.1f}")


if __name__ == "__main__":
    main()
