"""Timings of the CLIP space and the audio encoders (prints a table; asserts nothing).

    python benchmarks/clip_space.py                 # CPU, ViT-B/32 with random weights
    python benchmarks/clip_space.py --device cuda --batch 1 4 16

Measured, per batch size:
* CLIP ViT-B/32 image embedding from generator output (256 and 1024 px), forward
  and forward+backward (the editing loop's cost per step), with our one-resize
  preprocessing and, for comparison, the authors' 7x upsample + average pool;
* text embedding (one template, a batch of prompts);
* audio encoders: the authors' resnet18 layout on (N, 1, 128, 512) and the paper's
  resnet50 on 5 s of 128-bin log-mel, forward and forward+backward, plus the
  log-mel front end (``prepare``) on real clips when ../shared/audio is present.

Weights are random (the architectures are built from open_clip's / timm's configs,
nothing is downloaded); the timings are those of the real networks.  Peak memory:
the process's maximum RSS on CPU, ``torch.cuda.max_memory_allocated`` on CUDA.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn: Callable[[], object], device: torch.device, repeats: int) -> tuple[float, float]:
    """Median and min wall time (ms) of ``fn`` after one warm-up call."""
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), min(times)


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _row(name: str, batch: int, timing: tuple[float, float], device: torch.device) -> None:
    median, best = timing
    print(f"{name:<44} {batch:>5} {median:>10.1f} {best:>10.1f} {_peak_mb(device):>10.0f}", flush=True)


def _authors_preprocess(img: torch.Tensor, size: int) -> torch.Tensor:
    """The authors' CLIP input: nearest 7x upsample, then average-pool by size // 32 (for comparison only)."""
    x = F.interpolate(img, scale_factor=7, mode="nearest")
    return F.avg_pool2d(x, kernel_size=size // 32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 1024], help="generator image sizes (px)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args()

    import open_clip

    from soundedit.config import AudioConfig, EncoderConfig
    from soundedit.models.audio_encoder import build_audio_encoder
    from soundedit.models.clip_space import ClipSpace
    from soundedit.runtime import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    print(f"# torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}", file=sys.stderr)
    model = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None)  # OpenAI's ViT-B/32 architecture
    space = ClipSpace(model, open_clip.get_tokenizer("ViT-B-32"), name="ViT-B-32 (random weights)").to(device)
    print(f"{'what':<44} {'batch':>5} {'median ms':>10} {'min ms':>10} {'peak MB':>10}")

    for size in args.sizes:
        for n in args.batch:
            img = torch.rand(n, 3, size, size, device=device) * 2 - 1
            _reset_peak(device)
            with torch.no_grad():
                _row(f"CLIP image embed {size}px, forward", n, _time(lambda: space.embed_image(img), device,
                                                                      args.repeats), device)
            leaf = img.clone().requires_grad_(True)

            def fwd_bwd() -> None:
                leaf.grad = None
                space.embed_image(leaf).sum().backward()

            _reset_peak(device)
            _row(f"CLIP image embed {size}px, fwd+bwd", n, _time(fwd_bwd, device, args.repeats), device)

            def authors_fwd_bwd() -> None:
                leaf.grad = None
                x = (_authors_preprocess(leaf, size) + 1) / 2
                x = (x - space.image_mean) / space.image_std
                F.normalize(space.model.encode_image(x), dim=-1).sum().backward()

            _reset_peak(device)
            _row("  authors' 7x upsample+pool, fwd+bwd", n, _time(authors_fwd_bwd, device, args.repeats), device)

    for n in args.batch:
        prompts = [f"the sound of thing number {i}" for i in range(n)]
        with torch.no_grad():
            _row("CLIP text embed, forward", n, _time(lambda: space.embed_text(prompts), device, args.repeats), device)

    encoders = {
        "authors' resnet18 (1,128,512)": (EncoderConfig(arch="resnet18", layout="official"), (1, 128, 512)),
        "resnet50 on 5 s log-mel (1,128,431)": (EncoderConfig(arch="resnet50"), (1, 128, 431)),
    }
    for name, (cfg, shape) in encoders.items():
        enc = build_audio_encoder(cfg, device=device)
        for n in args.batch:
            x = torch.randn(n, *shape, device=device)
            enc.eval()
            _reset_peak(device)
            with torch.no_grad():
                _row(f"{name}, forward", n, _time(lambda: enc(x), device, args.repeats), device)
            enc.train()

            def enc_fwd_bwd() -> None:
                enc.zero_grad(set_to_none=True)
                enc(x).square().mean().backward()

            _reset_peak(device)
            _row(f"{name}, fwd+bwd", n, _time(enc_fwd_bwd, device, args.repeats), device)

    shared = Path(__file__).resolve().parents[1].parent / "shared" / "audio" / "formats"
    clips = sorted(p for p in shared.iterdir() if p.is_file()) if shared.is_dir() else []
    if clips:
        official = build_audio_encoder(EncoderConfig(arch="resnet18", layout="official"), device=device).eval()
        clean = build_audio_encoder(EncoderConfig(arch="resnet18", audio=AudioConfig()), device=device).eval()
        _row(f"prepare: authors' transform ({len(clips)} files)", len(clips),
             _time(lambda: official.prepare(clips, device=device), device, args.repeats), device)
        _row(f"prepare: clean 5 s log-mel ({len(clips)} files)", len(clips),
             _time(lambda: clean.prepare(clips, device=device), device, args.repeats), device)


if __name__ == "__main__":
    main()
