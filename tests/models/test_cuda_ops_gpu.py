"""The compiled StyleGAN2 ops on a CUDA GPU: parity with the PyTorch reference, gradients, generator.

Skipped without a CUDA GPU. The extension is built once per test session (for the visible GPU's
architecture) into ``$TORCH_EXTENSIONS_DIR`` when that is set (``benchmarks/gpu_check.sh`` shares
one build between these tests and the benchmarks), else into a private folder; either way these
also check that the build works on the GPU machine. ``test_cuda_ops_build.py`` builds from an
empty folder.

Tolerances: float64 1e-12 (same arithmetic, different summation order); float32 1e-5 (the
reference's cuDNN convolution may sum in another order; TF32 is switched off); float16 and
bfloat16 inputs are rounded first and the float32 reference on those same values, rounded to the
dtype, is the expectation: rtol/atol 2e-3/1e-3 and 1.6e-2/1e-2 (one unit in the last place, as the
kernels accumulate in float32 and round once). The generator: see assert_generator_matches_golden.
"""

from __future__ import annotations

import math
import os

import pytest
import torch

from soundedit.models.stylegan2 import ops
from soundedit.models.stylegan2.ops import kernels, reference
from soundedit.testing.stylegan2_ops import KERNEL_TOLERANCE, CountingExtension, assert_generator_matches_golden
from soundedit.testing.stylegan2_ops import UPFIRDN2D_CASES as CASES

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)"),
]

DEVICE = "cuda"


def dtype_id(dtype: torch.dtype) -> str:
    """Test ids say float32, not dtype0 (so `-k float32` selects, as gpu_check.sh's sanitize stage does)."""
    return str(dtype).removeprefix("torch.")


@pytest.fixture(scope="module", autouse=True)
def built_extension(tmp_path_factory, no_tf32):
    """Build (or load the build in $TORCH_EXTENSIONS_DIR), kernels forced on, TF32 off; restore afterwards."""
    mp = pytest.MonkeyPatch()
    if not os.environ.get("TORCH_EXTENSIONS_DIR"):
        mp.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path_factory.mktemp("torch_extensions")))
    mp.setenv(ops.ENV_VAR, "on")
    ops._reset_for_tests()
    ext = ops.load_extension(required=True)
    yield ext
    ops._reset_for_tests()
    mp.undo()


def _shape(g: torch.Generator) -> tuple[int, int, int, int]:
    return tuple(int(v) for v in torch.randint(1, 6, (2,), generator=g)) + tuple(
        int(v) for v in torch.randint(4, 40, (2,), generator=g))


def test_status_reports_the_kernels(built_extension):
    info = ops.status()
    assert info["loaded"] and info["cuda_available"]
    major, minor = torch.cuda.get_device_capability()
    assert info["arch_list"][-1].startswith(f"{major}.{minor}")
    assert all(op["path"] == "cuda" for op in info["ops"].values())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=dtype_id)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_upfirdn2d_forward_backward(built_extension, dtype, channels_last, case):
    up, down, pad, kshape = CASES[case]
    g = torch.Generator().manual_seed(100 + case)
    for _ in range(3):  # random shapes
        shape = _shape(g)
        # inputs rounded to `dtype` first, so that the float32 reference sees the same values
        x = torch.randn(shape, generator=g).to(dtype).to(DEVICE)
        k = torch.randn(kshape, generator=g).to(DEVICE)
        xr = x.float().clone().requires_grad_(True)
        want = reference.upfirdn2d(xr, k, up, down, pad)
        probe = torch.randn(want.shape, generator=g).to(dtype).to(DEVICE)
        (want * probe.float()).sum().backward()
        xk = x.to(memory_format=torch.channels_last) if channels_last else x.clone()
        xk.requires_grad_(True)
        got = ops.upfirdn2d(xk, k, up, down, pad)
        (got * probe).sum().backward()
        assert got.dtype == dtype and got.shape == want.shape
        if channels_last and got.shape[1] > 1:
            assert got.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(got.float(), want.detach().to(dtype).float(), **KERNEL_TOLERANCE[dtype])
        torch.testing.assert_close(xk.grad.float(), xr.grad.to(dtype).float(), **KERNEL_TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=dtype_id)
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "strided", "2d"])
@pytest.mark.parametrize("slope,scale", [(0.2, math.sqrt(2)), (1.0, 1.0)])
def test_fused_leaky_relu_forward_backward(built_extension, dtype, layout, slope, scale):
    g = torch.Generator().manual_seed(7)
    x = torch.randn((8, 16) if layout == "2d" else (3, 16, 9, 12), generator=g).to(dtype).to(DEVICE)
    b = torch.randn(16, generator=g).to(DEVICE)  # float32, as the generator's parameters
    probe = torch.randn(x.shape, generator=g).to(dtype).to(DEVICE)
    # reference in float32 on the same rounded values (the op casts the bias to x's dtype)
    xr, br = x.float().clone().requires_grad_(True), b.to(dtype).float().clone().requires_grad_(True)
    want = reference.fused_leaky_relu(xr, br, slope, scale)
    (want * probe.float()).sum().backward()
    if layout == "channels_last":
        xk = x.to(memory_format=torch.channels_last)
    elif layout == "strided":
        xk = x.transpose(2, 3).contiguous().transpose(2, 3)  # neither NCHW nor channels-last dense
    else:
        xk = x.clone()
    xk.requires_grad_(True)
    bk = b.clone().requires_grad_(True)
    y = ops.fused_leaky_relu(xk, bk, slope, scale)
    (y * probe).sum().backward()
    tol = KERNEL_TOLERANCE[dtype]
    assert y.dtype == dtype and bk.grad.dtype == torch.float32
    torch.testing.assert_close(y.float(), want.detach().to(dtype).float(), **tol)
    torch.testing.assert_close(xk.grad.float(), xr.grad.to(dtype).float(), **tol)
    torch.testing.assert_close(bk.grad, xk.grad.float().sum(dim=[d for d in range(x.ndim) if d != 1]),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=dtype_id)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("noise_batch", [1, 3])
