#!/usr/bin/env bash
# One prepared run of every check that needs a CUDA GPU (issues #10, #5, #3), for a
# session that is lent one.  It needs no install of soundedit: it runs from the checkout.
#
# On the GPU machine the image has torch/torchaudio/torchvision 2.11/0.26, typer, rich,
# timm, safetensors, pytest, pytest-timeout and ninja; soundfile (+ cffi, pycparser) and
# open_clip_torch (+ ftfy, wcwidth) travel as wheels in .whl/ (ignored by git).  Fetch
# them here once (Python 3.12 there):
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#       --platform manylinux2014_x86_64 -d .whl soundfile==0.14.0 cffi==2.1.1 pycparser==3.12 \
#       open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4
#
# then call the device tool with carry [".whl"] and the command
#
#   bash benchmarks/gpu_check.sh
#
# Output goes to $OUT (the device tool's folder; ./gpu-check here when unset):
# pytest logs, cuda_ops.json (kernels vs eager vs torch.compile), edit.txt (300-step
# 1024 px edit), audio.txt (front end on the GPU).  Each stage has a timeout; all four
# fit the device tool's 10-minute command limit (use timeout_s 600).
set -uo pipefail
OUT=${OUT:-gpu-check}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 MAX_JOBS=${MAX_JOBS:-16}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee "$OUT/gpu.txt"
python3 -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"
python3 -m soundedit env 2>&1 | tail -20 | tee -a "$OUT/gpu.txt"

stages=${*:-tests ops edit audio}  # a subset when a run must be split: bash benchmarks/gpu_check.sh ops edit
for stage in $stages; do
    case $stage in
    tests)  # the kernels against the PyTorch reference (built from an empty cache first)
        timeout 220 python3 -m pytest -q -p no:cacheprovider tests/models/test_cuda_ops_build.py \
            tests/models/test_cuda_ops_gpu.py tests/models/test_cuda_ops.py 2>&1 | tee "$OUT/pytest_cuda_ops.txt" | tail -15 ;;
    ops)    # kernels vs eager PyTorch vs torch.compile (fp32, bf16; ops and a 1024 px generator step)
        timeout 180 python3 benchmarks/cuda_ops.py --json "$OUT/cuda_ops.json" 2>&1 | tee "$OUT/cuda_ops.txt" | tail -30 ;;
    edit)   # the 300-step 1024 px edit and the batch-of-4 cost (issue #5 targets)
        timeout 120 python3 benchmarks/edit.py --skip-cpu --resolutions 1024 2>&1 | tee "$OUT/edit.txt" | tail -20 ;;
    audio)  # the audio front end on the GPU (librosa is not there: our figures only)
        timeout 45 python3 benchmarks/audio_frontend.py --device cuda --no-librosa 2>&1 | tee "$OUT/audio.txt" | tail -12 ;;
    *) echo "unknown stage $stage (tests, ops, edit, audio)"; exit 2 ;;
    esac
done
