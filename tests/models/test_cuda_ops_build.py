"""Compile the CUDA extension from a clean cache folder, import it, and check the kernels' arithmetic.

Runs wherever nvcc is installed, GPU or not: this keeps the CUDA code building in CI. Without a
GPU the compiled functions are called with CPU tensors, which runs the kernels' own per-element
``__host__ __device__`` code in a host loop: the index arithmetic, dtype handling, layouts and the
autograd wrappers are checked here; launch configuration and device execution are left to
``test_cuda_ops_gpu.py``.
"""

from __future__ import annotations

import math

import pytest
import torch

from soundedit.models.stylegan2 import ops
from soundedit.models.stylegan2.ops import build, kernels, reference
from soundedit.testing.capture import HostReadSpy
from soundedit.testing.generators import seeded_generator
from soundedit.testing.stylegan2_ops import (KERNEL_TOLERANCE, CountingExtension, assert_generator_matches_golden,
                                             count_step_launches)
from soundedit.testing.stylegan2_ops import UPFIRDN2D_CASES as CASES

pytestmark = pytest.mark.slow  # compiling takes about 30 s on 2 cores, longer when they are busy



def _have_toolkit() -> str | None:
    try:
        build.find_toolkit()
    except build.CudaOpsBuildError as exc:
        return exc.summary
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU-only build"
    return None


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """(module, plan, seconds): a fresh build in an empty folder."""
    reason = _have_toolkit()
    if reason is not None:
        pytest.skip(f"cannot compile the CUDA ops here: {reason}")
    root = tmp_path_factory.mktemp("torch_extensions")
    module, plan, seconds = build.build(root)
    return module, plan, seconds


def test_builds_from_a_clean_cache_and_imports(compiled):
    module, plan, seconds = compiled
    assert seconds is not None, "a clean cache folder must compile"
    assert build.library_path(plan).is_file() and plan.build_dir.name.endswith(build.source_hash(
        (torch.__version__, str(torch.version.cuda), plan.toolkit.version, *build._CXX_FLAGS, *plan.cuda_flags))[:16])
    for name in ("upfirdn2d", "bias_act", "bias_act_grad"):
        assert callable(getattr(module, name))
    if not torch.cuda.is_available():  # no device to ask: the explicit default list
        assert plan.archs == ("8.0", "9.0+PTX")


def test_second_load_uses_the_cache(compiled):
    module, plan, _ = compiled
    before = build.library_path(plan).stat().st_mtime_ns
    again, plan2, seconds = build.build(plan.build_dir.parent.parent)
    assert seconds is None and plan2.build_dir == plan.build_dir
    assert build.library_path(plan).stat().st_mtime_ns == before, "nothing may rebuild"


