"""The modulated convolution's two forms: per-sample weights and scaled inputs (``ops.scales_input``)."""

from __future__ import annotations

import pytest
import torch

from soundedit.models.stylegan2 import ops
from soundedit.models.stylegan2.layers import ModulatedConv2d


def _run(conv, x, style, scaled: bool, monkeypatch):
    monkeypatch.setattr(ops, "scales_input", lambda x: scaled)
    x = x.clone().requires_grad_(True)
    style = style.clone().requires_grad_(True)
    conv.zero_grad()
    out = conv(x, style)
    probe = torch.randn(out.shape, generator=torch.Generator().manual_seed(2), dtype=out.dtype)
    (out * probe).sum().backward()
    return out.detach(), x.grad, style.grad, conv.weight.grad.clone(), conv.modulation.weight.grad.clone()


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("kernel_size,demodulate,upsample", [(3, True, False), (3, True, True), (1, False, False),
                                                            (3, False, True)])
def test_scaled_input_form_equals_modulated_weights(batch, kernel_size, demodulate, upsample, monkeypatch):
    """Output and every gradient (input, style, conv weight, modulation weight) agree in float64."""
    torch.manual_seed(0)
    conv = ModulatedConv2d(6, 5, kernel_size, 8, demodulate=demodulate, upsample=upsample).double()
    with torch.no_grad():
        conv.modulation.bias.normal_(1.0, 0.5)  # styles far from 1, of both signs
    x = torch.randn(batch, 6, 7, 7, dtype=torch.float64)
    style = torch.randn(batch, 8, dtype=torch.float64)
    fused = _run(conv, x, style, False, monkeypatch)
    scaled = _run(conv, x, style, True, monkeypatch)
    assert fused[0].shape == (batch, 5, 14 if upsample else 7, 14 if upsample else 7)
    for name, a, b in zip(("output", "x", "style", "weight", "modulation"), scaled, fused):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-12, msg=lambda m, name=name: f"{name}: {m}")


def test_scaled_input_form_is_chosen_on_cpu(monkeypatch):
    x = torch.zeros(1, 2, 4, 4)
    assert ops.scales_input(x)
    assert not ops.scales_input(x.to("meta"))  # other devices keep the per-sample weights
    monkeypatch.setattr(ops, "_extension_for", lambda x: object())  # the kernels' CPU loop, in tests
    assert not ops.scales_input(x)


def test_modulated_conv_follows_scales_input(monkeypatch):
    """No per-sample weights are built on the scaled-input form, forward-only or with gradients, and
    the image comes back contiguous (the layers run channels-last)."""
    from soundedit.testing.generators import seeded_generator

    calls = []
    monkeypatch.setattr(ops, "modulated_weight", lambda *a, **k: calls.append(1) or ops.reference.modulated_weight(*a))
    G = seeded_generator(size=16, style_dim=8, max_channels=8, seed=1)
    w = torch.randn(2, G.n_latent, G.style_dim, requires_grad=True)
    img = G.synthesize(w)
    img.sum().backward()
    with torch.no_grad():
        G.synthesize(w)
    assert calls == [] and img.is_contiguous()
    monkeypatch.setattr(ops, "scales_input", lambda x: False)
    G.synthesize(w)
    assert len(calls) == sum(isinstance(m, ModulatedConv2d) for m in G.modules()) == 8  # styled convs, ToRGBs
