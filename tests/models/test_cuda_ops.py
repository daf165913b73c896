"""StyleGAN2 ops on the CPU: the reference path, the backward derivation, and the kernel/reference choice.

No GPU and no compiler work here (the compile test is ``test_cuda_ops_build.py``, the GPU checks
``test_cuda_ops_gpu.py``). Toolkits are faked where a test is about the build logic.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.signal import convolve2d

from soundedit.errors import InputError
from soundedit.fileio import exclusive_lock
from soundedit.models.stylegan2 import ops
from soundedit.models.stylegan2.ops import build, kernels, reference
from soundedit.testing.stylegan2_ops import UPFIRDN2D_CASES as CASES



def upfirdn2d_numpy(x: np.ndarray, k: np.ndarray, up: int, down: int, pad) -> np.ndarray:
    """Direct computation from the definition, with scipy's true 2-D convolution."""
    px0, px1, py0, py1 = reference._pad4(pad)
    n, c, h, w = x.shape
    out = []
    for plane in x.reshape(n * c, h, w):
        u = np.zeros((h * up, w * up))
        u[::up, ::up] = plane
        u = np.pad(u, ((max(py0, 0), max(py1, 0)), (max(px0, 0), max(px1, 0))))
        u = u[max(-py0, 0): u.shape[0] - max(-py1, 0), max(-px0, 0): u.shape[1] - max(-px1, 0)]
        out.append(convolve2d(u, k, mode="valid")[::down, ::down])
    return np.stack(out).reshape(n, c, *out[0].shape)


# ---------------------------------------------------------------------------------- reference path
@pytest.mark.parametrize("up,down,pad,kshape", CASES)
def test_reference_upfirdn2d_matches_numpy(up, down, pad, kshape):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 7, 9, generator=g, dtype=torch.float64)
    k = torch.randn(*kshape, generator=g, dtype=torch.float64)
    got = reference.upfirdn2d(x, k, up, down, pad)
    want = upfirdn2d_numpy(x.numpy(), k.numpy(), up, down, pad)
    px0, px1, py0, py1 = reference._pad4(pad)
    assert got.shape == (2, 3, (7 * up + py0 + py1 - kshape[0]) // down + 1, (9 * up + px0 + px1 - kshape[1]) // down + 1)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)


def test_reference_upsample_keeps_a_constant_image_constant():
    """StyleGAN2's x2 upsampling (kernel [1,3,3,1] normalised, times up^2) of a constant image."""
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = taps[:, None] * taps[None, :]
    k = k / k.sum() * 4
    y = reference.upfirdn2d(torch.full((1, 1, 8, 8), 2.5), k, up=2, pad=(2, 1))
    assert y.shape == (1, 1, 16, 16)
    torch.testing.assert_close(y[..., 2:-2, 2:-2], torch.full((1, 1, 12, 12), 2.5))


@pytest.mark.parametrize("up,down,pad,kshape", CASES[:5])
def test_reference_upfirdn2d_gradcheck(up, down, pad, kshape):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 1, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(*kshape, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: reference.upfirdn2d(a, b, up, down, pad), (x, k))


def test_reference_fused_leaky_relu_matches_numpy_and_gradcheck():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 4, 5, 2, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)
    v = x.detach().numpy() + b.detach().numpy()[None, :, None, None]
    want = np.where(v > 0, v, 0.2 * v) * math.sqrt(2)
    np.testing.assert_allclose(reference.fused_leaky_relu(x, b).detach().numpy(), want, rtol=1e-12)
    assert torch.autograd.gradcheck(lambda a, c: reference.fused_leaky_relu(a, c), (x, b))
    linear = reference.fused_leaky_relu(x, b, negative_slope=1.0, scale=1.0)
    np.testing.assert_allclose(linear.detach().numpy(), v, rtol=1e-12)