@pytest.mark.parametrize("up,down,pad,kshape", CASES)
def test_upfirdn2d_matches_reference(compiled, up, down, pad, kshape):
    ext = compiled[0]
    g = torch.Generator().manual_seed(10)
    x = torch.randn(2, 3, 7, 9, generator=g, dtype=torch.float64)
    k = torch.randn(*kshape, generator=g, dtype=torch.float64)
    want = reference.upfirdn2d(x, k, up, down, pad)
    torch.testing.assert_close(kernels.upfirdn2d(ext, x, k, up, down, pad), want, rtol=1e-12, atol=1e-12)
    got32 = kernels.upfirdn2d(ext, x.float(), k.float(), up, down, pad)
    torch.testing.assert_close(got32, want.float(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("up,down,pad,kshape", CASES)
def test_upfirdn2d_reads_the_kernel_flipped_on_request(compiled, up, down, pad, kshape):
    """flip_kernel (the input gradient's filter) equals filtering with the flipped copy, in the general
    and (4 x 4 cases, over several tiles) the tiled kernel."""
    ext = compiled[0]
    g = torch.Generator().manual_seed(25)
    x = torch.randn(2, 3, 21, 70, generator=g, dtype=torch.float64)
    k = torch.randn(*kshape, generator=g, dtype=torch.float64)
    px0, px1, py0, py1 = reference._pad4(pad)
    got = ext.upfirdn2d(x, k, up, down, px0, px1, py0, py1, True)
    want = ext.upfirdn2d(x, torch.flip(k, [0, 1]).contiguous(), up, down, px0, px1, py0, py1, False)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    torch.testing.assert_close(got, reference.upfirdn2d(x, torch.flip(k, [0, 1]), up, down, pad), rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_upfirdn2d_low_precision(compiled, dtype):
    ext = compiled[0]
    g = torch.Generator().manual_seed(11)
    x = torch.randn(2, 4, 8, 8, generator=g).to(dtype)
    k = torch.randn(4, 4, generator=g)
    got = kernels.upfirdn2d(ext, x, k, 2, 1, (2, 1))
    assert got.dtype == dtype
    want = reference.upfirdn2d(x.float(), k, 2, 1, (2, 1)).to(dtype)  # x is already rounded
    torch.testing.assert_close(got, want, **KERNEL_TOLERANCE[dtype])


def test_upfirdn2d_layouts(compiled):
    ext = compiled[0]
    g = torch.Generator().manual_seed(12)
    x = torch.randn(2, 5, 9, 8, generator=g)
    k = torch.randn(3, 4, generator=g)
    want = reference.upfirdn2d(x, k, 2, 2, (1, 2, 0, 1))
    cl = kernels.upfirdn2d(ext, x.to(memory_format=torch.channels_last), k, 2, 2, (1, 2, 0, 1))
    assert cl.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(cl, want, rtol=1e-5, atol=1e-5)
    wide = torch.randn(2, 5, 9, 16, generator=g)
    strided = wide[..., ::2]  # neither layout: read through its strides
    torch.testing.assert_close(kernels.upfirdn2d(ext, strided, k, 1, 1, (2, 1)),
                               reference.upfirdn2d(strided.contiguous(), k, 1, 1, (2, 1)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("up,down,pad,kshape", CASES[:5])
def test_upfirdn2d_gradcheck(compiled, up, down, pad, kshape):
    ext = compiled[0]
    g = torch.Generator().manual_seed(13)
    x = torch.randn(1, 2, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(*kshape, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: kernels.upfirdn2d(ext, t, k, up, down, pad), (x,))


def test_upfirdn2d_backward_float32_channels_last(compiled):
    ext = compiled[0]
    g = torch.Generator().manual_seed(14)
    x = torch.randn(2, 3, 8, 8, generator=g)
    k = torch.randn(4, 4, generator=g)
    probe = torch.randn(2, 3, 16, 16, generator=g)
    a = x.clone().requires_grad_(True)
    (reference.upfirdn2d(a, k, 2, 1, (2, 1)) * probe).sum().backward()
    b = x.to(memory_format=torch.channels_last).requires_grad_(True)
    (kernels.upfirdn2d(ext, b, k, 2, 1, (2, 1)) * probe).sum().backward()
    torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape,channels_last", [((3, 4, 5, 2), False), ((3, 4, 5, 2), True), ((6, 7), False),
                                                 ((2, 3, 4), False)])
@pytest.mark.parametrize("slope,scale", [(0.2, math.sqrt(2)), (1.0, 1.0)])  # leaky ReLU with gain; linear
def test_fused_leaky_relu_matches_reference_and_gradcheck(compiled, shape, channels_last, slope, scale):
    ext = compiled[0]
    g = torch.Generator().manual_seed(15)
    x = torch.randn(*shape, generator=g, dtype=torch.float64)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    x.requires_grad_(True)
    b = torch.randn(shape[1], generator=g, dtype=torch.float64, requires_grad=True)
    got = kernels.fused_leaky_relu(ext, x, b, slope, scale)
    torch.testing.assert_close(got, reference.fused_leaky_relu(x, b, slope, scale), rtol=1e-12, atol=1e-12)
    if channels_last:
        assert got.is_contiguous(memory_format=torch.channels_last)
    assert torch.autograd.gradcheck(lambda t, c: kernels.fused_leaky_relu(ext, t, c, slope, scale), (x, b))
    assert torch.autograd.gradcheck(lambda t: kernels.fused_leaky_relu(ext, t, None, slope, scale), (x,))


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("noise_batch", [1, 3])
def test_fused_leaky_relu_with_noise_injection(compiled, channels_last, noise_batch):
    """x + strength * noise (one map per item or one for the batch) inside the kernel: values, gradients
    for x, bias and the noise map (projection fits the maps), gradcheck."""
    ext = compiled[0]
    g = torch.Generator().manual_seed(19)
    x = torch.randn(3, 4, 5, 6, generator=g, dtype=torch.float64)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    x.requires_grad_(True)
    b = torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)
    noise = torch.randn(noise_batch, 1, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    strength = torch.tensor([0.7], dtype=torch.float64)
    probe = torch.randn(3, 4, 5, 6, generator=g, dtype=torch.float64)
    got = kernels.fused_leaky_relu(ext, x, b, noise=noise, noise_strength=strength)
    want = reference.fused_leaky_relu(x, b, noise=noise, noise_strength=strength)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    grads_k = torch.autograd.grad((got * probe).sum(), (x, b, noise))
    grads_r = torch.autograd.grad((want * probe).sum(), (x, b, noise))
    for gk, gr in zip(grads_k, grads_r):
        torch.testing.assert_close(gk, gr, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(
        lambda t, c, n: kernels.fused_leaky_relu(ext, t, c, noise=n, noise_strength=strength), (x, b, noise))


def test_noise_that_cannot_be_fused_is_added_first(compiled, monkeypatch):
    """A strength that requires grad (training) or noise of another dtype (float32 maps under bfloat16
    autocast) is added by PyTorch before the kernel, with the reference's result and dtype."""
    counting = CountingExtension(compiled[0])
    monkeypatch.setattr(ops, "_extension_for", lambda x: counting)
    g = torch.Generator().manual_seed(24)
    x = torch.randn(2, 3, 4, 4, generator=g)
    b = torch.randn(3, generator=g)
    noise = torch.randn(1, 1, 4, 4, generator=g)
    for xi, strength in ((x, torch.tensor([0.5], requires_grad=True)), (x.bfloat16(), torch.tensor([0.5]))):
        got = ops.fused_leaky_relu(xi, b, noise=noise, noise_strength=strength)
        want = reference.fused_leaky_relu(xi, b, noise=noise, noise_strength=strength)
        assert got.dtype == want.dtype
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    assert counting.calls == {"bias_act": 2}  # the kernel still did the bias and activation


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_fused_leaky_relu_dtypes_and_bias_grad(compiled, dtype):
    ext = compiled[0]
    g = torch.Generator().manual_seed(16)
    # inputs rounded to `dtype` first; the float32 reference runs on those same values (the op casts
    # the bias to x's dtype, so the reference gets the rounded bias too)
    x = torch.randn(4, 6, 5, 5, generator=g).to(dtype)
    b = torch.randn(6, generator=g)
    probe = torch.randn(4, 6, 5, 5, generator=g).to(dtype)
    xr, br = x.float().clone().requires_grad_(True), b.to(dtype).float().clone().requires_grad_(True)
    want = reference.fused_leaky_relu(xr, br)
    (want * probe.float()).sum().backward()
    xk, bk = x.clone().requires_grad_(True), b.clone().requires_grad_(True)  # float32 bias, as in the generator
    y = kernels.fused_leaky_relu(ext, xk, bk)
    (y * probe).sum().backward()
    tol = KERNEL_TOLERANCE[dtype]
    assert y.dtype == dtype and xk.grad.dtype == dtype and bk.grad.dtype == torch.float32
    torch.testing.assert_close(y.float(), want.detach().to(dtype).float(), **tol)
    torch.testing.assert_close(xk.grad.float(), xr.grad.to(dtype).float(), **tol)
    # the bias gradient is the float32 sum of the (rounded) input gradients over N, H, W
    torch.testing.assert_close(bk.grad, xk.grad.float().sum(dim=(0, 2, 3)), rtol=1e-5, atol=1e-5)
    if dtype == torch.float32:
        torch.testing.assert_close(bk.grad, br.grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n,out_ch,in_ch,k", [(1, 5, 7, 3), (3, 4, 6, 3), (2, 3, 9, 1)])
@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_weight_matches_reference_and_gradcheck(compiled, n, out_ch, in_ch, k, demodulate):
    ext = compiled[0]
    g = torch.Generator().manual_seed(17)
    weight = torch.randn(1, out_ch, in_ch, k, k, generator=g, dtype=torch.float64)
    styles = torch.randn(n, in_ch, generator=g, dtype=torch.float64, requires_grad=True)
    probe = torch.randn(n, out_ch, in_ch, k, k, generator=g, dtype=torch.float64)
    scale = 1 / math.sqrt(in_ch * k * k)
    got = kernels.modulated_weight(ext, weight, styles, scale, demodulate)
    want = reference.modulated_weight(weight, styles, scale, demodulate)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    (grad_k,) = torch.autograd.grad((got * probe).sum(), styles)
    (grad_r,) = torch.autograd.grad((want * probe).sum(), styles)
    torch.testing.assert_close(grad_k, grad_r, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(lambda s: kernels.modulated_weight(ext, weight, s, scale, demodulate), (styles,))
    # the upsampling convolutions hand the gradient over transposed: read with its strides, no copy
    w3, s3 = weight.reshape(out_ch, in_ch, k * k), styles.detach()
    d = ext.modulated_weight(w3, s3, scale, demodulate, 1e-8)[1]
    g = probe.reshape(n, out_ch, in_ch, k * k)
    g_t = g.transpose(1, 2).contiguous().transpose(1, 2)  # same values, (N, I, O, KK) memory
    torch.testing.assert_close(ext.modulated_weight_grad(g_t, w3, s3, d, scale, demodulate),
                               ext.modulated_weight_grad(g, w3, s3, d, scale, demodulate), rtol=1e-14, atol=1e-14)


def test_modulated_weight_float32_and_autocast_styles(compiled):
    """float32 weights with float32 or bfloat16 styles (autocast's linear output): the result is float32,
    the styles' gradient has the styles' dtype, both as the reference (which promotes) gives them."""
    ext = compiled[0]
    g = torch.Generator().manual_seed(18)
    weight = torch.randn(1, 8, 16, 3, 3, generator=g)
    probe = torch.randn(2, 8, 16, 3, 3, generator=g)
    for dtype, tol in ((torch.float32, dict(rtol=1e-5, atol=1e-6)), (torch.bfloat16, dict(rtol=1e-5, atol=1e-6))):
        styles = torch.randn(2, 16, generator=g).to(dtype)
        sk, sr = styles.clone().requires_grad_(True), styles.clone().requires_grad_(True)
        got, want = kernels.modulated_weight(ext, weight, sk, 0.1), reference.modulated_weight(weight, sr, 0.1)
        assert got.dtype == want.dtype == torch.float32
        torch.testing.assert_close(got, want, **tol)
        (got * probe).sum().backward()
        (want * probe).sum().backward()
        assert sk.grad.dtype == dtype
        torch.testing.assert_close(sk.grad.float(), sr.grad.float(), rtol=1e-4 if dtype == torch.float32 else 1e-2,
                                   atol=1e-4 * sr.grad.abs().max().item())


def test_modulated_weight_dispatch_keeps_weight_gradients_on_the_reference(compiled, monkeypatch):
    """A weight that requires grad (training), a half-precision weight or styles of a wider dtype take the
    reference; the kernels get the rest."""
    counting = CountingExtension(compiled[0])
    monkeypatch.setattr(ops, "_extension_for", lambda x: counting)
    weight = torch.randn(1, 4, 5, 3, 3)
    styles = torch.randn(2, 5)
    ops.modulated_weight(weight, styles, 0.1)
    assert counting.calls == {"modulated_weight": 1}
    for w, s in ((weight.clone().requires_grad_(True), styles), (weight.half(), styles.half()),
                 (weight, styles.double())):
        out = ops.modulated_weight(w, s, 0.1)
        torch.testing.assert_close(out, reference.modulated_weight(w, s, 0.1))
    assert counting.calls == {"modulated_weight": 1}


def test_expanded_gradients_are_accepted(compiled):
    """``y.sum().backward()`` hands the backward a stride-0 gradient."""
    ext = compiled[0]
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    kernels.fused_leaky_relu(ext, x, None).sum().backward()
    torch.testing.assert_close(x.grad, torch.where(x > 0, math.sqrt(2), 0.2 * math.sqrt(2)).detach())
    x.grad = None
    kernels.upfirdn2d(ext, x, torch.ones(2, 2), 1, 1, (1, 0)).sum().backward()
    assert torch.all(x.grad > 0)


def test_second_order_gradients_raise_clearly(compiled):
    ext = compiled[0]
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, dtype=torch.float64, requires_grad=True)
    w = torch.randn(1, 3, 6, 3, 3, dtype=torch.float64)
    for fn, inp in ((lambda t: kernels.upfirdn2d(ext, t, torch.ones(3, 3), 2, 1, (1, 1)), x),
                    (lambda t: kernels.fused_leaky_relu(ext, t, b), x),
                    (lambda t: kernels.modulated_weight(ext, w, t, 0.1), x[0, 0, :2])):
        (grad,) = torch.autograd.grad((fn(inp) ** 2).sum(), inp, create_graph=True)
        with pytest.raises(kernels.SecondOrderGradientError, match="latent optimisation needs only first-order"):
            grad.sum().backward()


def test_invalid_arguments_raise(compiled):
    ext = compiled[0]
    with pytest.raises(RuntimeError, match="empty output"):
        kernels.upfirdn2d(ext, torch.zeros(1, 1, 2, 2), torch.ones(4, 4), 1, 1, (0, 0))
    with pytest.raises(ValueError, match="scale > 0"):
        kernels.fused_leaky_relu(ext, torch.zeros(1, 2), None, 0.2, -1.0)



# --- the torch.library custom operators (the torch.compile route to the same functions) ---------


@pytest.fixture()
def bound(compiled):
    kernels.bind(compiled[0])
    yield compiled[0]
    kernels.bind(None)


@pytest.mark.parametrize("up,down,pad,kshape", CASES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_custom_operators_pass_opcheck(bound, up, down, pad, kshape, channels_last):
    """Schema, fake (meta) shapes and strides against the real op, autograd registration, AOT tracing."""
    g = torch.Generator().manual_seed(20)
    x = torch.randn(2, 3, 7, 9, generator=g, dtype=torch.float64)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    x.requires_grad_(True)
    k = torch.randn(*kshape, generator=g, dtype=torch.float64)
    torch.library.opcheck(kernels._upfirdn2d_op, (x, k, up, down, *reference._pad4(pad)))
    b = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(kernels._bias_act_op, (x, b, None, None, math.sqrt(2), 0.2 * math.sqrt(2)))
    torch.library.opcheck(kernels._bias_act_op, (x, None, None, None, 1.0, 1.0))
    for noise_batch in (1, 2):  # noise injection, broadcast over the batch or one map per item
        noise = torch.randn(noise_batch, 1, 7, 9, generator=g, dtype=torch.float64, requires_grad=True)
        strength = torch.tensor([0.3], dtype=torch.float64)
        torch.library.opcheck(kernels._bias_act_op, (x, b, noise, strength, math.sqrt(2), 0.2 * math.sqrt(2)))


@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_weight_operators_pass_opcheck(bound, demodulate):
    g = torch.Generator().manual_seed(23)
    weight = torch.randn(4, 5, 9, generator=g, dtype=torch.float64)
    styles = torch.randn(2, 5, generator=g, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(kernels._modulated_weight_op, (weight, styles, 0.15, demodulate, 1e-8))
    grad = torch.randn(2, 4, 5, 9, generator=g, dtype=torch.float64)
    d = torch.rand(2, 4, generator=g, dtype=torch.float64) + 0.5
    torch.library.opcheck(kernels._modulated_weight_grad_op, (grad, weight, styles.detach(), d, 0.15, demodulate))


def test_custom_operators_compile_without_graph_breaks(bound):
    """fullgraph=True fails on any graph break; values and gradients match the reference."""
    g = torch.Generator().manual_seed(21)
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=torch.float64)
    k = torch.outer(taps, taps) / 16  # StyleGAN2's upsampling filter (gain 4)

    def layer(x, b, up_fn, act_fn):
        return act_fn(up_fn(x, k, 2, 1, (2, 1)), b, 0.2, math.sqrt(2))

    compiled_layer = torch.compile(lambda x, b: layer(x, b, kernels.upfirdn2d_for_compile,
                                                      kernels.fused_leaky_relu_for_compile),
                                   backend="aot_eager", fullgraph=True)
    x = torch.randn(2, 4, 6, 5, generator=g, dtype=torch.float64)
    b = torch.randn(4, generator=g, dtype=torch.float64)
    probe = torch.randn(2, 4, 12, 10, generator=g, dtype=torch.float64)
    results = []
    for fn in (compiled_layer, lambda x, b: layer(x, b, reference.upfirdn2d, reference.fused_leaky_relu)):
        xi, bi = x.clone().requires_grad_(True), b.clone().requires_grad_(True)
        y = fn(xi, bi)
        (y * probe).sum().backward()
        results.append((y.detach(), xi.grad, bi.grad))
    for got, want in zip(*results):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_custom_operators_refuse_second_order_gradients(bound):
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(1, 3, 6, 3, 3, dtype=torch.float64)
    for fn, inp in ((lambda t: kernels.upfirdn2d_for_compile(t, torch.ones(3, 3), 2, 1, (1, 1)), x),
                    (lambda t: kernels.fused_leaky_relu_for_compile(t, None), x),
                    (lambda t: kernels.modulated_weight_for_compile(w, t, 0.1), x[0, 0, :2])):
        (grad,) = torch.autograd.grad((fn(inp) ** 2).sum(), inp, create_graph=True)
        with pytest.raises(kernels.SecondOrderGradientError, match="SOUNDEDIT_CUDA_OPS=off"):
            grad.sum().backward()


def test_custom_operators_need_a_bound_extension():
    kernels.bind(None)
    with pytest.raises(RuntimeError, match="load_extension"):
        kernels.fused_leaky_relu_for_compile(torch.zeros(1, 2), None)


# --- the whole generator through the kernels' element code (the CPU loop) -----------------------


@pytest.fixture()
def kernels_on_cpu(compiled, monkeypatch):
    """Route the generator's ops through the compiled CPU loop, eagerly and under torch.compile."""
    ext = compiled[0]
    monkeypatch.setattr(ops, "_extension_for", lambda x: ext)
    monkeypatch.setattr(ops, "_compiling_with_kernels", lambda x: True)
    kernels.bind(ext)
    yield ext
    kernels.bind(None)


def _render(G, exp, dtype=torch.float32):
    w = exp["w_plus"].detach().to(dtype).clone().requires_grad_(True)
    img = G.synthesize(w, noise="const")
    (img * exp["probe"].to(dtype)).sum().backward()
    return img.detach(), w.grad


def test_generator_with_the_kernels_matches_golden_and_reference(kernels_on_cpu, seeded_checkpoint, tmp_path,
                                                                 monkeypatch):
    from soundedit.models import load_generator

    path, exp = seeded_checkpoint("stylegan2_64", tmp_path / "stylegan2_64.pt")
    G = load_generator(path, device="cpu")
    assert_generator_matches_golden(*_render(G, exp), exp)
    G.double()
    img_k, grad_k = _render(G, exp, torch.float64)
    monkeypatch.setattr(ops, "_extension_for", lambda x: None)
    img_r, grad_r = _render(G, exp, torch.float64)
    torch.testing.assert_close(img_k, img_r, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad_k, grad_r, rtol=1e-10, atol=1e-12 * grad_r.abs().max().item())


def test_generator_with_the_kernels_on_channels_last_maps(kernels_on_cpu, seeded_checkpoint, tmp_path, monkeypatch):
    """The scaled-input form (``ops.scales_input``: channels-last maps, as on CPU) through the kernels'
    element code: the reference's image and d/dW+ in float64. This runs the kernels' channels-last
    indexing (bias + activation with the fused noise, the blurs and the skip upsampling) on real layers,
    as ``benchmarks/cuda_ops.py --paths kernels+scaled+graph`` does on a GPU."""
    from soundedit.models import load_generator

    path, exp = seeded_checkpoint("stylegan2_64", tmp_path / "stylegan2_64.pt")
    G = load_generator(path, device="cpu").double()
    seen = []

    class Recording(CountingExtension):
        def __getattr__(self, name):
            fn = super().__getattr__(name)
            return lambda x, *a, **k: seen.append((name, x.is_contiguous())) or fn(x, *a, **k)

    recording = Recording(kernels_on_cpu)
    monkeypatch.setattr(ops, "_extension_for", lambda x: recording)
    monkeypatch.setattr(ops, "scales_input", lambda x: True)
    img_k, grad_k = _render(G, exp, torch.float64)
    assert {"upfirdn2d", "bias_act", "bias_act_grad"} <= {name for name, _ in seen}
    assert ("bias_act", False) in seen and ("upfirdn2d", False) in seen  # channels-last maps went in
    assert "modulated_weight" not in {name for name, _ in seen}
    monkeypatch.setattr(ops, "_extension_for", lambda x: None)
    monkeypatch.setattr(ops, "scales_input", lambda x: False)
    img_r, grad_r = _render(G, exp, torch.float64)
    torch.testing.assert_close(img_k, img_r, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad_k, grad_r, rtol=1e-10, atol=1e-12 * grad_r.abs().max().item())


def test_generator_compiles_with_the_kernels_in_one_graph(kernels_on_cpu, seeded_checkpoint, tmp_path, monkeypatch):
    from soundedit.models import load_generator

    counting = CountingExtension(kernels_on_cpu)
    monkeypatch.setattr(kernels, "_bound", counting)
    path, exp = seeded_checkpoint("stylegan2_64", tmp_path / "stylegan2_64.pt")
    G = load_generator(path, device="cpu")
    torch._dynamo.reset()
    try:
        G.synthesize = torch.compile(G.synthesize, backend="aot_eager", fullgraph=True)
        img, grad = _render(G, exp)
    finally:
        torch._dynamo.reset()
    # 64 px: 9 styled convs (bias_act), 4 blurs + 4 skip upsamplings (upfirdn2d), 9 + 5 ToRGB modulated
    # convolutions (modulated_weight), each once forward and once backward
    assert counting.calls == {"upfirdn2d": 16, "bias_act": 9, "bias_act_grad": 9, "modulated_weight": 14,
                              "modulated_weight_grad": 14}, counting.calls
    assert_generator_matches_golden(img, grad, exp)


def test_generator_step_through_the_kernels_can_be_captured(kernels_on_cpu, monkeypatch):
    """No host read on the kernels' path (the Python glue and the extension's own ATen calls): a
    CUDA-graph capture of a step through them cannot fail on one. Random noise maps go through the
    fused noise injection."""
    counting = CountingExtension(kernels_on_cpu)
    monkeypatch.setattr(ops, "_extension_for", lambda x: counting)
    G = seeded_generator(size=32, style_dim=32, max_channels=16, seed=3)
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(2, G.n_latent, G.style_dim, generator=gen).requires_grad_(True)
    noise = G.make_noise(2, generator=gen)
    with HostReadSpy() as spy:
        G.synthesize(w, noise=noise).square().sum().backward()
    assert spy.found == []
    assert {"upfirdn2d", "bias_act", "bias_act_grad", "modulated_weight", "modulated_weight_grad"} <= set(counting.calls)


def test_generator_step_launches_far_fewer_kernels_with_the_ops(compiled, seeded_checkpoint, tmp_path):
    """Host overhead, counted: at batch 1 a GPU step costs about as much host time per launched kernel
    as the GPU spends computing, so the launches of one forward + backward are the figure to keep low
    (measured at batch 2: 64 px 157 with the ops vs 397 reference; 1024 px 293 vs 749)."""
    from soundedit.models import load_generator

    path, exp = seeded_checkpoint("stylegan2_64", tmp_path / "stylegan2_64.pt")
    G = load_generator(path, device="cpu")
    counts = count_step_launches(lambda: _render(G, exp), compiled[0])
    # the modulation chain and the per-layer code gradients are gone
    assert not {"pow", "rsqrt", "select_backward"} & set(counts["kernels"]), counts["kernels"]
    totals = {name: sum(ops_by_name.values()) for name, ops_by_name in counts.items()}
    assert totals["kernels"] < 0.45 * totals["reference"], totals


@pytest.mark.parametrize("up,down,pad", [(1, 1, (1, 1)), (2, 1, (2, 1)), (1, 2, (1, 1)), (1, 2, (-1, 3)),
                                         (2, 1, (0, 0, 3, -1))])
def test_tiled_upfirdn2d_across_tiles(compiled, up, down, pad):
    """The tiled kernel's block steps (run tile by tile on the CPU): outputs spanning several 64 x 16
    tiles, partial edge tiles and cropping pads, forward and input gradient, against the reference."""
    ext = compiled[0]
    g = torch.Generator().manual_seed(22)
    x = torch.randn(2, 3, 37, 129, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(4, 4, generator=g, dtype=torch.float64)
    want = reference.upfirdn2d(x, k, up, down, pad)
    got = kernels.upfirdn2d(ext, x, k, up, down, pad)
    probe = torch.randn(want.shape, generator=g, dtype=torch.float64)
    (grad_want,) = torch.autograd.grad((want * probe).sum(), x)
    (grad_got,) = torch.autograd.grad((got * probe).sum(), x)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad_got, grad_want, rtol=1e-12, atol=1e-12)
