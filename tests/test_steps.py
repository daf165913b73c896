"""soundedit.steps on the CPU: settings, the warm-up/capture/replay/fallback sequence of StepGraph
(with the CUDA calls replaced by stand-ins that record what they are asked to do), capturable-Adam
learning rates and the device-side history. The real CUDA graphs are tested in test_steps_gpu.py."""

from __future__ import annotations

import contextlib
import importlib
import logging

import pytest
import torch

import soundedit.editing.optimize as editing_loop
import soundedit.inversion.project as projection_loop
from soundedit import steps
from soundedit.editing import optimize_latent, resolve_source
from soundedit.errors import InputError
from soundedit.inversion.project import project
from soundedit.models.clip_space import load_clip_space
from soundedit.models.identity import load_identity_net
from soundedit.steps import (CudaGraphError, StepGraph, StepHistory, check_graph_mode, graph_mode, make_adam, refill,
                            set_lr)
from soundedit.testing.capture import HostReadSpy
from soundedit.testing.clip import write_tiny_openai_clip
from soundedit.testing.generators import seeded_generator, write_seeded_identity_net


@pytest.mark.parametrize("value, expected", [("", "auto"), ("ON", "on"), (" off ", "off"), ("auto", "auto")])
def test_mode_comes_from_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv(steps.ENV_VAR, value)
    assert graph_mode() == expected
    assert graph_mode("off") == "off"  # an explicit argument wins


def test_bad_modes_name_the_setting(monkeypatch):
    monkeypatch.setenv(steps.ENV_VAR, "sometimes")
    with pytest.raises(InputError, match=r"SOUNDEDIT_CUDA_GRAPH: expected one of auto, on, off, got 'sometimes'"):
        graph_mode()
    with pytest.raises(InputError, match=r"cuda_graph: expected one of .* got 'yes'"):
        graph_mode("yes")
    with pytest.raises(CudaGraphError, match="need a CUDA device"):
        check_graph_mode("on", "cpu")
    assert check_graph_mode("on", "cuda:0") == "on"


def test_cpu_steps_run_eagerly_every_time():
    calls = []
    run = StepGraph(lambda: calls.append(1) or torch.tensor(float(len(calls))), device="cpu")
    assert (run.may_capture, run.state, run.reason) == (False, "eager", "device cpu")
    assert [run().item() for _ in range(6)] == [1, 2, 3, 4, 5, 6]
    assert run.state == "eager"
    assert StepGraph(lambda: None, device="cuda", mode="off").reason == "SOUNDEDIT_CUDA_GRAPH=off"


class _FakeGraph:
    """Stands in for a captured CUDA graph: a replay runs the step and refills the captured outputs."""

    def __init__(self, step, outputs):
        self.step, self.outputs, self.replays = step, outputs, 0

    def replay(self):
        self.replays += 1
        self.outputs.copy_(self.step())


@pytest.fixture
def fake_cuda(monkeypatch):
    """StepGraph on a 'cuda' device with the CUDA calls replaced; returns the log of what happened."""
    log = []
    monkeypatch.setattr(steps, "_on_side_stream", lambda fn, side: log.append("side stream") or fn())
    monkeypatch.setattr(torch.cuda, "Stream", lambda device: log.append(f"stream on {device}") or "a side stream")
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: log.append("synchronize"))
    monkeypatch.setattr(torch.cuda, "device", lambda device: contextlib.nullcontext(log.append(f"device {device}")))

    def capture(self):
        log.append("capture")  # capturing records the kernels and runs nothing
        graph = _FakeGraph(self._step, torch.zeros(()))
        log.append(graph)
        return graph, graph.outputs

    monkeypatch.setattr(StepGraph, "_capture", capture)
    return log


def test_warmup_then_one_capture_then_replays(fake_cuda):
    counter = {"n": 0}

    def step():
        counter["n"] += 1
        return torch.tensor(float(counter["n"]))

    run = StepGraph(step, device="cuda:1", warmup=2)
    assert run.may_capture and run.state == "warmup" and run.ran_as == "eager"
    values = [run() for _ in range(5)]
    assert [float(v) for v in values[:2]] == [1.0, 2.0]  # eager warm-up on a side stream
    # on the step's device (not the thread's current one), with one side stream for all
    assert fake_cuda[:5] == ["device cuda:1", "stream on cuda:1", "side stream", "device cuda:1", "side stream"]
    assert fake_cuda[5:7] == ["device cuda:1", "capture"] and fake_cuda.count("capture") == 1
    graph = fake_cuda[7]
    assert run.state == run.ran_as == "graph" and graph.replays == 3  # the capturing call replays: a step too
    assert counter["n"] == 5  # five calls, five steps: the capture itself ran nothing
    assert values[2] is values[3] is values[4] is graph.outputs  # replays refill the same tensors
    assert float(values[4]) == 5.0