def test_fused_leaky_relu_with_noise_injection(built_extension, dtype, channels_last, noise_batch):
    """Noise added inside the kernel, as StyledConv does: against the reference on the same values.
    float32/float64: the sum is rounded like the separate add (no fused multiply-add), so 1 ulp at most;
    bfloat16: the product and the sum rounded to bfloat16, as the separate bfloat16 ops round them."""
    g = torch.Generator().manual_seed(11)
    x = torch.randn(3, 16, 9, 12, generator=g).to(dtype).to(DEVICE)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    b = torch.randn(16, generator=g).to(DEVICE)
    noise = torch.randn(noise_batch, 1, 9, 12, generator=g).to(dtype).to(DEVICE)
    strength = torch.tensor([0.37]).to(dtype).to(DEVICE)
    probe = torch.randn(x.shape, generator=g).to(dtype).to(DEVICE)
    results = []
    for fn in (ops.fused_leaky_relu, reference.fused_leaky_relu):
        xi, ni = x.clone().requires_grad_(True), noise.clone().requires_grad_(True)
        y = fn(xi, b, noise=ni, noise_strength=strength)
        (y * probe).sum().backward()
        results.append((y.detach().float(), xi.grad.float(), ni.grad.float()))
    tol = KERNEL_TOLERANCE[dtype] if dtype != torch.float32 else dict(rtol=1e-6, atol=1e-6)
    for got, want in zip(*results):
        torch.testing.assert_close(got, want, rtol=tol["rtol"] * 10, atol=tol["atol"] * 10 * want.abs().max().item())


