"""Timings and peak memory of the StyleGAN2 generator (and the IR-SE50 identity net); prints a table.

    python benchmarks/models.py                          # CPU: 256 and 1024 px, batch 1 and 4
    python benchmarks/models.py --sizes 256 --batch 1 2 4 8 --device cuda

Per case: forward (``no_grad``) and forward+backward to W+ (the editing loop's cost
per step; parameters frozen, as ``load_generator`` returns them), with the stored
noise.  Weights are random, in config-f widths (channel_multiplier 2, 512-d, 8 mapping
layers); the arithmetic is that of the real networks.  Each case runs in a fresh
process so its peak memory is its own: max RSS growth over the process's baseline on
CPU, ``torch.cuda.max_memory_allocated`` on CUDA.  A case whose first (warm-up) call
takes over ``--single-run-above`` seconds is reported from that one call.

Memory on CPU grows with batch x resolution: 256 px batch 4 forward+backward peaks near
6 GB and 1024 px batch 1 near 5.5 GB, so 1024 px at batch 4 needs about 20 GB; pass
``--sizes 256 --batch 1 4`` / ``--sizes 1024 --batch 1`` on smaller machines.

CLIP ViT-B/32 image-embedding timings live in ``benchmarks/clip_space.py``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, device: torch.device, repeats: int, single_run_above: float) -> tuple[float, float]:
    """Median wall time and CPU time (s) of ``fn``; the warm-up call counts when it is already slow.

    CPU time (all threads) is reported too because on a shared machine wall time mostly
    measures the other processes.
    """
    def once() -> tuple[float, float]:
        _sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        _sync(device)
        return time.perf_counter() - t0, time.process_time() - c0

    first = once()
    if first[0] > single_run_above:
        return first
    runs = [once() for _ in range(repeats)]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_case(model: str, size: int, batch: int, mode: str, device_name: str, repeats: int,
             single_run_above: float) -> dict:
    """One measurement in this process (called in a child process by :func:`main`)."""
    from soundedit.models.identity import IdentityNet
    from soundedit.models.stylegan2.generator import Generator, GeneratorConfig

    device = torch.device(device_name)
    torch.manual_seed(0)
    if model == "generator":
        net = Generator(GeneratorConfig(resolution=size, channel_multiplier=2)).eval().requires_grad_(False)
        net = net.to(device)
        x = net.map(torch.randn(batch, net.style_dim, device=device))
        step = lambda inp: net.synthesize(inp)  # noqa: E731
    else:
        net = IdentityNet().eval().requires_grad_(False).to(device)
        x = torch.randn(batch, 3, size, size, device=device)
        step = net.embed_faces
    base_rss = _rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def forward():
        with torch.no_grad():
            step(x)

    def forward_backward():
        inp = x.detach().requires_grad_(True)
        step(inp).square().mean().backward()

    seconds, cpu_seconds = _time(forward if mode == "forward" else forward_backward, device, repeats,
                                 single_run_above)
    peak = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else _rss_mb() - base_rss)
    return {"model": model, "size": size, "batch": batch, "mode": mode, "device": device_name,
            "seconds": seconds, "cpu_seconds": cpu_seconds, "peak_mb": peak, "threads": torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--modes", nargs="+", default=["forward", "forward+backward"],
                    choices=["forward", "forward+backward"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--single-run-above", type=float, default=3.0)
    ap.add_argument("--identity", action=argparse.BooleanOptionalAction, default=True,
                    help="also time the IR-SE50 identity net on 1024 px images")
    ap.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case, print JSON
    a = ap.parse_args()
    if a.case:
        model, size, batch, mode = a.case.split(":")
        print(json.dumps(run_case(model, int(size), int(batch), mode, a.device, a.repeats, a.single_run_above)))
        return

    cases = [("generator", s, b, m) for s in a.sizes for b in a.batch for m in a.modes]
    if a.identity:
        cases += [("identity", 1024, b, m) for b in a.batch for m in a.modes]
    print(f"torch {torch.__version__}, device {a.device}, {torch.get_num_threads()} threads; "
          f"StyleGAN2 config-f widths, random weights; peak = {'CUDA max allocated' if a.device != 'cpu' else 'RSS growth'}")
    print(f"{'model':<10} {'px':>5} {'batch':>5} {'mode':<17} {'seconds':>9} {'cpu s':>9} {'img/s':>7} {'peak MB':>9}")
    for model, size, batch, mode in cases:
        cmd = [sys.executable, __file__, "--case", f"{model}:{size}:{batch}:{mode}", "--device", a.device,
               "--repeats", str(a.repeats), "--single-run-above", str(a.single_run_above)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{model:<10} {size:>5} {batch:>5} {mode:<17} failed: {proc.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{model:<10} {size:>5} {batch:>5} {mode:<17} {r['seconds']:>9.3f} {r['cpu_seconds']:>9.3f} "
              f"{batch / r['seconds']:>7.2f} "
              f"{r['peak_mb']:>9.0f}", flush=True)


if __name__ == "__main__":
    main()
