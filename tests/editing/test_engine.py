"""The latent optimisation: loss terms, gates, schedules, batching and determinism.

Tiny StyleGAN2 generators (real architecture, tiny channel counts) and a tiny
seeded CLIP in OpenAI's layout, loaded through the public loader; no downloads.
"""

from __future__ import annotations

import math

import pytest
import torch

from soundedit.editing import LayerWeights, RampSchedule, optimize_latent, resolve_source
from soundedit.editing.losses import similarity_loss
from soundedit.errors import InputError
from soundedit.models.clip_space import load_clip_space
from soundedit.models.stylegan2.generator import Generator, GeneratorConfig
from soundedit.testing.clip import write_tiny_openai_clip


def tiny_generator(resolution: int = 32, *, channels: int = 16, seed: int = 0) -> Generator:
    n_res = int(math.log2(resolution)) - 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Generator(GeneratorConfig(resolution=resolution, style_dim=32, n_mlp=2,
                                         channels=(channels,) * n_res)).eval()


@pytest.fixture(scope="module")
def gen() -> Generator:
    return tiny_generator()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = write_tiny_openai_clip(tmp_path_factory.mktemp("clip") / "clip.pt", image_size=32, patch_size=16,
                                  width=64, layers=1)
    return load_clip_space(path)


def text_target(clip, prompt: str) -> torch.Tensor:
    with torch.no_grad():
        return clip.embed_text([prompt])


@pytest.mark.parametrize("seed, prompt", [(0, "a red car"), (1, "thunderstorm"), (2, "a red car")])
def test_clip_loss_decreases_and_image_moves_to_text_target(gen, clip, seed, prompt):
    target = text_target(clip, prompt)
    w_s = resolve_source(gen, seed).w_plus
    r = optimize_latent(gen, clip, target, w_s, steps=20, lr=0.1, lambda_sim=0.002, layer_mask="adaptive")
    clip_hist = r.history["clip"][:, 0]
    assert clip_hist.shape == (20,)
    assert clip_hist[-5:].mean() < clip_hist[:5].mean() - 0.01
    assert r.metrics["target_cosine"].item() > r.metrics["source_target_cosine"].item() + 0.01
    assert r.w_plus.shape == (1, gen.n_latent, gen.style_dim)
    assert r.image.shape == (1, 3, 32, 32)


def test_large_lambda_sim_keeps_code_near_source(gen, clip):
    target = text_target(clip, "a red car")
    w_s = resolve_source(gen, 4).w_plus
    free = optimize_latent(gen, clip, target, w_s, steps=20, lambda_sim=0.0)
    tied = optimize_latent(gen, clip, target, w_s, steps=20, lambda_sim=50.0, layer_mask="uniform")
    assert tied.metrics["latent_distance"].item() < 0.2 * free.metrics["latent_distance"].item()
    # the free run is not a no-op
    assert free.metrics["latent_distance"].item() > 0.5


def test_adaptive_gates_move_differ_and_keep_the_budget(gen, clip):
    target = text_target(clip, "a red car")
    r = optimize_latent(gen, clip, target, resolve_source(gen, 1).w_plus, steps=25, lambda_sim=0.01,
                        layer_mask="adaptive", max_gate_ratio=10.0)
    weights = r.layer_weights[0]
    assert r.gates.abs().max() > 0.1, "gates did not move"
    assert weights.std() > 0.05, "gates are all equal"
    assert weights.sum().item() == pytest.approx(gen.n_latent, rel=1e-5)  # mean weight 1: fixed budget
    assert (weights.max() / weights.min()).item() <= 10.0 + 1e-4


def test_adaptive_gates_start_at_plain_l2_and_respect_the_bound():
    lw = LayerWeights("adaptive", n_items=2, n_latent=7, max_ratio=4.0)
    assert torch.equal(lw.weights(), torch.ones(2, 7))
    with torch.no_grad():
        lw.theta.copy_(torch.tensor([[50.0, -50.0, 0, 0, 0, 0, 0]] * 2))
    w = lw.weights()
    assert w.sum(1).tolist() == pytest.approx([7.0, 7.0])
    assert (w[0, 0] / w[0, 1]).item() == pytest.approx(4.0, rel=1e-4)


def test_uniform_mask_is_plain_l2():
    torch.manual_seed(0)
    w, w_s = torch.randn(3, 6, 8), torch.randn(3, 6, 8)
    lw = LayerWeights("uniform", n_items=3, n_latent=6)
    total, per_layer = similarity_loss(w, w_s, lw.weights())
    torch.testing.assert_close(total, ((w - w_s) ** 2).sum(dim=(1, 2)))
    assert lw.params == []
    fixed = LayerWeights(torch.ones(6), n_items=3, n_latent=6)
    torch.testing.assert_close(fixed.weights(), lw.weights())


