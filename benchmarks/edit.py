"""Benchmark the sound-guided latent optimisation: seconds per step, peak memory, 300-step cost.

Full-size architectures with random weights (no download): StyleGAN2 config-f at 256 px
(14 latents) and 1024 px (18 latents), CLIP ViT-B/32 built by open_clip; batch 1 and 4.
Each configuration runs in its own process so its peak memory is its own.

    python benchmarks/edit.py                  # CPU table (+ GPU table when CUDA is present)
    python benchmarks/edit.py --steps 3        # fewer timed steps (CPU default 3)
    python benchmarks/edit.py --skip-cpu       # GPU only

GPU variants at 1024 px: fp32, TF32 matmuls/convolutions, bf16 autocast (these three as the
library runs them: steps after the third replay a CUDA graph, ``soundedit.steps.StepGraph``),
``tf32-nograph`` (the same steps issued one by one, SOUNDEDIT_CUDA_GRAPH=off) and torch.compile of
the generator and CLIP image tower (TF32, no graph), each after a warm-up run (compile time
excluded). On the GPU two runs of N and 2N steps give the cost of one more step (``s/step``) and
the fixed cost of a run (warm-up steps, graph capture): ``300 steps`` is fixed + 300 x s/step.
Targets (issue #5): a 300-step 1024-px edit under 15 s on one H100; per-image cost of a
batch of 4 at most 60 % of a single edit.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def _available_gib() -> float:
    """Memory a new process can have without swapping: MemAvailable (free + reclaimable page cache);
    the free pages alone undercount it by the page cache (8 of 21 GiB after a test run here)."""
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) / 2**20
    except (OSError, KeyError, ValueError):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30


def build(resolution: int, device: str):
    import open_clip
    import torch

    from soundedit.models.clip_space import ClipSpace
    from soundedit.testing.generators import seeded_generator

    G = seeded_generator(size=resolution, style_dim=512, n_mlp=8, channel_multiplier=2, max_channels=None).to(device)
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None, device=device)  # random init: timing only
    clip = ClipSpace(model, open_clip.get_tokenizer("ViT-B-32"), name="ViT-B-32 (random)").to(device)
    return G, clip


def one(resolution: int, batch: int, steps: int, device: str, variant: str) -> dict:
    """Time ``steps`` optimisation steps after warm-up; runs in a child process."""
    import contextlib

    import torch

    from soundedit.editing import optimize_latent
    from soundedit.editing.schedules import ConstantSchedule

    torch.set_grad_enabled(True)
    if variant in ("tf32-nograph", "compile"):
        os.environ["SOUNDEDIT_CUDA_GRAPH"] = "off"
    if device == "cuda":
        tf32 = variant in ("tf32", "tf32-nograph", "bf16", "compile")
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    G, clip = build(resolution, device)
    if variant == "compile":
        G.synthesize = torch.compile(G.synthesize)
        clip.model.encode_image = torch.compile(clip.model.encode_image)
    z = torch.randn(batch, 512, generator=torch.Generator().manual_seed(1)).to(device)
    with torch.no_grad():
        w_s = G.map(z, truncation=0.7)
    target = torch.nn.functional.normalize(torch.randn(batch, clip.embed_dim, device=device), dim=-1)
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if variant == "bf16" else contextlib.nullcontext()
    kw = dict(lr=0.1, lambda_sim=0.008, layer_mask="adaptive", schedule=ConstantSchedule())
    with ctx:
        optimize_latent(G, clip, target, w_s, steps=3 if variant == "compile" else 1, **kw)  # warm-up
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        runs = []  # (steps, wall s, cpu s, result)
        for n_steps in ((steps, 2 * steps) if device == "cuda" else (steps,)):
            start, cpu_start = time.perf_counter(), time.process_time()
            result = optimize_latent(G, clip, target, w_s, steps=n_steps, **kw)
            if device == "cuda":
                torch.cuda.synchronize()
            runs.append((n_steps, time.perf_counter() - start, time.process_time() - cpu_start, result))
    if len(runs) == 2:  # marginal cost of a step, and the fixed cost of a run (warm-up, capture)
        (n1, t1, c1, _), (n2, t2, c2, _) = runs
        seconds, cpu_seconds = (t2 - t1) / (n2 - n1), (c2 - c1) / (n2 - n1)
        fixed = max(0.0, t1 - n1 * seconds)
    else:
        n1, t1, c1, _ = runs[0]
        # CPU seconds of all threads: on a shared machine wall time depends on the neighbours,
        # this does not (an idle machine's wall time is about cpu_s_per_step / threads)
        seconds, cpu_seconds, fixed = t1 / n1, c1 / n1, 0.0
    peak = (torch.cuda.max_memory_allocated() if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"device": device, "variant": variant, "resolution": resolution, "n_latent": G.n_latent, "batch": batch,
            "s_per_step": seconds, "cpu_s_per_step": cpu_seconds, "s_per_step_per_image": seconds / batch,
            "s_fixed": fixed, "s_300_steps": fixed + 300 * seconds, "peak_mem_gib": peak / 2**30,
            "threads": torch.get_num_threads(), "cuda_graph": runs[-1][3].settings["cuda_graph"]}


def run_child(resolution: int, batch: int, steps: int, device: str, variant: str) -> dict:
    cmd = [sys.executable, __file__, "--child", json.dumps([resolution, batch, steps, device, variant])]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        return {"device": device, "variant": variant, "resolution": resolution, "batch": batch,
                "error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _estimate_gib(rows: list[dict], resolution: int, batch: int) -> float | None:
    """Peak memory of a larger batch, extrapolated linearly from the batch-1 run at that resolution."""
    single = next((r for r in rows if r.get("resolution") == resolution and r.get("batch") == 1
                   and "peak_mem_gib" in r), None)
    return None if single is None or batch == 1 else single["peak_mem_gib"] * batch


def table(rows: list[dict]) -> str:
    head = f"{'device':6} {'variant':12} {'px':>5} {'L':>3} {'batch':>5} {'s/step':>8} {'cpu s/step':>10} " \
           f"{'s/step/img':>10} {'300 steps':>10} {'peak GiB':>9} {'graph':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['device']:6} {r['variant']:12} {r['resolution']:>5} {'':>3} {r['batch']:>5}  error: {r['error']}")
            continue
        lines.append(f"{r['device']:6} {r['variant']:12} {r['resolution']:>5} {r['n_latent']:>3} {r['batch']:>5} "
                     f"{r['s_per_step']:>8.3f} {r.get('cpu_s_per_step', float('nan')):>10.2f} {r['s_per_step_per_image']:>10.3f} {r['s_300_steps']:>9.1f}s "
                     f"{r['peak_mem_gib']:>9.2f} {r.get('cuda_graph', '-'):>8}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per CPU configuration")
    parser.add_argument("--gpu-steps", type=int, default=20, help="timed steps per GPU configuration")
    parser.add_argument("--skip-cpu", action="store_true")
    parser.add_argument("--resolutions", default="256,1024")
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one(*json.loads(args.child))))
        return
    import torch

    resolutions = [int(r) for r in args.resolutions.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.1f} (wall times grow with the load; cpu s/step does not)", flush=True)
    rows = []
    if not args.skip_cpu:
        for res in resolutions:
            for b in batches:
                need = _estimate_gib(rows, res, b)
                free = _available_gib()
                if need is not None and need > 0.8 * free:  # do not push a shared machine into the OOM killer
                    rows.append({"device": "cpu", "variant": "fp32", "resolution": res, "batch": b,
                                 "error": f"skipped: needs about {need:.0f} GiB, {free:.0f} GiB available"})
                else:
                    rows.append(run_child(res, b, args.steps, "cpu", "fp32"))
                print(table(rows[-1:]).splitlines()[-1], flush=True)
    if torch.cuda.is_available():
        print(f"GPU: {torch.cuda.get_device_name()}", flush=True)
        for variant in ("fp32", "tf32", "tf32-nograph", "bf16", "compile"):
            for b in batches:
                rows.append(run_child(1024, b, args.gpu_steps, "cuda", variant))
                print(table(rows[-1:]).splitlines()[-1], flush=True)
    else:
        print("(no CUDA device: GPU section skipped)")
    print()
    print(table(rows))
    singles = {(r["device"], r["variant"], r["resolution"]): r for r in rows if r.get("batch") == 1 and "error" not in r}
    for r in rows:
        s = singles.get((r["device"], r["variant"], r["resolution"]))
        if r.get("batch", 1) > 1 and s and "error" not in r:
            print(f"{r['device']} {r['variant']} {r['resolution']} px: per-image cost of batch {r['batch']} = "
                  f"{100 * r['s_per_step_per_image'] / s['s_per_step']:.0f} % of a single edit")


if __name__ == "__main__":
    main()
