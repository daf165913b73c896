"""StyleGAN2 ops speed: compiled CUDA kernels vs the PyTorch reference (eager and under torch.compile).

Per op (forward, then backward of a dense random gradient; shapes of the top layer of a config-f
generator at ``--resolution``):

* ``blur``: upfirdn2d 4x4 [1,3,3,1] FIR, up 1, pad (1, 1) on the transposed conv's (R+1)^2 output;
* ``upsample``: upfirdn2d x2 (pad (2, 1)) of the 3-channel RGB skip, R/2 -> R;
* ``bias_act``: bias + leaky ReLU 0.2 with gain sqrt(2) on (B, C, R, R);
* ``modulate``: the per-sample modulated, demodulated 3x3 weights of a 512-channel layer (B, 512, 512, 3, 3).

Whole step: ``G.synthesize(w_plus)`` forward + backward to W+ (the latent optimiser's inner loop),
randomly initialised generator (timing does not depend on the weights), batch 1 and 4, float32 and
bfloat16 (autocast). Paths: ``kernels`` (SOUNDEDIT_CUDA_OPS=on), ``eager`` (off), ``kernels+graph`` and
``eager+graph`` (the same step replayed as a CUDA graph by :class:`soundedit.steps.StepGraph`, as the
latent optimisers run it on CUDA; the capture time is reported apart), ``compile``
(off, the function under ``torch.compile(dynamic=False)``, compiled afresh per case; the compile
time is reported apart) and ``compile+kernels`` (on, under ``torch.compile``: the kernels enter the
compiled graph as custom operators). Asked for by ``--paths`` only: ``scaled``, ``scaled+graph`` and
``kernels+scaled+graph``, the modulated convolutions in the scaled-input, channels-last form that the CPU
uses (``ops.scales_input``: no per-sample weights, so no weight gradient in backward) with the reference
ops or the kernels, to see whether it pays on the GPU too (on an H100 it did not). Median of
``--repeats`` timed runs after ``--warmup`` runs, CUDA events;
peak memory is ``torch.cuda.max_memory_allocated`` over the timed runs, above what was allocated
before (for the graphed paths: over warm-up, capture and replays, after one eager step that lets
cuDNN's autotuning allocate and free its trial workspaces). "fp32" keeps torch's defaults
(cuDNN convolutions may use TF32, matmuls do not). The compiled steps run last, so that a time
limit cuts them first; every row is written to ``--json`` as soon as it is measured, and a case
that fails is recorded with its error.
``--profile DIR`` also writes the top CUDA kernels of one fp32 batch-1 step per path. The kernel
launches of one batch-1 step per path are counted first (on a CPU-only machine too, when the
extension builds): at batch 1 the host time per launch, not the GPU, sets the step time.
Target (issue 10): kernels >= 1.3x eager for the 1024 px step and not slower than compile.
(``--paths`` picks paths; ``--no-compile`` drops the compiled ones.)

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
from types import SimpleNamespace

import torch

from soundedit.models.stylegan2 import ops
from soundedit.models.stylegan2.generator import Generator, GeneratorConfig, default_channels
from soundedit.models.stylegan2.layers import make_kernel
from soundedit.models.stylegan2.ops import reference
from soundedit.steps import StepGraph
from soundedit.testing.generators import seeded_generator
from soundedit.testing.stylegan2_ops import count_step_launches

PATHS = ("kernels", "eager", "kernels+graph", "eager+graph", "compile", "compile+kernels", "scaled", "scaled+graph",
         "kernels+scaled+graph")
COMPILED = ("compile", "compile+kernels")
GRAPHED = ("kernels+graph", "eager+graph", "scaled+graph", "kernels+scaled+graph")  # whole step only
#: the modulated convolutions in their scaled-input, channels-last form (the CPU's choice,
#: ``ops.scales_input``), tried on the GPU with the reference ops or the kernels; whole step only
SCALED = ("scaled", "scaled+graph", "kernels+scaled+graph")
DEFAULT_PATHS = tuple(p for p in PATHS if p not in SCALED)
LABELS = {"kernels": "k", "eager": "eager", "kernels+graph": "k+g", "eager+graph": "e+g", "compile": "compile",
          "compile+kernels": "c+k", "scaled": "s", "scaled+graph": "s+g",
          "kernels+scaled+graph": "k+s+g"}  # table headings
#: speed-ups printed per row: (faster path, slower path)
SPEEDUPS = (("kernels", "eager"), ("kernels+graph", "eager"), ("kernels+graph", "eager+graph"),
            ("kernels", "compile"), ("kernels+graph", "compile"), ("compile+kernels", "compile"),
            ("scaled+graph", "eager+graph"), ("kernels+scaled+graph", "kernels+graph"))
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


_scales_input_on_cpu = ops.scales_input


def _set_path(path: str) -> None:
    os.environ[ops.ENV_VAR] = "on" if "kernels" in path else "off"
    ops.scales_input = (lambda x: True) if path in SCALED else _scales_input_on_cpu


def _time_cuda(fn: Callable[[], None], warmup: int, repeats: int, base: int | None = None) -> tuple[float, float]:
    """(median ms, peak MiB) of ``fn`` on the current CUDA device.

    Peak memory is over the timed runs above what was allocated before them, or, with ``base``,
    since the caller reset the peak statistics and read ``base`` (a graphed step's memory is
    allocated once, at capture, before the timed runs).
    """
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    if base is None:
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
    """name -> fn(impl) -> one forward + backward; ``impl`` has the three ops (kernels, reference or compiled)."""
    channels = default_channels(resolution, 2)[-1]
    gen = torch.Generator().manual_seed(0)
    blur_k = make_kernel((1, 3, 3, 1)).to(device)
    up_k = (make_kernel((1, 3, 3, 1)) * 4).to(device)
    x_blur = torch.randn(batch, channels, resolution + 1, resolution + 1, generator=gen).to(device, dtype)
    x_rgb = torch.randn(batch, 3, resolution // 2, resolution // 2, generator=gen).to(device, dtype)
    x_act = torch.randn(batch, channels, resolution, resolution, generator=gen).to(device, dtype)
    bias = torch.randn(channels, generator=gen).to(device)
    weight = torch.randn(1, 512, 512, 3, 3, generator=gen).to(device)  # a 4..64 px layer's 3x3 weights (float32)
    styles = torch.randn(batch, 512, generator=gen).to(device, dtype)
    for t in (x_blur, x_rgb, x_act, bias, styles):
        t.requires_grad_(True)
    # Each case back-propagates a dense gradient, as a layer inside the generator receives: the
    # stride-0 gradient of a .sum() would make the kernels copy it out first (they read dense
    # tensors; the eager element-wise ops read the broadcast one in place), which the step never does.
    grads: dict[tuple, torch.Tensor] = {}

    def backward(out: torch.Tensor) -> None:
        key = (tuple(out.shape), out.dtype)
        if key not in grads:
            grads[key] = torch.randn(out.shape, generator=torch.Generator().manual_seed(2)).to(device, out.dtype)
        out.backward(grads[key])

    def blur(impl):
        x_blur.grad = None
        backward(impl.upfirdn2d(x_blur, blur_k, 1, 1, (1, 1)))

    def upsample(impl):
        x_rgb.grad = None
        backward(impl.upfirdn2d(x_rgb, up_k, 2, 1, (2, 1)))

    def bias_act(impl):
        x_act.grad = bias.grad = None
        backward(impl.fused_leaky_relu(x_act, bias, 0.2, math.sqrt(2)))

    def modulate(impl):
        styles.grad = None
        backward(impl.modulated_weight(weight, styles, 1 / math.sqrt(512 * 9), True))

    return {"blur": blur, "upsample": upsample, "bias_act": bias_act, "modulate": modulate}


_OPS = ("upfirdn2d", "fused_leaky_relu", "modulated_weight")


def _op_fns(path: str) -> SimpleNamespace:
    if path == "kernels":
        return SimpleNamespace(**{name: getattr(ops, name) for name in _OPS})
    if path == "eager":
        return SimpleNamespace(**{name: getattr(reference, name) for name in _OPS})
    torch._dynamo.reset()  # the kernels-or-reference choice is made at compile time
    source = ops if "kernels" in path else reference
    return SimpleNamespace(**{name: torch.compile(getattr(source, name), dynamic=False) for name in _OPS})


class Recorder:
    """Collects result rows, prints each as it comes and rewrites ``--json`` after every row."""

    def __init__(self, json_path: str | None) -> None:
        self.rows: list[dict] = []
        self.json_path = json_path

    def add(self, row: dict) -> None:
        self.rows.append(row)
        _progress(row)
        if self.json_path:
            tmp = f"{self.json_path}.tmp"
            with open(tmp, "w") as handle:
                json.dump(dict(gpu=torch.cuda.get_device_name(), torch=torch.__version__, rows=self.rows), handle,
                          indent=1)
            os.replace(tmp, self.json_path)

    def measure(self, fn: Callable[[], None], args, base: int | None = None, **row) -> None:
        """Time ``fn`` and record it; a failure (compile error, out of memory) becomes an error row."""
        try:
            ms, peak = _time_cuda(fn, args.warmup, args.repeats, base)
        except Exception as exc:  # noqa: BLE001 - a benchmark case that fails is reported, the rest still run
            torch.cuda.synchronize()
            self.add(dict(row, ms=None, peak_mib=None, error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"))
            return
        self.add(dict(row, ms=ms, peak_mib=peak))


def bench_ops(args, device: str, rec: Recorder) -> None:
    for dtype_name in args.dtypes:
        dtype = DTYPES[dtype_name]
        for batch in args.batch:
            cases = op_cases(args.resolution, batch, device, dtype)
            for name, case in cases.items():
                for path in [p for p in args.paths if p not in GRAPHED + SCALED]:
                    _set_path(path)
                    impl = _op_fns(path)
                    rec.measure(lambda: case(impl), args, kind="op", case=name, dtype=dtype_name,
                                batch=batch, path=path)


def _step_fn(G: Generator, synth: Callable, batch: int, dtype_name: str, device: str) -> Callable[[], None]:
    """One latent-optimiser step: render from W+ and back-propagate a fixed linear loss to W+."""
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(batch, G.n_latent, G.style_dim, generator=gen).to(device).requires_grad_(True)
    probe = torch.randn(batch, 3, G.resolution, G.resolution, generator=gen).to(device)

    def step() -> None:
        w.grad = None
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype_name == "bf16"):
            img = synth(w, noise="const")
        (img.float() * probe).sum().backward()

    return step


def bench_step(args, device: str, rec: Recorder, paths: list[str]) -> None:
    G = Generator(GeneratorConfig(resolution=args.resolution)).to(device).eval().requires_grad_(False)
    case = f"G{args.resolution} fwd+bwd"
    for dtype_name in args.dtypes:
        for batch in args.batch:
            for path in paths:
                _set_path(path)
                row = dict(kind="step", case=case, dtype=dtype_name, batch=batch, path=path)
                synth = G.synthesize
                if path in COMPILED:
                    torch._dynamo.reset()  # each case compiles from scratch, and its compile time is its own
                    synth = torch.compile(G.synthesize, dynamic=False)
                step = _step_fn(G, synth, batch, dtype_name, device)
                base = None
                if path in COMPILED or path in GRAPHED:
                    try:
                        if path in GRAPHED:
                            # one eager step first: cuDNN's autotuning (cudnn.benchmark) of a layout or
                            # dtype not met before allocates trial workspaces of up to tens of GiB, which
                            # a peak counted from before the graph's warm-up would report as the step's
                            step()
                            step = StepGraph(step, device=device, mode="on")
                            # the graph's memory is allocated at capture: count from before the warm-up
                            torch.cuda.synchronize()
                            torch.cuda.reset_peak_memory_stats()
                            base = torch.cuda.memory_allocated()
                        first_calls = step.warmup + 1 if path in GRAPHED else 1  # up to and with the capture
                        start = time.perf_counter()
                        for _ in range(first_calls):
                            step()
                        torch.cuda.synchronize()
                    except Exception as exc:  # noqa: BLE001 - reported (out of memory, say), the other cases still run
                        torch.cuda.synchronize()
                        rec.add(dict(row, ms=None, peak_mib=None, error=f"{type(exc).__name__}: {str(exc)[:200]}"))
                        continue
                    row["compile_s" if path in COMPILED else "capture_s"] = time.perf_counter() - start
                rec.measure(step, args, base=base, **row)


def profile_step(args, device: str, out_dir: str) -> None:
    """Append the top CUDA kernels of one fp32 batch-1 step, kernels and eager paths, to ``out_dir/profiles.txt``."""
    from torch.profiler import ProfilerActivity, profile

    G = Generator(GeneratorConfig(resolution=args.resolution)).to(device).eval().requires_grad_(False)
    os.makedirs(out_dir, exist_ok=True)
    for path in ("kernels", "eager"):
        _set_path(path)
        step = _step_fn(G, G.synthesize, 1, "fp32", device)
        for _ in range(args.warmup):
            step()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            step()
            torch.cuda.synchronize()
        table = prof.key_averages().table(sort_by="self_device_time_total", row_limit=30, max_name_column_width=70)
        with open(os.path.join(out_dir, "profiles.txt"), "a") as handle:
            handle.write(f"=== {path} path, G{args.resolution} fp32 batch 1, one step\n{table}\n")
        print(f"\nprofile, {path} path, G{args.resolution} fp32 batch 1 (top self device time):")
        print("\n".join(table.splitlines()[:14]))


def count_launches(resolution: int, device: str) -> dict[str, int]:
    """Kernels launched by one batch-1 step (forward + backward) per path: the host overhead's measure.

    The count does not depend on the feature widths, so a narrow generator is used (on the CPU the
    kernels path runs the extension's test loop, which needs the widths small). Needs the extension.
    """
    G = seeded_generator(size=resolution, style_dim=512, n_mlp=8, max_channels=4).to(device)
    w = G.map(torch.randn(1, 512, generator=torch.Generator().manual_seed(0)).to(device)).detach()
    code = w.clone().requires_grad_(True)

    def step() -> None:
        code.grad = None  # each step's gradient is fresh, as in the optimisers (no accumulating add)
        G.synthesize(code).sum().backward()

    counts = count_step_launches(step, ops.load_extension(required=True))
    return {"eager": sum(counts["reference"].values()), "kernels": sum(counts["kernels"].values())}


def _print_launches(resolution: int, device: str) -> None:
    counts = count_launches(resolution, device)
    print(f"kernel launches per G{resolution} batch-1 step (forward + backward): eager {counts['eager']}, "
          f"kernels {counts['kernels']} ({counts['kernels'] / counts['eager']:.2f}x)", flush=True)


def _progress(row: dict) -> None:
    head = f"  {row['kind']:4s} {row['case']:18s} {row['dtype']:4s} b{row['batch']} {row['path']:8s} "
    if row.get("error"):
        print(head + f"error: {row['error']}", file=sys.stderr, flush=True)
        return
    extra = f"  (compile {row['compile_s']:.0f} s)" if "compile_s" in row else ""
    extra += f"  (warm-up + capture {row['capture_s']:.2f} s)" if "capture_s" in row else ""
    print(head + f"{row['ms']:9.3f} ms  {row['peak_mib']:9.1f} MiB{extra}", file=sys.stderr, flush=True)


def print_table(rows: list[dict]) -> None:
    """One line per (kind, case, dtype, batch): ms and peak MiB per path, speed-ups of the kernels."""
    groups: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        if r.get("ms") is not None:
            groups.setdefault((r["kind"], r["case"], r["dtype"], r["batch"]), {})[r["path"]] = r
    paths = [p for p in PATHS if any(p in by_path for by_path in groups.values())]  # the paths measured
    speedups = [(fast, slow) for fast, slow in SPEEDUPS if fast in paths and slow in paths]
    head = f"{'kind':5s} {'case':18s} {'dtype':5s} {'batch':>5s}"
    for p in paths:
        head += f" {LABELS[p] + ' ms':>10s} {LABELS[p] + ' MiB':>10s}"
    for fast, slow in speedups:
        head += f" {LABELS[fast] + '/' + LABELS[slow]:>{_width(fast, slow)}s}"
    print(head)
    print("-" * len(head))
    for (kind, case, dtype, batch), by_path in groups.items():
        line = f"{kind:5s} {case:18s} {dtype:5s} {batch:5d}"
        for p in paths:
            r = by_path.get(p)
            line += f" {r['ms']:10.3f} {r['peak_mib']:10.1f}" if r else f" {'-':>10s} {'-':>10s}"
        for fast, slow in speedups:
            f, o, width = by_path.get(fast), by_path.get(slow), _width(fast, slow)
            line += f" {o['ms'] / f['ms']:{width}.2f}" if (f and o) else f" {'-':>{width}s}"
        print(line)


def _width(fast: str, slow: str) -> int:
    return max(6, len(LABELS[fast]) + len(LABELS[slow]) + 1)


def cpu_only(args) -> int:
    """No GPU: time the reference ops on the CPU at a small size, so the script still says something."""
    print("No CUDA GPU is visible (torch.cuda.is_available() is False): the compiled kernels run on CUDA "
          "only, so this times the CPU reference ops at a small size. Run on a GPU machine for the real table.")
    res, batch = 64, 1
    cases = op_cases(res, batch, "cpu", torch.float32)
    print(f"\nCPU reference ops, {res} px, batch {batch}, fp32, forward+backward (median of {args.repeats}):")
    for name, case in cases.items():
        ms = _time_cpu(lambda: case(_op_fns("eager")), 1, args.repeats)
        print(f"  {name:10s} {ms:9.2f} ms")
    try:  # the host-overhead figure needs only a build (the kernels' CPU test loop), not a GPU
        _print_launches(args.resolution, "cpu")
    except ops.CudaOpsUnavailableError as exc:
        print(f"(kernel launch count skipped: {exc})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolution", type=int, default=1024, help="generator / op size in px")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=["fp32", "bf16"])
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(DEFAULT_PATHS),
                        help="default: all but the scaled ones")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile paths (slow to compile)")
    parser.add_argument("--no-step-compile", action="store_true",
                        help="compile only the single ops, not the whole step (its compile takes about a minute per case)")
    parser.add_argument("--ops-only", action="store_true")
    parser.add_argument("--step-only", action="store_true")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--json", help="also write the rows to this JSON file (rewritten after every row)")
    parser.add_argument("--profile", metavar="DIR", help="write per-kernel CUDA profiles of one step per path here")
    args = parser.parse_args(argv)
    if args.no_compile:
        args.paths = [p for p in args.paths if p not in COMPILED]

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
    _print_launches(args.resolution, device)
    rec = Recorder(args.json)
    saved = os.environ.get(ops.ENV_VAR)
    try:
        if not args.step_only:
            bench_ops(args, device, rec)
        if not args.ops_only:
            bench_step(args, device, rec, [p for p in args.paths if p not in COMPILED])
            if args.profile:
                profile_step(args, device, args.profile)
            if not args.no_step_compile:
                bench_step(args, device, rec, [p for p in args.paths if p in COMPILED])
    finally:
        ops.scales_input = _scales_input_on_cpu
        if saved is None:
            os.environ.pop(ops.ENV_VAR, None)
        else:
            os.environ[ops.ENV_VAR] = saved
        print()
        print_table(rec.rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