def test_failed_capture_falls_back_to_eager_in_auto_and_raises_in_on(fake_cuda, monkeypatch, caplog):
    def failing_capture(self):
        try:
            raise RuntimeError("CUDA error: operation not permitted when stream is capturing")
        finally:  # what torch.cuda.graph's exit does after a failed capture: a second, vaguer error
            raise RuntimeError("capture_end failed")

    monkeypatch.setattr(StepGraph, "_capture", failing_capture)
    counter = {"n": 0}

    def step():
        counter["n"] += 1
        return counter["n"]

    run = StepGraph(step, device="cuda", warmup=1)
    with caplog.at_level(logging.WARNING, logger="soundedit"):
        assert [run() for _ in range(4)] == [1, 2, 3, 4]
    assert run.state == run.ran_as == "fallback"
    assert run.reason == "RuntimeError: CUDA error: operation not permitted when stream is capturing"
    assert len(caplog.records) == 1 and "not captured as a CUDA graph" in caplog.records[0].getMessage()

    strict = StepGraph(step, device="cuda", mode="on", warmup=1)
    strict()
    with pytest.raises(CudaGraphError, match="cannot be captured as a CUDA graph .*not permitted"):
        strict()


def test_warmup_must_be_positive():
    with pytest.raises(InputError, match="warmup: expected >= 1"):
        StepGraph(lambda: None, device="cpu", warmup=0)


def test_set_lr_fills_tensor_rates_in_place_and_assigns_floats():
    p = torch.zeros(3, requires_grad=True)
    plain = make_adam([p], 0.1, capturable=False, device="cpu")
    set_lr(plain, 0.05)
    assert plain.param_groups[0]["lr"] == 0.05
    # a tensor rate (what capturable Adam gets on CUDA) keeps its storage: a captured graph reads it
    tensor_lr = torch.optim.Adam([p], lr=torch.tensor(0.1), foreach=False)
    rate = tensor_lr.param_groups[0]["lr"]
    set_lr(tensor_lr, 0.025)
    assert tensor_lr.param_groups[0]["lr"] is rate and rate.item() == pytest.approx(0.025)
    p.grad = torch.ones(3)
    tensor_lr.step()
    assert torch.allclose(p.detach(), torch.full((3,), -0.025))  # Adam's first step moves by lr


def test_capturable_adam_survives_the_first_step_at_learning_rate_0(monkeypatch):
    """The schedules start at lr 0; torch's single-tensor capturable Adam divides by it and turns a
    parameter with a zero gradient into NaN (CPU stands in for CUDA: the arithmetic is the same)."""
    adam_module = importlib.import_module("torch.optim.adam")
    supported = adam_module._get_capturable_supported_devices
    monkeypatch.setattr(adam_module, "_get_capturable_supported_devices",
                        lambda supports_xla=True: [*supported(supports_xla), "cpu"])
    p = torch.nn.Parameter(torch.ones(3))
    opt = make_adam([p], 0.0, capturable=True, device="cpu")
    for lr in (0.0, 0.1):
        set_lr(opt, lr)
        p.grad = torch.tensor([0.0, 1.0, -1.0])
        opt.step()
    torch.testing.assert_close(p.detach(), torch.tensor([1.0, 0.9, 1.1]))
    assert opt.param_groups[0]["capturable"] and opt.param_groups[0]["foreach"]


def test_refill_writes_into_the_same_storage():
    static = torch.zeros(3)
    storage = static.data_ptr()
    refill(static, torch.tensor([1.0, 2.0, 3.0]))
    assert torch.equal(static, torch.tensor([1.0, 2.0, 3.0])) and static.data_ptr() == storage


def test_history_rows_are_copies_kept_per_step():
    history = StepHistory(("a", "b"), steps=3, n=2, device="cpu")
    live = torch.tensor([1.0, 2.0])
    rows = [history.record(i, {"a": live * i, "b": live + i}) for i in range(3)]
    live.fill_(100)  # a replayed graph overwrites its outputs: recorded rows must not change
    assert torch.equal(rows[1]["a"], torch.tensor([1.0, 2.0]))
    out = history.to_cpu()
    assert torch.equal(out["a"], torch.tensor([[0.0, 0.0], [1.0, 2.0], [2.0, 4.0]]))
    assert torch.equal(out["b"], torch.tensor([[1.0, 2.0], [2.0, 3.0], [3.0, 4.0]]))