@pytest.mark.parametrize("up,down,pad,kshape", CASES)
def test_backward_is_upfirdn2d_with_flipped_kernel_and_adjusted_pads(up, down, pad, kshape):
    """The identity the compiled backward relies on (kernels.grad_pad), checked with the reference."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 2, 7, 8, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(*kshape, generator=g, dtype=torch.float64)
    y = reference.upfirdn2d(x, k, up, down, pad)
    probe = torch.randn(y.shape, generator=g, dtype=torch.float64)
    (want,) = torch.autograd.grad((y * probe).sum(), x)
    pads = kernels.grad_pad((7, 8), tuple(y.shape[2:]), kshape, up, down, reference._pad4(pad))
    got = reference.upfirdn2d(probe, torch.flip(k, [0, 1]), up=down, down=up, pad=pads)
    assert got.shape == x.shape
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------ dispatching
@pytest.fixture
def fresh_state(monkeypatch, tmp_path):
    """No build attempted yet in this process; builds (if any) go to a private folder."""
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "ext"))
    ops._reset_for_tests()
    yield tmp_path / "ext"
    ops._reset_for_tests()


@pytest.fixture
def fake_toolkit(tmp_path, monkeypatch):
    """A folder that looks like a CUDA toolkit whose nvcc reports ``release`` (torch's CUDA by default)."""
    if torch.version.cuda is None:
        pytest.skip("torch is a CPU-only build: the build logic needs torch.version.cuda")

    def make(release: str = torch.version.cuda) -> Path:
        root = tmp_path / f"cuda-{release}"
        (root / "bin").mkdir(parents=True)
        (root / "include").mkdir()
        (root / "include" / "cuda_runtime.h").write_text("/* fake */\n")
        nvcc = root / "bin" / "nvcc"
        nvcc.write_text(f"#!/bin/sh\necho 'Cuda compilation tools, release {release}, V{release}.0'\n")
        nvcc.chmod(0o755)
        monkeypatch.setenv("CUDA_HOME", str(root))
        monkeypatch.delenv("TORCH_CUDA_ARCH_LIST", raising=False)
        return root

    return make


@pytest.mark.parametrize("value,expected", [(None, "auto"), ("", "auto"), ("auto", "auto"), ("ON", "on"), (" off ", "off")])
def test_mode_reads_the_environment(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv(ops.ENV_VAR, raising=False)
    else:
        monkeypatch.setenv(ops.ENV_VAR, value)
    assert ops.mode() == expected


def test_invalid_mode_is_an_input_error(monkeypatch):
    monkeypatch.setenv(ops.ENV_VAR, "fast")
    with pytest.raises(InputError, match="SOUNDEDIT_CUDA_OPS.*auto, on, off.*'fast'"):
        ops.upfirdn2d(torch.zeros(1, 1, 4, 4), torch.ones(2, 2))


@pytest.mark.parametrize("setting", ["auto", "off"])
def test_cpu_tensors_take_the_reference(monkeypatch, fresh_state, setting):
    monkeypatch.setenv(ops.ENV_VAR, setting)
    g = torch.Generator().manual_seed(4)
    x, k, b = torch.randn(2, 3, 8, 8, generator=g), torch.randn(4, 4, generator=g), torch.randn(3, generator=g)
    assert torch.equal(ops.upfirdn2d(x, k, 2, 1, (2, 1)), reference.upfirdn2d(x, k, 2, 1, (2, 1)))
    assert torch.equal(ops.fused_leaky_relu(x, b), reference.fused_leaky_relu(x, b))
    assert not ops._state.attempted, "no build may be attempted for CPU tensors"


def test_on_with_cpu_tensors_raises(monkeypatch, fresh_state):
    monkeypatch.setenv(ops.ENV_VAR, "on")
    with pytest.raises(ops.CudaOpsUnavailableError, match="CUDA tensors only"):
        ops.fused_leaky_relu(torch.zeros(1, 2), torch.zeros(2))
    with pytest.raises(ops.CudaOpsUnavailableError, match="CUDA tensors only"):
        ops.upfirdn2d(torch.zeros(1, 1, 4, 4), torch.ones(2, 2))


def test_failed_build_warns_once_and_falls_back(monkeypatch, fresh_state, tmp_path, caplog):
    monkeypatch.setenv("CUDA_HOME", str(tmp_path / "no-such-toolkit"))
    with caplog.at_level(logging.WARNING, logger="soundedit"):
        assert ops.load_extension() is None
        assert ops.load_extension() is None
    warnings = [r for r in caplog.records if "CUDA StyleGAN2 ops unavailable" in r.getMessage()]
    assert len(warnings) == 1 and "no CUDA toolkit found" in warnings[0].getMessage()
    assert "\n" not in warnings[0].getMessage()
    with pytest.raises(ops.CudaOpsUnavailableError, match="SOUNDEDIT_CUDA_OPS=on.*no CUDA toolkit found"):
        ops.load_extension(required=True)


def test_toolkit_with_another_major_version_is_refused(fake_toolkit, fresh_state):
    major = int(torch.version.cuda.split(".")[0])
    fake_toolkit(f"{major - 1}.8")
    with pytest.raises(build.CudaOpsBuildError, match=f"nvcc {major - 1}.8 .* does not match torch's CUDA"):
        build.plan()
    info = ops.status()
    assert info["nvcc"] is None and "does not match" in info["error"]
    assert info["ops"]["upfirdn2d"]["path"] == "reference"


def test_minor_version_difference_only_warns(fake_toolkit, caplog):
    major, minor = (int(v) for v in torch.version.cuda.split(".")[:2])
    fake_toolkit(f"{major}.{minor + 1}")
    with caplog.at_level(logging.WARNING, logger="soundedit"):
        p = build.plan()
    assert p.toolkit.version == f"{major}.{minor + 1}"
    assert any("differs from torch's CUDA" in r.getMessage() for r in caplog.records)


def test_build_folder_is_keyed_by_versions_sources_and_archs(fake_toolkit, monkeypatch, tmp_path):
    fake_toolkit()
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "ext"))
    a = build.plan()
    assert a.build_dir == build.plan().build_dir, "same inputs must reuse the same build"
    assert a.build_dir.parent == tmp_path / "ext" / "stylegan2_ops"
    assert f"cu{torch.version.cuda}" in a.build_dir.name and "nvcc" in a.build_dir.name
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "8.6")
    b = build.plan()
    assert b.archs == ("8.6",) and b.build_dir != a.build_dir
    assert "-gencode=arch=compute_86,code=sm_86" in b.cuda_flags
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "8.0;9.0+PTX")
    assert build.plan().cuda_flags[-1] == "-gencode=arch=compute_90,code=compute_90"
    assert build.source_hash(("x",)) != build.source_hash(("y",))


