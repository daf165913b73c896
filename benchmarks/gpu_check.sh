#!/usr/bin/env bash
# One prepared run of every check that needs a CUDA GPU (issues #10, #5, #3), for a session that is
# lent one. It needs no install of soundedit: it runs from the checkout.
#
# On the GPU machine the image has torch/torchaudio/torchvision 2.11/0.26, typer, rich, timm,
# safetensors, pytest, pytest-timeout and ninja; soundfile (+ cffi, pycparser) and open_clip_torch
# (+ ftfy, wcwidth) travel as wheels in .whl/ (ignored by git). Fetch them here once (Python 3.12
# there):
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#       --platform manylinux2014_x86_64 -d .whl soundfile==0.14.0 cffi==2.1.1 pycparser==3.12 \
#       open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4
#
# The golden generator fixture lives in ../shared, which does not travel: copy what the GPU tests
# read into .gpu-shared/ (ignored by git) and carry it too:
#
#   mkdir -p .gpu-shared/golden && cp ../shared/golden/{README.md,seeded_checkpoint.py,stylegan2_64.*} .gpu-shared/golden/
#
# then call the device tool with carry [".whl", ".gpu-shared"] and the command
#
#   bash benchmarks/gpu_check.sh [stage ...]
#
# Stages (default: build tests ops compile). On an H100 (2026-11-27): build 34-47 s, tests 41 s (167 of them),
# ops 91 s, compile about 320 s for batch 1 and most of batch 4; BUDGET=540 and a 590 s device call
# ran "build tests ops compile" in 540 s.
#   build     compile the extension once, from an empty folder, for the visible GPU (timed);
#             the later stages load that build (TORCH_EXTENSIONS_DIR)
#   tests     the kernels against the PyTorch reference on the GPU, the dispatch tests, and the
#             CUDA-graph replay of the optimisation steps against the eager loops
#   ops       benchmarks/cuda_ops.py: per op and whole 1024 px step, kernels vs eager (each also
#             replayed as a CUDA graph for the step), fp32/bf16, batch 1/4, peak memory;
#             per-kernel profiles of one step
#   step      only the whole-step part of "ops" (every path but the compiled ones) and its profiles:
#             the quick check after a change to the step (CUDA graphs, the generator's layers)
#   scaled    the whole step (graphed) with the CPU's scaled-input, channels-last modulated convolutions,
#             on the reference ops and on the kernels, next to eager+graph and kernels+graph: does that
#             form pay on the GPU too? (about a minute after "build"; not in the default stages)
#   compile   the whole step under torch.compile, without and with the kernels (30-50 s of
#             compiling per case; batch 1, then batch 4 if BUDGET allows). fp32 fails inside
#             torch 2.11's inductor (a stride assert on cuDNN's convolution_backward, with and without
#             the kernels); bf16 compiles.
#   buildtest tests/models/test_cuda_ops_build.py: a second clean build, archs read from the GPU
#   sanitize  compute-sanitizer memcheck, then racecheck, on the float32 kernel tests (out-of-bounds
#             reads/writes, shared-memory races in the tiles and block_sum); slow: not in the default stages
#   edit      benchmarks/edit.py: the 1024 px latent optimisation (issue #5 targets)
#   audio     benchmarks/audio_frontend.py on the GPU (issue #3)
# Output goes to $OUT (the device tool's folder; ./gpu-check here when unset), at most 8 files (the
# device tool's limit). Each stage has its own time limit and writes its results as it goes, so a
# stage cut short still leaves its rows; BUDGET (seconds, default 430) bounds the compile stage.
set -uo pipefail
OUT=${OUT:-gpu-check}
mkdir -p "$OUT"
start=$SECONDS
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
[ -d .gpu-shared ] && export SOUNDEDIT_SHARED=$PWD/.gpu-shared
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 MAX_JOBS=${MAX_JOBS:-16}
BUDGET=${BUDGET:-430}
export TORCH_EXTENSIONS_DIR=${TORCH_EXTENSIONS_DIR:-/tmp/soundedit-gpu-check-ext}
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader 2>&1 | tee "$OUT/gpu.txt"
python3 -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.version.cuda, torch.cuda.get_device_name())" \
    | tee -a "$OUT/gpu.txt"

