"""StyleGAN2 ops speed: compiled CUDA kernels vs the PyTorch reference (eager and under torch.compile).

Per op (forward + backward, shapes of the top layer of a config-f generator at ``--resolution``):

* ``blur``: upfirdn2d 4x4 [1,3,3,1] FIR, up 1, pad (1, 1) on the transposed conv's (R+1)^2 output;
* ``upsample``: upfirdn2d x2 (pad (2, 1)) of the 3-channel RGB skip, R/2 -> R;
* ``bias_act``: bias + leaky ReLU 0.2 with gain sqrt(2) on (B, C, R, R).

Whole step: ``G.synthesize(w_plus)`` forward + backward to W+ (the latent optimiser's inner loop),
randomly initialised generator (timing does not depend on the weights), batch 1 and 4, float32 and
bfloat16 (autocast). Paths: ``kernels`` (SOUNDEDIT_CUDA_OPS=on), ``eager`` (off), ``compile``
(off, the function under ``torch.compile``). Median of ``--repeats`` timed runs after
``--warmup`` runs, CUDA events; peak memory is ``torch.cuda.max_memory_allocated`` over the timed
runs. Target (issue 10): kernels >= 1.3x eager for the 1024 px step and not slower than compile.

Usage::

    python benchmarks/cuda_ops.py                       # full table (GPU)
    python benchmarks/cuda_ops.py --resolution 256 --no-compile --repeats 5
    python benchmarks/cuda_ops.py --json results.json

Without a CUDA GPU it says so, times the CPU reference ops only (small shapes) and exits 0.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable

import torch

from soundedit.models.stylegan2 import ops
from soundedit.models.stylegan2.generator import Generator, GeneratorConfig, default_channels
from soundedit.models.stylegan2.layers import make_kernel
from soundedit.models.stylegan2.ops import reference

PATHS = ("kernels", "eager", "compile")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _set_path(path: str) -> None:
    os.environ[ops.ENV_VAR] = "on" if path == "kernels" else "off"


def _time_cuda(fn: Callable[[], None], warmup: int, repeats: int) -> tuple[float, float]:
    """(median ms, peak MiB) of ``fn`` on the current CUDA device."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    return statistics.median(times), peak