def test_default_archs_without_gpu_and_bad_arch_list(fake_toolkit, monkeypatch):
    fake_toolkit()
    if not torch.cuda.is_available():
        assert build.arch_list() == ["8.0", "9.0+PTX"]
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "Hopper")
    with pytest.raises(build.CudaOpsBuildError, match="TORCH_CUDA_ARCH_LIST"):
        build.plan()
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "6.1")
    with pytest.raises(build.CudaOpsBuildError, match="below 7.5"):
        build.plan()


def test_extensions_root_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
    monkeypatch.setenv("SOUNDEDIT_HOME", str(tmp_path / "home"))
    assert build.extensions_root() == tmp_path / "home" / "torch_extensions"
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "torch-ext"))
    assert build.extensions_root() == tmp_path / "torch-ext"


def test_status_is_cheap_and_explains_the_path(fake_toolkit, monkeypatch, fresh_state):
    fake_toolkit()
    monkeypatch.setenv(ops.ENV_VAR, "auto")
    info = ops.status()
    json.dumps(info)  # JSON-able for `soundedit env --json`
    for key in ("mode", "cuda_available", "nvcc", "nvcc_version", "cuda_home", "arch_list", "build_dir",
                "built", "loaded", "build_seconds", "error", "ops"):
        assert key in info
    assert set(info["ops"]) == {"upfirdn2d", "fused_leaky_relu", "modulated_weight"}
    assert info["nvcc_version"] == torch.version.cuda and info["built"] is False and info["loaded"] is False
    assert not fresh_state.exists() and not ops._state.attempted, "status() must not build"
    if not torch.cuda.is_available():
        assert info["ops"]["upfirdn2d"] == {"path": "reference",
                                            "why": "no CUDA GPU visible (torch.cuda.is_available() is False)"}
    monkeypatch.setenv(ops.ENV_VAR, "off")
    assert ops.status()["ops"]["fused_leaky_relu"] == {"path": "reference", "why": "SOUNDEDIT_CUDA_OPS=off"}
    monkeypatch.setenv(ops.ENV_VAR, "bogus")
    bad = ops.status()
    assert bad["mode"] is None and bad["ops"]["upfirdn2d"]["path"] == "error" and "bogus" in bad["error"]