def test_authors_rule_matches_their_update():
    lw = LayerWeights("authors", n_items=1, n_latent=5)
    assert torch.allclose(lw.weights(), torch.sigmoid(torch.ones(1, 5)))
    s = torch.tensor([[0.0, 0.1, 0.5, 0.9, 2.0]])
    lw.after_step(s)
    torch.testing.assert_close(lw.gates(), 1 - 0.1 * s * (1 - s))


def test_authors_and_uniform_run_end_to_end(gen, clip):
    target = text_target(clip, "a red car")
    w_s = resolve_source(gen, 2).w_plus
    for mode in ("authors", "uniform"):
        r = optimize_latent(gen, clip, target, w_s, steps=5, lambda_sim=0.01, layer_mask=mode)
        assert r.settings["layer_mask"] == mode
        assert torch.isfinite(r.history["total"]).all()
        if mode == "authors":  # their rule lowers the gates of layers that moved
            assert (r.gates < 1).any() and (r.gates <= 1).all()
        else:
            assert torch.equal(r.layer_weights, torch.ones(1, gen.n_latent))


@pytest.mark.parametrize("resolution", [64, 256])
def test_other_latent_counts(clip, resolution):
    g = tiny_generator(resolution, channels=4)
    assert g.n_latent == {64: 10, 256: 14}[resolution]
    r = optimize_latent(g, clip, text_target(clip, "rain"), resolve_source(g, 0).w_plus, steps=2,
                        lambda_sim=0.002, layer_mask="adaptive")
    assert r.w_plus.shape == (1, g.n_latent, 32) and r.gates.shape == (1, g.n_latent)
    assert r.image.shape[-1] == resolution


def test_gate_and_loss_math_at_18_latents():
    """1024 px synthesis is slow on a CPU; the n_latent-dependent parts are the gates and the regulariser."""
    torch.manual_seed(0)
    w_s = torch.randn(2, 18, 32)
    w = (w_s + torch.randn(2, 18, 32) * torch.linspace(0.1, 2, 18).view(1, 18, 1)).requires_grad_(False)
    lw = LayerWeights("adaptive", n_items=2, n_latent=18)
    opt = torch.optim.Adam(lw.params, lr=0.1)
    for _ in range(20):
        total, _ = similarity_loss(w, w_s, lw.weights())
        opt.zero_grad()
        total.sum().backward()
        opt.step()
    weights = lw.weights().detach()
    assert weights.shape == (2, 18) and weights.sum(1).tolist() == pytest.approx([18.0, 18.0], rel=1e-5)
    # regularisation moves away from the layers that moved most (the last ones here)
    assert weights[:, :3].mean() > weights[:, -3:].mean()


def test_same_seed_is_bit_identical(gen, clip):
    target = text_target(clip, "a red car")
    a = optimize_latent(gen, clip, target, resolve_source(gen, 7).w_plus, steps=6, lambda_sim=0.002)
    b = optimize_latent(gen, clip, target, resolve_source(gen, 7).w_plus, steps=6, lambda_sim=0.002)
    assert torch.equal(a.w_plus, b.w_plus) and torch.equal(a.image, b.image)
    assert torch.equal(a.history["total"], b.history["total"])