def _time_cpu(fn: Callable[[], None], warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def op_cases(resolution: int, batch: int, device: str, dtype: torch.dtype) -> dict[str, Callable]:
    """name -> fn(upfirdn2d, fused_leaky_relu) -> one forward + backward."""
    channels = default_channels(resolution, 2)[-1]
    gen = torch.Generator().manual_seed(0)
    blur_k = make_kernel((1, 3, 3, 1)).to(device)
    up_k = (make_kernel((1, 3, 3, 1)) * 4).to(device)
    x_blur = torch.randn(batch, channels, resolution + 1, resolution + 1, generator=gen).to(device, dtype)
    x_rgb = torch.randn(batch, 3, resolution // 2, resolution // 2, generator=gen).to(device, dtype)
    x_act = torch.randn(batch, channels, resolution, resolution, generator=gen).to(device, dtype)
    bias = torch.randn(channels, generator=gen).to(device)
    for t in (x_blur, x_rgb, x_act):
        t.requires_grad_(True)
    bias.requires_grad_(True)

    def blur(up_fn, act_fn):
        x_blur.grad = None
        up_fn(x_blur, blur_k, 1, 1, (1, 1)).sum().backward()

    def upsample(up_fn, act_fn):
        x_rgb.grad = None
        up_fn(x_rgb, up_k, 2, 1, (2, 1)).sum().backward()

    def bias_act(up_fn, act_fn):
        x_act.grad = bias.grad = None
        act_fn(x_act, bias, 0.2, math.sqrt(2)).sum().backward()

    return {"blur": blur, "upsample": upsample, "bias_act": bias_act}


def _op_fns(path: str) -> tuple[Callable, Callable]:
    if path == "kernels":
        return ops.upfirdn2d, ops.fused_leaky_relu
    if path == "eager":
        return reference.upfirdn2d, reference.fused_leaky_relu
    return torch.compile(reference.upfirdn2d), torch.compile(reference.fused_leaky_relu)


def bench_ops(args, device: str, rows: list[dict]) -> None:
    for dtype_name in args.dtypes:
        dtype = DTYPES[dtype_name]
        for batch in args.batch:
            cases = op_cases(args.resolution, batch, device, dtype)
            for name, case in cases.items():
                for path in args.paths:
                    _set_path(path)
                    up_fn, act_fn = _op_fns(path)
                    ms, peak = _time_cuda(lambda: case(up_fn, act_fn), args.warmup, args.repeats)
                    rows.append(dict(kind="op", case=name, dtype=dtype_name, batch=batch, path=path, ms=ms, peak_mib=peak))
                    _progress(rows[-1])


def bench_step(args, device: str, rows: list[dict]) -> None:
    G = Generator(GeneratorConfig(resolution=args.resolution)).to(device).eval().requires_grad_(False)
    for dtype_name in args.dtypes:
        for batch in args.batch:
            gen = torch.Generator().manual_seed(1)
            w = torch.randn(batch, G.n_latent, G.style_dim, generator=gen).to(device).requires_grad_(True)
            probe = torch.randn(batch, 3, G.resolution, G.resolution, generator=gen).to(device)
            for path in args.paths:
                _set_path(path)
                synth = torch.compile(G.synthesize) if path == "compile" else G.synthesize

                def step():
                    w.grad = None
                    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype_name == "bf16"):
                        img = synth(w, noise="const")
                    (img.float() * probe).sum().backward()

                ms, peak = _time_cuda(step, args.warmup, args.repeats)
                rows.append(dict(kind="step", case=f"G{args.resolution} fwd+bwd", dtype=dtype_name, batch=batch,
                                 path=path, ms=ms, peak_mib=peak))
                _progress(rows[-1])


def _progress(row: dict) -> None:
    print(f"  {row['kind']:4s} {row['case']:18s} {row['dtype']:4s} b{row['batch']} {row['path']:8s} "
          f"{row['ms']:9.3f} ms  {row['peak_mib']:9.1f} MiB", file=sys.stderr, flush=True)


def print_table(rows: list[dict]) -> None:
    """One line per (kind, case, dtype, batch): ms and peak MiB per path, speed-ups of the kernels."""
    groups: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        groups.setdefault((r["kind"], r["case"], r["dtype"], r["batch"]), {})[r["path"]] = r
    head = f"{'kind':5s} {'case':18s} {'dtype':5s} {'batch':>5s}"
    for p in PATHS:
        head += f" {p + ' ms':>12s} {p + ' MiB':>12s}"
    head += f" {'x eager':>8s} {'x compile':>9s}"
    print(head)
    print("-" * len(head))
    for (kind, case, dtype, batch), by_path in groups.items():
        line = f"{kind:5s} {case:18s} {dtype:5s} {batch:5d}"
        for p in PATHS:
            r = by_path.get(p)
            line += f" {r['ms']:12.3f} {r['peak_mib']:12.1f}" if r else f" {'-':>12s} {'-':>12s}"
        k = by_path.get("kernels")
        for other, width in (("eager", 8), ("compile", 9)):
            o = by_path.get(other)
            line += f" {o['ms'] / k['ms']:{width}.2f}" if (k and o) else f" {'-':>{width}s}"
        print(line)


def cpu_only(args) -> int:
    """No GPU: time the reference ops on the CPU at a small size, so the script still says something."""
    print("No CUDA GPU is visible (torch.cuda.is_available() is False): the compiled kernels run on CUDA "
          "only, so this times the CPU reference ops at a small size. Run on a GPU machine for the real table.")
    res, batch = 64, 1
    cases = op_cases(res, batch, "cpu", torch.float32)
    print(f"\nCPU reference ops, {res} px, batch {batch}, fp32, forward+backward (median of {args.repeats}):")
    for name, case in cases.items():
        ms = _time_cpu(lambda: case(reference.upfirdn2d, reference.fused_leaky_relu), 1, args.repeats)
        print(f"  {name:10s} {ms:9.2f} ms")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolution", type=int, default=1024, help="generator / op size in px")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=["fp32", "bf16"])
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile path (slow to compile)")
    parser.add_argument("--ops-only", action="store_true")
    parser.add_argument("--step-only", action="store_true")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    if args.no_compile:
        args.paths = [p for p in args.paths if p != "compile"]

    if not torch.cuda.is_available():
        return cpu_only(args)

    device = "cuda"
    torch.backends.cudnn.benchmark = True
    start = time.perf_counter()
    ops.load_extension(required=True)
    info = ops.status()
    print(f"GPU: {torch.cuda.get_device_name()} (sm_{''.join(map(str, torch.cuda.get_device_capability()))}), "
          f"torch {torch.__version__}, CUDA {torch.version.cuda}, nvcc {info['nvcc_version']}")
    built = info["build_seconds"]
    print(f"extension: {info['build_dir']} ({'built in %.0f s' % built if built else 'cached'}; "
          f"load {time.perf_counter() - start:.1f} s)")
    rows: list[dict] = []
    saved = os.environ.get(ops.ENV_VAR)
    try:
        if not args.step_only:
            bench_ops(args, device, rows)
        if not args.ops_only:
            bench_step(args, device, rows)
    finally:
        if saved is None:
            os.environ.pop(ops.ENV_VAR, None)
        else:
            os.environ[ops.ENV_VAR] = saved
    print()
    print_table(rows)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(dict(gpu=torch.cuda.get_device_name(), torch=torch.__version__, rows=rows), handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
