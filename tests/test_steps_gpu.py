"""CUDA-graph replay of the optimisation steps on a CUDA GPU (skipped without one).

The graphed loops must give the eager loops' results: the editing optimiser (CLIP, the similarity
gates, random noise maps, the identity term) and the projection (latent noise, optimised noise
maps), the generator step through the compiled kernels, and a step that cannot be captured
falls back (auto) or fails clearly (on). cuDNN is made deterministic for the module (its default
may pick algorithms that sum in a different order on every run).

Tolerances: the graphed run uses capturable Adam (learning rate and bias correction on the device)
and the eager run plain Adam, so the two differ by rounding from the first step. At the default
learning rate (0.1) the tiny seeded models turn such differences chaotic: CPU emulation of the
two optimisers gives codes 1.4e-2 apart after 12 steps (constant noise, uniform mask; ~1e-6 after
4 steps). The loops therefore run at lr 0.02, where the same emulation stays within 1e-5 for every
mask and noise setting (projection 3.5e-5) while the losses still fall, and are compared at 1e-4.
The kernels step replays the very kernels the eager step ran: 1e-5 of the gradient's largest entry.
"""

from __future__ import annotations

import logging
import os

import pytest
import torch

from soundedit.editing import optimize_latent, resolve_source
from soundedit.inversion.project import project
from soundedit.models.clip_space import load_clip_space
from soundedit.models.identity import load_identity_net
from soundedit.models.stylegan2 import ops
from soundedit.steps import CudaGraphError, StepGraph, refill
from soundedit.testing.clip import write_tiny_openai_clip
from soundedit.testing.generators import seeded_generator, write_seeded_identity_net

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.usefixtures("no_tf32", "deterministic_cudnn"),
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)"),
]

DEVICE = "cuda"
LR = 0.02  # see the module's docstring


@pytest.fixture(scope="module")
def deterministic_cudnn():
    saved = torch.backends.cudnn.deterministic
    torch.backends.cudnn.deterministic = True
    yield
    torch.backends.cudnn.deterministic = saved


@pytest.fixture(scope="module")
def G():
    return seeded_generator(size=32, style_dim=32, max_channels=32, seed=3).to(DEVICE)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = write_tiny_openai_clip(tmp_path_factory.mktemp("clip") / "clip.pt", image_size=32, patch_size=16,
                                  width=64, layers=1)
    return load_clip_space(path, device=DEVICE)


def _assert_same_run(graphed, eager, *, atol=1e-4):
    for k in ("clip", "sim", "id", "total"):
        torch.testing.assert_close(graphed.history[k], eager.history[k], rtol=1e-4, atol=atol, msg=k)
    torch.testing.assert_close(graphed.w_plus, eager.w_plus, rtol=1e-4, atol=atol)
    torch.testing.assert_close(graphed.gates, eager.gates, rtol=1e-4, atol=10 * atol)
    torch.testing.assert_close(graphed.image, eager.image, rtol=1e-4, atol=10 * atol)


@pytest.mark.parametrize("noise, mask", [("const", "adaptive"), ("random", "adaptive"), ("const", "uniform"),
                                         ("const", "authors")])
def test_graphed_edit_equals_the_eager_edit(G, clip, noise, mask):
    target = clip.embed_text(["a red car"]).detach()
    w_s = resolve_source(G, 1).w_plus
    kw = dict(steps=12, lr=LR, noise=noise, layer_mask=mask, generator_seed=5, frame_every=4)
    graphed = optimize_latent(G, clip, target, w_s, cuda_graph="on", **kw)
    eager = optimize_latent(G, clip, target, w_s, cuda_graph="off", **kw)
    assert graphed.settings["cuda_graph"] == "graph" and eager.settings["cuda_graph"] == "eager"
    _assert_same_run(graphed, eager)
    assert [s for s, _ in graphed.frames] == [0, 4, 8, 12]
    for (_, a), (_, b) in zip(graphed.frames, eager.frames):
        assert (a.int() - b.int()).abs().max() <= 1  # uint8 frames: a rounding step at most
    assert graphed.history["clip"][-1, 0] < graphed.history["clip"][0, 0]  # the replayed steps optimise