def test_status_without_toolkit(monkeypatch, fresh_state, tmp_path):
    monkeypatch.setenv("CUDA_HOME", str(tmp_path / "none"))
    monkeypatch.setenv(ops.ENV_VAR, "on")
    info = ops.status(build=True)  # asked to build: records the failure, does not raise
    assert info["nvcc"] is None and "no CUDA toolkit found" in info["error"]
    assert info["ops"]["upfirdn2d"]["path"] == "error" and "cannot be built" in info["ops"]["upfirdn2d"]["why"]


def test_build_lock_waits_for_the_holder(tmp_path):
    """A second builder blocks until the first releases the fcntl lock."""
    held, released = tmp_path / "held", tmp_path / "released"
    holder = subprocess.Popen([sys.executable, "-c", f"""
import fcntl, pathlib, time
with open({str(tmp_path / build.BUILD_LOCK)!r}, 'a+') as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    pathlib.Path({str(held)!r}).touch()
    time.sleep(1.0)
    pathlib.Path({str(released)!r}).touch()
    fcntl.flock(f, fcntl.LOCK_UN)
"""])
    try:
        for _ in range(600):
            if held.exists() or holder.poll() is not None:
                break
            time.sleep(0.05)
        assert held.exists(), "the lock holder did not start"
        with exclusive_lock(tmp_path / build.BUILD_LOCK):
            assert released.exists(), "acquired the build lock while another process held it"
    finally:
        holder.wait(timeout=60)


def test_compile_error_is_summarised(monkeypatch, tmp_path):
    """A source that does not compile: one-line summary naming the error, full log kept, no exception leak."""
    if shutil.which("nvcc") is None and not Path("/usr/local/cuda/bin/nvcc").exists():
        pytest.skip("nvcc is not installed here: the compile-error path needs a real compiler")
    if torch.version.cuda is None:
        pytest.skip("torch is a CPU-only build")
    csrc = tmp_path / "csrc"
    csrc.mkdir()
    for name in build.SOURCES + build.HEADERS:
        (csrc / name).write_text((build.CSRC / name).read_text())
    for name in build.SOURCES:  # fail at once in both compilers
        (csrc / name).write_text("#error soundedit-deliberately-broken\n")
    monkeypatch.setattr(build, "CSRC", csrc)
    with pytest.raises(build.CudaOpsBuildError) as info:
        build.build(tmp_path / "ext")
    err = info.value
    assert "soundedit-deliberately-broken" in err.summary and "\n" not in err.summary
    assert err.log is not None and "soundedit-deliberately-broken" in err.log.read_text()


def test_sources_ship_with_the_package():
    """pyproject's package-data must cover every file the build reads."""
    text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    for name in build.SOURCES + build.HEADERS:
        assert f"csrc/*{Path(name).suffix}" in text, name
        assert (build.CSRC / name).is_file()
