"""Projection into W/W+ with a tiny seeded generator, the LR ramp, the noise regulariser and LPIPS-VGG."""

from __future__ import annotations

import math

import pytest
import torch

from soundedit.errors import InputError, WeightsMissingError
from soundedit.inversion.project import noise_regularization, project, psnr
from soundedit.testing.generators import seeded_generator


@pytest.fixture(scope="module")
def G():
    return seeded_generator(size=16, style_dim=32, max_channels=32, seed=3)


def _target(G, w_plus):
    with torch.no_grad():
        return G.synthesize(w_plus)


def test_recovers_known_w_code(G):
    # An image made from a known W code is found again from the mean latent; measured on this
    # generator (16 px): MSE 0.30 at the mean latent -> 2.1e-4 after 80 steps (PSNR 43 dB), mean
    # W error 2.6 (distance of the code from the mean) -> 0.10.
    w = G.map(torch.randn(1, G.style_dim, generator=torch.Generator().manual_seed(5)), truncation=0.7)
    target = _target(G, w)
    start_mse = (_target(G, G.mean_latent().view(1, -1)) - target).pow(2).mean().item()
    r = project(G, target, steps=80, w_space="w", generator=torch.Generator().manual_seed(0))
    assert r.w_plus.shape == (1, G.n_latent, G.style_dim)
    assert torch.equal(r.w_plus[:, 0], r.w_plus[:, -1])  # one code for every layer in W
    assert r.metrics["mse"].item() < 1e-3 < start_mse
    assert (r.w_plus - w).norm(dim=-1).mean() < 0.1 * (w - G.mean_latent()).norm(dim=-1).mean()
    assert r.metrics["psnr"].item() > 30
    losses = r.history["total"][:, 0]
    assert losses[-5:].mean() < 0.01 * losses[:5].mean()  # the loss falls
    assert torch.allclose(r.image, _target(G, r.w_plus), atol=1e-5)


@pytest.mark.slow
def test_w_plus_projection_fits_mixed_code(G):
    # A W+ code with different codes on its layers is not reachable in W; W+ gets close
    # (measured: MSE 0.47 at the first step -> 0.018 after 80 steps).
    gen = torch.Generator().manual_seed(11)
    w_a, w_b = (G.map(torch.randn(1, G.style_dim, generator=gen), truncation=0.7) for _ in range(2))
    w_plus = torch.cat([w_a[:, :3], w_b[:, 3:]], dim=1)
    target = _target(G, w_plus)
    r = project(G, target, steps=80, w_space="w+", generator=torch.Generator().manual_seed(0))
    first = r.history["mse"][0, 0].item()
    assert r.metrics["mse"].item() < 0.08 * first
    assert not torch.equal(r.w_plus[:, 0], r.w_plus[:, -1])


def test_projection_is_reproducible_and_batched(G):
    target = _target(G, G.map(torch.randn(2, G.style_dim, generator=torch.Generator().manual_seed(1))))
    a = project(G, target, steps=3, generator=torch.Generator().manual_seed(7))
    b = project(G, target, steps=3, generator=torch.Generator().manual_seed(7))
    assert a.w_plus.shape == (2, G.n_latent, G.style_dim)
    assert torch.equal(a.w_plus, b.w_plus)
    assert a.history["total"].shape == (3, 2) and a.history["lr"].shape == (3,)


def test_noise_maps_optimised_and_kept_unit_gaussian(G):
    target = _target(G, G.map(torch.randn(1, G.style_dim, generator=torch.Generator().manual_seed(2))))
    r = project(G, target, steps=3, optimize_noise=True, generator=torch.Generator().manual_seed(0))
    assert r.noise is not None and len(r.noise) == G.num_noise_layers
    for m in r.noise:
        assert abs(m.mean().item()) < 1e-4 and abs(m.std().item() - 1) < 1e-3
    assert torch.allclose(r.image, G.synthesize(r.w_plus, noise=r.noise), atol=1e-5)


def test_noise_regularization_penalises_structure():
    gen = torch.Generator().manual_seed(0)
    white = [torch.randn(1, 1, 64, 64, generator=gen)]
    smooth = [torch.nn.functional.interpolate(torch.randn(1, 1, 8, 8, generator=gen), size=64, mode="bilinear")]
    smooth = [(s - s.mean()) / s.std() for s in smooth]
    assert noise_regularization(white).item() < 1e-3
    assert noise_regularization(smooth).item() > 100 * noise_regularization(white).item()


