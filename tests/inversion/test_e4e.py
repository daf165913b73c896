"""e4e: the public checkpoint's key names/shapes, strict loading of seeded checkpoints, W+ output."""

from __future__ import annotations

import pytest
import torch

from soundedit.errors import CheckpointError, InputError
from soundedit.inversion.e4e import E4E, Encoder4Editing, load_e4e
from soundedit.testing.generators import seeded_generator


def _bn(prefix: str, c: int) -> dict:
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
            f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()}


def public_e4e_encoder_shapes(n_styles: int = 18) -> dict[str, tuple]:
    """Key -> shape of ``encoder.*`` in ``e4e_ffhq_encode.pt``, written out independently of our module.

    Source: omertov/encoder4editing ``models/encoders/psp_encoders.py`` (Encoder4Editing(50, 'ir_se'):
    input_layer Conv(3,64,3)/BN/PReLU; body from ``helpers.get_blocks(50)`` = stages of 3/4/14/3
    ``bottleneck_IR_SE`` units with 64/128/256/512 channels, shortcut 1x1 conv + BN when the width
    changes, res_layer BN/conv3x3/PReLU/conv3x3/BN/SE(fc1, fc2 1x1 convs, reduction 16);
    styles: GradualStyleBlock(512, 512, spatial 16/32/64 for styles 0-2/3-6/7-17) = log2(spatial)
    Conv(3x3, stride 2) + LeakyReLU pairs and an EqualLinear; latlayer1 Conv(256,512,1), latlayer2
    Conv(128,512,1)).
    """
    s = {"input_layer.0.weight": (64, 3, 3, 3), **_bn("input_layer.1", 64), "input_layer.2.weight": (64,)}
    i, c_in = 0, 64
    for n, depth in zip((3, 4, 14, 3), (64, 128, 256, 512)):
        for u in range(n):
            p = f"body.{i}"
            if c_in != depth:
                s[f"{p}.shortcut_layer.0.weight"] = (depth, c_in, 1, 1)
                s.update(_bn(f"{p}.shortcut_layer.1", depth))
            s.update(_bn(f"{p}.res_layer.0", c_in))
            s[f"{p}.res_layer.1.weight"] = (depth, c_in, 3, 3)
            s[f"{p}.res_layer.2.weight"] = (depth,)
            s[f"{p}.res_layer.3.weight"] = (depth, depth, 3, 3)
            s.update(_bn(f"{p}.res_layer.4", depth))
            s[f"{p}.res_layer.5.fc1.weight"] = (depth // 16, depth, 1, 1)
            s[f"{p}.res_layer.5.fc2.weight"] = (depth, depth // 16, 1, 1)
            i, c_in = i + 1, depth
    for k in range(n_styles):
        n_convs = 4 if k < 3 else 5 if k < 7 else 6
        for j in range(n_convs):
            s[f"styles.{k}.convs.{2 * j}.weight"] = (512, 512, 3, 3)
            s[f"styles.{k}.convs.{2 * j}.bias"] = (512,)
        s[f"styles.{k}.linear.weight"] = (512, 512)
        s[f"styles.{k}.linear.bias"] = (512,)
    s.update({"latlayer1.weight": (512, 256, 1, 1), "latlayer1.bias": (512,),
              "latlayer2.weight": (512, 128, 1, 1), "latlayer2.bias": (512,)})
    return s


def test_full_size_module_matches_the_public_checkpoint_layout():
    with torch.device("meta"):  # 267 M parameters: shapes only, no memory
        enc = Encoder4Editing(18)
    ours = {k: tuple(v.shape) for k, v in enc.state_dict().items()}
    public = public_e4e_encoder_shapes(18)
    assert sorted(set(public) - set(ours)) == [] and sorted(set(ours) - set(public)) == []
    assert ours == public


#: a small encoder in the same layout (distinct stage widths, so the stages can be read from the keys)
SMALL = {"units": (1, 1, 2, 1), "widths": (8, 16, 24, 32), "style_dim": 16}
G_N_LATENT = seeded_generator(size=16, style_dim=16, max_channels=32).n_latent  # 6 W+ rows at 16 px


def _write_checkpoint(path, n_styles: int, *, avg_shape: str = "rows", extra: dict | None = None,
                      drop: str | None = None, opts: dict | None = None, seed: int = 0):
    torch.manual_seed(seed)
    enc = Encoder4Editing(n_styles, **SMALL)
    with torch.no_grad():
        for name, t in enc.state_dict().items():
            if name.endswith("running_var"):
                t.uniform_(0.5, 1.5)
            elif name.endswith("running_mean"):
                t.normal_(0, 0.1)
    G = seeded_generator(size=16, style_dim=SMALL["style_dim"], max_channels=32, seed=1)
    state = {f"encoder.{k}": v for k, v in enc.state_dict().items()}
    state.update({f"decoder.{k}": v for k, v in G.state_dict().items()})
    if drop:
        del state[drop]
    state.update(extra or {})
    avg = torch.randn(SMALL["style_dim"])
    ckpt = {"state_dict": state, "latent_avg": avg.expand(n_styles, -1).clone() if avg_shape == "rows" else avg,
            "opts": opts if opts is not None else {"encoder_type": "Encoder4Editing", "stylegan_size": 16,
                                                   "start_from_latent_avg": True, "lpips_lambda": 0.8}}
    torch.save(ckpt, path)
    return enc.eval(), ckpt, G


@pytest.mark.parametrize("avg_shape", ["rows", "vector"])
def test_seeded_checkpoint_loads_strictly_and_predicts_w_plus(tmp_path, avg_shape):
    enc, ckpt, G = _write_checkpoint(tmp_path / "e4e.pt", G_N_LATENT, avg_shape=avg_shape)
    e4e = load_e4e(tmp_path / "e4e.pt")
    assert isinstance(e4e, E4E) and e4e.n_styles == G.n_latent
    assert e4e.opts["encoder_type"] == "Encoder4Editing"
    assert set(e4e.decoder_state) == set(G.state_dict())
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.no_grad():
        w = e4e(x)
        ref = enc(torch.nn.functional.interpolate(x, size=(256, 256), mode="bilinear", align_corners=False))
    assert w.shape == (2, G.n_latent, SMALL["style_dim"])
    avg = ckpt["latent_avg"].expand(G.n_latent, -1)
    torch.testing.assert_close(w, ref + avg)
    # e4e's structure: each layer is w0 plus an offset of its own, so layers differ
    assert not torch.allclose(w[:, 0], w[:, -1])
    assert G.synthesize(w).shape == (2, 3, 16, 16)  # the codes drive the checkpoint's generator


@pytest.mark.parametrize("kind", ["unexpected", "missing", "shape"])
def test_key_mismatch_is_refused(tmp_path, kind):
    if kind == "unexpected":
        _write_checkpoint(tmp_path / "e.pt", G_N_LATENT, extra={"encoder.extra.weight": torch.zeros(3)})
        match = "unexpected"
    elif kind == "missing":
        _write_checkpoint(tmp_path / "e.pt", G_N_LATENT, drop="encoder.latlayer2.bias")
        match = "missing.*latlayer2.bias"
    else:
        _write_checkpoint(tmp_path / "e.pt", G_N_LATENT, extra={"encoder.latlayer1.weight": torch.zeros(32, 24, 3, 3)})
        match = "wrong shapes.*latlayer1.weight"
    with pytest.raises(CheckpointError, match=match):
        load_e4e(tmp_path / "e.pt")


def test_other_layouts_are_refused(tmp_path):
    _write_checkpoint(tmp_path / "psp.pt", G_N_LATENT, opts={"encoder_type": "GradualStyleEncoder"})
    with pytest.raises(CheckpointError, match="GradualStyleEncoder"):
        load_e4e(tmp_path / "psp.pt")
    torch.save({"g_ema": {}}, tmp_path / "gen.pt")
    with pytest.raises(CheckpointError, match="state_dict"):
        load_e4e(tmp_path / "gen.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_e4e(tmp_path / "junk.pt")


def test_invert_image_with_e4e_and_refinement(tmp_path):
    from soundedit.inversion import invert_image

    _write_checkpoint(tmp_path / "e4e.pt", G_N_LATENT)
    e4e = load_e4e(tmp_path / "e4e.pt")
    G = seeded_generator(size=16, style_dim=16, max_channels=32, seed=1)
    photo = (torch.rand(1, 3, 24, 30, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    one = invert_image(photo[0], G, method="e4e", align=False, encoder=e4e, lpips=None)
    with torch.no_grad():
        expected = e4e(one.aligned)
    torch.testing.assert_close(one.w_plus, expected)
    assert one.reconstruction.shape == (1, 3, 16, 16) and one.report["method"] == "e4e"
    refined = invert_image(photo[0], G, method="e4e+projection", align=False, encoder=e4e, lpips=None, steps=5,
                           latent_noise=0.0)
    assert refined.report["settings"]["init"] == "given"
    assert refined.report["metrics"]["mse"] < one.report["metrics"]["mse"]  # refinement starts from e4e and improves
    other = seeded_generator(size=32, style_dim=16, max_channels=32, seed=1)
    with pytest.raises(InputError, match="--method projection"):
        invert_image(photo[0], other, method="e4e", align=False, encoder=e4e, lpips=None)