def test_optimize_latent_checks_the_graph_setting_before_any_work(monkeypatch):
    class Untouchable(torch.nn.Module):
        n_latent, style_dim = 4, 8

        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def synthesize(self, *a, **k):
            raise AssertionError("rendered before the settings were checked")

    clip = type("Clip", (), {"embed_dim": 16})()
    with pytest.raises(CudaGraphError, match="need a CUDA device"):
        optimize_latent(Untouchable(), clip, torch.zeros(16), torch.zeros(4, 8), steps=2, cuda_graph="on")
    monkeypatch.setenv(steps.ENV_VAR, "maybe")
    with pytest.raises(InputError, match="SOUNDEDIT_CUDA_GRAPH"):
        optimize_latent(Untouchable(), clip, torch.zeros(16), torch.zeros(4, 8), steps=2)


@pytest.fixture
def host_read_spy(monkeypatch):
    """Every optimisation step of the loops run inside the spy (on the CPU, StepGraph calls the step)."""
    spy = HostReadSpy()
    steps_run = []

    class SpiedStepGraph(StepGraph):
        def __call__(self):
            steps_run.append(1)
            with spy:
                return super().__call__()

    monkeypatch.setattr(editing_loop, "StepGraph", SpiedStepGraph)
    monkeypatch.setattr(projection_loop, "StepGraph", SpiedStepGraph)
    with spy.ignore_optimizer_steps():
        yield spy, steps_run


def test_the_spy_sees_a_host_read():
    spy = HostReadSpy()
    x = torch.arange(4.0)
    with spy:
        float(x.sum())
        x[x > 1].sum()
        torch.tensor([1.0, 2.0])
    assert any("_local_scalar_dense" in f for f in spy.found) and any("aten.index" in f for f in spy.found)
    assert any("lift_fresh" in f for f in spy.found)


def test_the_spy_can_leave_the_optimizer_out():
    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([p], lr=0.1)  # not capturable: reads its step count back to the host
    p.grad = torch.ones(3)
    with HostReadSpy() as spy:
        opt.step()
    assert spy.found
    with HostReadSpy() as quiet, quiet.ignore_optimizer_steps():
        opt.step()
        p.sum().item()
    assert quiet.found == ["aten._local_scalar_dense.default"]


@pytest.mark.parametrize("noise, mask, lambda_id", [("const", "adaptive", 0.0), ("random", "authors", 0.0),
                                                     ("const", "uniform", 0.5)])
def test_editing_steps_can_be_captured(host_read_spy, tmp_path, noise, mask, lambda_id):
    """The whole editing step (generator, CLIP, gates, identity term) stays on the device: nothing in it
    would make the capture fail on a GPU and send the loop back to eager steps."""
    spy, steps_run = host_read_spy
    G = seeded_generator(size=32, style_dim=32, max_channels=16, seed=3)
    clip = load_clip_space(write_tiny_openai_clip(tmp_path / "clip.pt", image_size=32, patch_size=16, width=64,
                                                  layers=1), device="cpu")
    identity = (load_identity_net(write_seeded_identity_net(tmp_path / "model_ir_se50.pth", tiny=True), device="cpu")
                if lambda_id else None)
    target = clip.embed_text(["a red car"]).detach()
    result = optimize_latent(G, clip, target, resolve_source(G, 1).w_plus, steps=3, noise=noise, layer_mask=mask,
                             lambda_id=lambda_id, identity=identity)
    assert len(steps_run) == 3 and result.history["total"].shape == (3, 1)
    assert spy.found == []


def test_projection_steps_can_be_captured(host_read_spy):
    spy, steps_run = host_read_spy
    G = seeded_generator(size=32, style_dim=32, max_channels=16, seed=3)
    with torch.no_grad():
        target = G.synthesize(G.map(torch.randn(2, G.style_dim, generator=torch.Generator().manual_seed(1))))
    result = project(G, target, steps=3, optimize_noise=True, latent_noise=0.05,
                     generator=torch.Generator().manual_seed(7))
    assert len(steps_run) == 3 and result.history["mse"].shape == (3, 2)
    assert spy.found == []