stage_header() { echo; echo "=== $1 (t=$((SECONDS - start)) s)"; }
stages=${*:-build tests ops compile}
for stage in $stages; do
    stage_header "$stage"
    case $stage in
    build)
        rm -rf "$TORCH_EXTENSIONS_DIR"
        timeout 240 python3 - <<'PY' 2>&1 | tee -a "$OUT/gpu.txt"
import json, time
from soundedit.models.stylegan2 import ops
start = time.perf_counter()
ops.load_extension(required=True)
info = ops.status()
print(f"built in {info['build_seconds']:.1f} s (load {time.perf_counter() - start:.1f} s): {info['build_dir']}")
print(json.dumps({k: info[k] for k in ("nvcc_version", "arch_list", "ops")}))
PY
        python3 -m soundedit env 2>&1 | tail -12 | tee -a "$OUT/gpu.txt" ;;
    tests)
        timeout 240 python3 -m pytest -q -p no:cacheprovider --timeout 120 tests/models/test_cuda_ops_gpu.py \
            tests/models/test_cuda_ops.py tests/test_steps_gpu.py tests/test_steps.py 2>&1 \
            | tee "$OUT/pytest_cuda_ops.txt" | tail -25 ;;
    ops)
        timeout 260 python3 benchmarks/cuda_ops.py --no-compile --json "$OUT/cuda_ops.json" --profile "$OUT" \
            2>&1 | tee "$OUT/cuda_ops.txt" | tail -24 ;;
    step)
        timeout 200 python3 benchmarks/cuda_ops.py --step-only --no-compile --json "$OUT/cuda_ops_step.json" \
            --profile "$OUT" 2>&1 | tee "$OUT/cuda_ops_step.txt" | tail -10 ;;
    scaled)
        timeout 150 python3 benchmarks/cuda_ops.py --step-only --paths eager+graph scaled+graph kernels+graph \
            kernels+scaled+graph --json "$OUT/cuda_ops_scaled.json" 2>&1 | tee "$OUT/cuda_ops_scaled.txt" | tail -8 ;;
    compile)  # batch 1 first: each case compiles for about a minute, and the time limit cuts the last
        for batch in 1 4; do
            left=$((BUDGET - (SECONDS - start)))
            if [ $left -lt 90 ]; then echo "batch $batch: skipped, $left s left of BUDGET=$BUDGET"; continue; fi
            timeout $((left < 220 ? left : 220)) python3 benchmarks/cuda_ops.py --step-only --batch $batch \
                --paths compile compile+kernels --json "$OUT/cuda_ops_compile_b$batch.json" 2>&1 \
                | tee -a "$OUT/cuda_ops_compile.txt" | grep -v '^ *$' | tail -8
        done ;;
    buildtest)
        timeout 150 env -u TORCH_EXTENSIONS_DIR python3 -m pytest -q -p no:cacheprovider --timeout 140 \
            tests/models/test_cuda_ops_build.py 2>&1 | tee "$OUT/pytest_build.txt" | tail -6 ;;
    sanitize)  # float32 cases only: each kernel's every code path (tiled/general, both layouts, reductions)
        sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
        for tool in memcheck racecheck; do
            timeout 150 "$sanitizer" --tool $tool --error-exitcode 99 python3 -m pytest -q -p no:cacheprovider \
                tests/models/test_cuda_ops_gpu.py -k "grid_stride or (float32 and (upfirdn2d or fused or modulated))" \
                2>&1 | tee -a "$OUT/sanitize.txt" | tail -6
        done ;;
    edit)
        timeout 240 python3 benchmarks/edit.py --skip-cpu --resolutions 1024 2>&1 | tee "$OUT/edit.txt" | tail -16 ;;
    audio)  # librosa is not there: our figures only
        timeout 60 python3 benchmarks/audio_frontend.py --device cuda --no-librosa 2>&1 | tee "$OUT/audio.txt" | tail -12 ;;
    *) echo "unknown stage $stage (build tests ops step scaled compile buildtest sanitize edit audio)"; exit 2 ;;
    esac
done
stage_header done