def test_gradcheck_float64(built_extension):
    ext = built_extension
    g = torch.Generator().manual_seed(8)
    for up, down, pad, kshape in CASES:
        x = torch.randn(1, 2, 6, 7, generator=g, dtype=torch.float64).to(DEVICE).requires_grad_(True)
        k = torch.randn(kshape, generator=g, dtype=torch.float64).to(DEVICE)
        assert torch.autograd.gradcheck(lambda t: kernels.upfirdn2d(ext, t, k, up, down, pad), (x,))
    x = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64).to(DEVICE).requires_grad_(True)
    b = torch.randn(3, generator=g, dtype=torch.float64).to(DEVICE).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t, c: kernels.fused_leaky_relu(ext, t, c), (x, b))
    torch.testing.assert_close(kernels.fused_leaky_relu(ext, x, b), reference.fused_leaky_relu(x, b),
                               **KERNEL_TOLERANCE[torch.float64])
    weight = torch.randn(1, 3, 4, 3, 3, generator=g, dtype=torch.float64).to(DEVICE)
    styles = torch.randn(2, 4, generator=g, dtype=torch.float64).to(DEVICE).requires_grad_(True)
    for demodulate in (True, False):
        assert torch.autograd.gradcheck(lambda s: kernels.modulated_weight(ext, weight, s, 0.2, demodulate), (styles,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=dtype_id)
@pytest.mark.parametrize("n,out_ch,in_ch,k,demodulate", [
    (1, 512, 512, 3, True),   # StyleGAN2's 4..64 px convolutions: a 4608-weight row per block
    (4, 64, 128, 3, True),    # a batch, fewer channels than threads
    (2, 3, 32, 1, False),     # ToRGB: 1x1, no demodulation
    (3, 7, 300, 3, True),     # rows that do not divide into the block
])
def test_modulated_weight_forward_backward(built_extension, dtype, n, out_ch, in_ch, k, demodulate):
    """Against the reference with the same inputs. float32 tolerances: the demodulation sum runs over
    up to 4608 terms in another order (measured differences ~1e-7 relative)."""
    g = torch.Generator().manual_seed(10 + in_ch)
    weight = torch.randn(1, out_ch, in_ch, k, k, generator=g, dtype=dtype).to(DEVICE)
    styles = torch.randn(n, in_ch, generator=g, dtype=dtype).to(DEVICE)
    probe = torch.randn(n, out_ch, in_ch, k, k, generator=g, dtype=dtype).to(DEVICE)
    scale = 1 / math.sqrt(in_ch * k * k)
    results = []
    for fn in (lambda s: ops.modulated_weight(weight, s, scale, demodulate),
               lambda s: reference.modulated_weight(weight, s, scale, demodulate)):
        s = styles.clone().requires_grad_(True)
        w = fn(s)
        (w * probe).sum().backward()
        results.append((w.detach(), s.grad))
    (w_k, g_k), (w_r, g_r) = results
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(w_k, w_r, **tol)
    torch.testing.assert_close(g_k, g_r, rtol=tol["rtol"] * 100, atol=tol["atol"] * 100 * g_r.abs().max().item())


@pytest.mark.parametrize("shape,channels_last", [
    ((2, 64, 257, 257), False),  # many blocks per plane
    ((1, 70000, 3, 3), False),   # more N*C planes than gridDim.z (65535): the plane loop
    ((1, 3, 70000, 2), True),    # more N*H rows than gridDim.z, channels-last
    ((300000, 3), False),        # 2-D bias_act: rows beyond one grid's reach
])
def test_grid_stride_loops(built_extension, shape, channels_last):
    g = torch.Generator().manual_seed(9)
    x = torch.randn(shape, generator=g).to(DEVICE)
    b = torch.randn(shape[1], generator=g).to(DEVICE)
    torch.testing.assert_close(ops.fused_leaky_relu(x, b), reference.fused_leaky_relu(x, b), rtol=1e-6, atol=1e-6)
    if x.ndim == 4:
        if channels_last:
            x = x.to(memory_format=torch.channels_last)
        k = torch.tensor([1.0, 3.0, 3.0, 1.0], device=DEVICE)
        k = k[:, None] * k[None, :] / 64
        for up, down, pad in ((1, 1, (1, 1)), (2, 1, (2, 1)), (1, 2, (1, 1))):
            torch.testing.assert_close(ops.upfirdn2d(x, k, up, down, pad), reference.upfirdn2d(x, k, up, down, pad),
                                       rtol=1e-5, atol=1e-5)


def test_second_order_raises_on_gpu(built_extension):
    x = torch.randn(1, 2, 8, 8, device="cuda", requires_grad=True)
    (grad,) = torch.autograd.grad(ops.fused_leaky_relu(x, None).square().sum(), x, create_graph=True)
    with pytest.raises(kernels.SecondOrderGradientError, match="SOUNDEDIT_CUDA_OPS=off"):
        grad.sum().backward()


def _golden_generator(seeded_checkpoint, tmp_path, dtype=torch.float32):
    from soundedit.models import load_generator

    path, exp = seeded_checkpoint("stylegan2_64", tmp_path / "stylegan2_64.pt")
    G = load_generator(path, device="cuda").to(dtype)
    return G, exp


@pytest.mark.parametrize("setting", ["on", "off"])
def test_generator_golden_on_gpu(built_extension, seeded_checkpoint, tmp_path, monkeypatch, setting):
    """The golden stylegan2_64 fixture, forward and d/dW+, with kernels on and off."""
    monkeypatch.setenv(ops.ENV_VAR, setting)
    G, exp = _golden_generator(seeded_checkpoint, tmp_path)
    w = exp["w_plus"].to(DEVICE).requires_grad_(True)
    img = G.synthesize(w, noise="const")
    (img * exp["probe"].to(DEVICE)).sum().backward()
    assert_generator_matches_golden(img, w.grad, exp)


def test_generator_kernels_equal_reference_in_float64(built_extension, seeded_checkpoint, tmp_path, monkeypatch):
    """The whole generator, forward and d/dW+, kernels vs reference in float64: the same function."""
    G, exp = _golden_generator(seeded_checkpoint, tmp_path, torch.float64)
    results = []
    for setting in ("on", "off"):
        monkeypatch.setenv(ops.ENV_VAR, setting)
        w = exp["w_plus"].to(DEVICE, torch.float64).requires_grad_(True)
        img = G.synthesize(w, noise="const")
        (img * exp["probe"].to(DEVICE, torch.float64)).sum().backward()
        results.append((img.detach(), w.grad))
    (img_k, grad_k), (img_r, grad_r) = results
    torch.testing.assert_close(img_k, img_r, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(grad_k, grad_r, rtol=1e-10, atol=1e-10 * grad_r.abs().max().item())


def test_generator_under_torch_compile_keeps_the_kernels(built_extension, seeded_checkpoint, tmp_path, monkeypatch):
    """torch.compile traces the generator without breaking at the ops: the kernels run as custom
    operators inside the compiled graph and give the eager result."""
    counting = CountingExtension(built_extension)
    monkeypatch.setattr(kernels, "_bound", counting)
    G, exp = _golden_generator(seeded_checkpoint, tmp_path)
    torch._dynamo.reset()
    synth = torch.compile(G.synthesize, backend="aot_eager", fullgraph=True)
    w = exp["w_plus"].to(DEVICE).requires_grad_(True)
    img = synth(w, noise="const")
    (img * exp["probe"].to(DEVICE)).sum().backward()
    assert all(counting.calls.get(op, 0) > 0 for op in ("upfirdn2d", "bias_act", "modulated_weight")), counting.calls
    assert_generator_matches_golden(img, w.grad, exp)
    torch._dynamo.reset()