def test_graphed_edit_with_the_identity_term(G, clip, tmp_path):
    identity = load_identity_net(write_seeded_identity_net(tmp_path / "model_ir_se50.pth", seed=0, tiny=True), device=DEVICE)
    target = clip.embed_text(["an old man"]).detach()
    w_s = resolve_source(G, 4).w_plus
    kw = dict(steps=8, lr=LR, lambda_id=0.5, identity=identity)
    graphed = optimize_latent(G, clip, target, w_s, cuda_graph="on", **kw)
    eager = optimize_latent(G, clip, target, w_s, cuda_graph="off", **kw)
    assert graphed.settings["cuda_graph"] == "graph"
    _assert_same_run(graphed, eager)
    assert graphed.history["id"][-1, 0] > 0


def test_graphed_projection_equals_the_eager_projection(G):
    with torch.no_grad():
        target = G.synthesize(G.map(torch.randn(2, G.style_dim, generator=torch.Generator().manual_seed(1))
                                    .to(DEVICE)))
    runs = {mode: project(G, target, steps=12, lr=LR, optimize_noise=True, latent_noise=0.05,
                          generator=torch.Generator().manual_seed(7), cuda_graph=mode) for mode in ("on", "off")}
    assert runs["on"].settings["cuda_graph"] == "graph"
    for k in ("total", "mse", "noise_reg"):
        torch.testing.assert_close(runs["on"].history[k], runs["off"].history[k], rtol=1e-4, atol=1e-4, msg=k)
    torch.testing.assert_close(runs["on"].w_plus, runs["off"].w_plus, rtol=1e-4, atol=1e-4)
    for a, b in zip(runs["on"].noise, runs["off"].noise):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert runs["on"].history["mse"][-1].mean() < runs["on"].history["mse"][0].mean()


def test_kernels_step_replays_the_same_kernels(G, tmp_path_factory, monkeypatch):
    if not os.environ.get("TORCH_EXTENSIONS_DIR"):
        monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path_factory.mktemp("torch_extensions")))
    monkeypatch.setenv(ops.ENV_VAR, "on")
    ops._reset_for_tests()
    ops.load_extension(required=True)
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(2, G.n_latent, G.style_dim, generator=gen).to(DEVICE).requires_grad_(True)
    probe = torch.randn(2, 3, G.resolution, G.resolution, generator=gen).to(DEVICE)

    def step():
        w.grad = None
        (G.synthesize(w) * probe).sum().backward()
        return w.grad

    eager = step().clone()
    run = StepGraph(step, device=DEVICE, mode="on")
    grads = [run().clone() for _ in range(run.warmup + 3)]
    assert run.state == "graph"
    for g in grads:
        torch.testing.assert_close(g, eager, rtol=0, atol=1e-5 * eager.abs().max().item())
    ops._reset_for_tests()


def test_a_step_that_reads_back_to_the_host_falls_back_or_fails(caplog):
    x = torch.arange(4.0, device=DEVICE)

    def step():
        scale = float(x.sum().item())  # a host read: cannot be captured
        return x * scale

    stream = torch.cuda.current_stream()
    run = StepGraph(step, device=DEVICE, warmup=1)
    with caplog.at_level(logging.WARNING, logger="soundedit"):
        outs = [run() for _ in range(3)]
    assert run.state == "fallback" and "not captured as a CUDA graph" in caplog.text
    assert "captur" in run.reason.lower() and "previous error" not in run.reason  # the first error, not capture_end's
    assert torch.cuda.current_stream() == stream  # the failed capture left the thread's stream alone
    for out in outs:
        torch.testing.assert_close(out, x * 6)
    strict = StepGraph(step, device=DEVICE, mode="on", warmup=1)
    strict()
    with pytest.raises(CudaGraphError, match="cannot be captured"):
        strict()
    torch.testing.assert_close(step(), x * 6)  # the device is still usable afterwards


def test_refill_queues_the_copy_without_waiting_for_the_gpu():
    static = torch.zeros(4096, device=DEVICE)
    values = torch.randn(4096)
    expected = values.clone()
    torch.cuda.synchronize()
    torch.cuda._sleep(1_000_000_000)  # about half a second of GPU work queued before the copy
    refill(static, values)
    values.zero_()  # the caller may reuse its tensor at once
    assert not torch.cuda.current_stream().query()  # the host went on while the GPU still slept
    torch.cuda.synchronize()
    torch.testing.assert_close(static.cpu(), expected, rtol=0, atol=0)