def test_projection_lr_schedule_ramps():
    from soundedit.editing.schedules import RampSchedule

    schedule = RampSchedule(0.05, 0.25)  # project()'s defaults; step / steps is the progress t
    assert schedule(0, 1000, 0.1) == 0.0
    assert schedule(25, 1000, 0.1) == pytest.approx(0.05)  # half-way up the warm-up
    assert schedule(500, 1000, 0.1) == pytest.approx(0.1)
    assert schedule(875, 1000, 0.1) == pytest.approx(0.05)  # half-way down the cosine
    assert schedule(999, 1000, 0.1) < 1e-4


def test_psnr_scale():
    a = torch.zeros(1, 3, 4, 4)
    b = a + 0.2  # 0.1 on the [0, 1] scale -> 20 dB
    assert psnr(a, b).item() == pytest.approx(20.0, abs=1e-4)


def test_bad_inputs(G):
    with pytest.raises(InputError, match=r"\(N, 3, 16, 16\)"):
        project(G, torch.zeros(1, 3, 32, 32), steps=1)
    with pytest.raises(InputError, match="w_space"):
        project(G, torch.zeros(1, 3, 16, 16), steps=1, w_space="z")
    with pytest.raises(InputError, match="mse_weight"):
        project(G, torch.zeros(1, 3, 16, 16), steps=1, mse_weight=0)


# ------------------------------------------------------------------------------ LPIPS-VGG
def _reference_lpips(features: dict, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """LPIPS-VGG written out from the paper's definition (Zhang et al. 2018, v0.1) with lpips' linear weights."""
    import os

    import lpips as lpips_pkg
    from torchvision.models import vgg16

    vgg = vgg16(weights=None).features.eval()
    vgg.load_state_dict(features)
    lins = torch.load(os.path.join(os.path.dirname(lpips_pkg.__file__), "weights/v0.1/vgg.pth"),
                      map_location="cpu", weights_only=True)
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    taps = (3, 8, 15, 22, 29)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
    total = 0.0
    xa, xb = (a - shift) / scale, (b - shift) / scale
    for i, layer in enumerate(vgg):
        xa, xb = layer(xa), layer(xb)
        if i in taps:
            k = taps.index(i)
            na = xa / (xa.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            nb = xb / (xb.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            w = lins[f"lin{k}.model.1.weight"]
            total = total + torch.nn.functional.conv2d((na - nb) ** 2, w).mean(dim=(2, 3)).flatten()
    return total


@pytest.mark.slow
def test_lpips_uses_our_vgg_file(tmp_path):
    from torchvision.models import vgg16

    from soundedit.inversion.perceptual import load_lpips

    # Seeded VGG16 in torchvision's layout: the real vgg16-397923af.pth also holds classifier.*,
    # which LPIPS does not use (left out here to keep the file small).
    torch.manual_seed(0)
    features = vgg16(weights=None).features.state_dict()
    torch.save({f"features.{k}": v for k, v in features.items()}, tmp_path / "vgg16.pth")
    metric = load_lpips(tmp_path / "vgg16.pth")
    gen = torch.Generator().manual_seed(1)
    a, b = torch.rand(2, 3, 32, 32, generator=gen) * 2 - 1, torch.rand(2, 3, 32, 32, generator=gen) * 2 - 1
    with torch.no_grad():
        got = metric(a, b)
        ref = _reference_lpips(features, a, b)
        same = metric(a, a)
    assert got.shape == (2,)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-6)
    assert same.abs().max() < 1e-6
    assert math.isfinite(got.sum().item()) and (got > 0).all()


def test_lpips_weights_missing_offline(soundedit_home, monkeypatch):
    from soundedit.inversion.perceptual import load_lpips

    monkeypatch.setenv("SOUNDEDIT_OFFLINE", "1")
    with pytest.raises(WeightsMissingError, match="vgg16-397923af.pth"):
        load_lpips("vgg16-imagenet")


def test_lpips_rejects_other_checkpoints(tmp_path):
    from soundedit.errors import CheckpointError
    from soundedit.inversion.perceptual import load_lpips

    torch.save({"features.0.weight": torch.zeros(3, 3)}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="vgg16"):
        load_lpips(tmp_path / "bad.pth")
