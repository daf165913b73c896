"""Golden parity of the StyleGAN2 generator with rosinality's reference implementation."""

from __future__ import annotations

import pytest
import torch

from soundedit.models import load_generator

TOL = dict(rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def golden_g(seeded_checkpoint, tmp_path_factory):
    path, expected = seeded_checkpoint("stylegan2_64", tmp_path_factory.mktemp("sg2") / "stylegan2_64.pt")
    return load_generator(path), expected


def test_shapes_read_from_checkpoint(golden_g):
    G, _ = golden_g
    assert (G.resolution, G.n_latent, G.style_dim) == (64, 10, 512)
    assert G.config.n_mlp == 8 and G.config.channel_multiplier == 2


def test_image_from_w_plus(golden_g):
    G, exp = golden_g
    with torch.no_grad():
        img = G.synthesize(exp["w_plus"], noise="const")
    torch.testing.assert_close(img, exp["image_from_w_plus"], **TOL)


def test_grad_w_plus(golden_g):
    G, exp = golden_g
    w = exp["w_plus"].clone().requires_grad_(True)
    (G.synthesize(w, noise="const") * exp["probe"]).sum().backward()
    torch.testing.assert_close(w.grad, exp["grad_w_plus"], **TOL)


def test_z_with_truncation(golden_g):
    G, exp = golden_g
    with torch.no_grad():
        w_plus = G.map(exp["z"], truncation=float(exp["truncation"]))
        img = G.synthesize(w_plus)
    assert w_plus.shape == (2, G.n_latent, G.style_dim)
    torch.testing.assert_close(w_plus, exp["w_plus_from_z"], **TOL)
    torch.testing.assert_close(img, exp["image_from_z"], **TOL)


def test_single_w_broadcast(golden_g):
    G, exp = golden_g
    with torch.no_grad():
        img = G.synthesize(exp["w"])
        img_plus = G.synthesize(exp["w"].unsqueeze(1).repeat(1, G.n_latent, 1))
    torch.testing.assert_close(img, exp["image_from_w"], **TOL)
    torch.testing.assert_close(img_plus, img)