@pytest.mark.parametrize("mask", ["uniform", "adaptive"])
def test_batch_equals_single_runs(gen, clip, mask):
    targets = torch.cat([text_target(clip, p) for p in ("a red car", "rain", "a dog")])
    sources = torch.cat([resolve_source(gen, s).w_plus for s in (0, 1, 2)])
    kw = dict(steps=8, lr=0.1, lambda_sim=0.005, layer_mask=mask)
    batch = optimize_latent(gen, clip, targets, sources, **kw)
    for i in range(3):
        single = optimize_latent(gen, clip, targets[i:i + 1], sources[i:i + 1], **kw)
        torch.testing.assert_close(batch.history["total"][:, i], single.history["total"][:, 0], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(batch.metrics["target_cosine"][i:i + 1], single.metrics["target_cosine"],
                                   rtol=0, atol=1e-4)
        if mask == "uniform":  # Adam's per-coordinate normalisation amplifies float noise a little
            torch.testing.assert_close(batch.w_plus[i:i + 1], single.w_plus, rtol=0, atol=1e-3)
            torch.testing.assert_close(batch.image[i:i + 1], single.image, rtol=0, atol=1e-3)
        else:
            # Adam divides each gate's gradient by its own RMS, so a gate whose gradient is ~0 (a layer
            # that moved as much as the weighted mean) steps with the sign of float noise; batched
            # kernels sum in another order, so codes agree to a looser tolerance than the losses do.
            torch.testing.assert_close(batch.w_plus[i:i + 1], single.w_plus, rtol=0, atol=2e-2)


def test_callback_frames_and_history(gen, clip):
    seen = []
    r = optimize_latent(gen, clip, text_target(clip, "rain"), resolve_source(gen, 0).w_plus, steps=6,
                        lambda_sim=0.002, frame_every=2, callback=lambda step, losses: seen.append(step))
    assert seen == list(range(6))
    assert [s for s, _ in r.frames] == [0, 2, 4, 6]
    assert r.frames[0][1].dtype == torch.uint8
    assert r.history["lr"].shape == (6,) and r.history["lr"][0] == 0.0  # StyleCLIP's warm-up starts at 0
    torch.testing.assert_close(r.history["total"], r.history["clip"] + 0.002 * r.history["sim"])
    assert r.history["total"].shape == (6, 1) and r.settings["cuda_graph"] == "eager"  # CPU: no graph


def test_free_generation_has_no_regulariser(gen, clip):
    src = resolve_source(gen, None, free=True)
    assert src.free and src.w_plus.shape == (1, gen.n_latent, gen.style_dim)
    r = optimize_latent(gen, clip, text_target(clip, "rain"), src.w_plus, steps=4, lambda_sim=0.0)
    assert torch.equal(r.history["sim"], torch.zeros(4, 1))


def test_schedule_warmup_and_rampdown():
    s = RampSchedule(rampup=0.05, rampdown=0.25)
    lrs = [s(i, 300, 0.1) for i in range(300)]
    assert lrs[0] == 0.0
    assert lrs[15] == pytest.approx(0.1) and lrs[150] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[225:], lrs[226:])) and lrs[-1] < 0.001
    assert all(a <= b for a, b in zip(lrs[:15], lrs[1:16]))


def test_bad_inputs_are_rejected(gen, clip):
    target = text_target(clip, "rain")
    w_s = resolve_source(gen, 0).w_plus
    with pytest.raises(InputError, match="w_source"):
        optimize_latent(gen, clip, target, torch.zeros(1, 3, 32), steps=1)
    with pytest.raises(InputError, match="target"):
        optimize_latent(gen, clip, torch.zeros(1, 7), w_s, steps=1)
    with pytest.raises(InputError, match="identity"):
        optimize_latent(gen, clip, target, w_s, steps=1, lambda_id=0.1)
    with pytest.raises(InputError, match="layer_mask"):
        optimize_latent(gen, clip, target, w_s, steps=1, layer_mask="sometimes")
    # non-finite settings: NaN passes every plain `<`/`>` check
    for kwargs, message in (({"lr": float("nan")}, r"lr: expected a finite number in \(0, 1000.0\], got nan"),
                            ({"lr": float("inf")}, r"lr: expected a finite number .*got inf"),
                            ({"lambda_sim": float("nan")}, "lambda_sim: expected a finite number >= 0, got nan"),
                            ({"lambda_id": float("inf")}, "lambda_id: expected a finite number >= 0, got inf"),
                            ({"steps": 10**23}, "steps: expected an integer from 0 to 100000"),
                            ({"frame_every": -1}, "frame_every: expected a finite number >= 0")):
        with pytest.raises(InputError, match=message):
            optimize_latent(gen, clip, target, w_s, **{"steps": 1, **kwargs})


def test_a_diverging_optimisation_is_an_error_not_a_result(gen, clip):
    from soundedit.errors import DivergedError

    target = text_target(clip, "rain")
    w_s = resolve_source(gen, 0).w_plus
    with pytest.raises(DivergedError, match=r"the optimisation diverged \(loss is (nan|inf) at step 2 of 3\); "
                                            "try a lower --lr"):
        optimize_latent(gen, clip, target, w_s, steps=3, schedule=lambda step, steps, lr: 1e30)


def test_random_noise_is_reproducible_per_generator_seed(clip):
    from soundedit.testing.generators import seeded_generator

    gen = seeded_generator(size=32, style_dim=32, max_channels=16)  # non-zero noise strengths
    target = text_target(clip, "rain")
    w_s = resolve_source(gen, 0).w_plus
    kw = dict(steps=3, lambda_sim=0.002, noise="random")
    a = optimize_latent(gen, clip, target, w_s, generator_seed=1, **kw)
    b = optimize_latent(gen, clip, target, w_s, generator_seed=1, **kw)
    c = optimize_latent(gen, clip, target, w_s, generator_seed=2, **kw)
    assert torch.equal(a.w_plus, b.w_plus) and torch.equal(a.image, b.image)
    assert not torch.equal(a.image, c.image)
