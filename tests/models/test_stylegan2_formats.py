"""NVIDIA pickles (ada + TensorFlow), our safetensors format, and refusal of bad / unsafe files."""

from __future__ import annotations

import math
import pickle

import pytest
import torch
import torch.nn.functional as F

from soundedit.errors import CheckpointError
from soundedit.models import load_generator
from soundedit.models.stylegan2.loading import save_generator
from soundedit.models.stylegan2.pickle_safe import load_nvidia_pickle
from soundedit.testing.generators import seeded_generator, write_nvidia_pickle, write_tiny_generator

TOL = dict(rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def golden(seeded_checkpoint, tmp_path_factory):
    path, expected = seeded_checkpoint("stylegan2_64", tmp_path_factory.mktemp("golden") / "g.pt")
    return path, expected


@pytest.mark.parametrize("flavour", ["ada", "tf"])
def test_nvidia_pickle_of_golden_weights_matches_reference(golden, tmp_path, flavour):
    """The golden weights written as an NVIDIA pickle give the reference implementation's images."""
    path, exp = golden
    G_ros = load_generator(path)
    pkl = write_nvidia_pickle(tmp_path / f"golden_{flavour}.pkl", G_ros, flavour=flavour)
    G = load_generator(pkl)
    assert (G.resolution, G.n_latent, G.style_dim) == (64, 10, 512)
    torch.testing.assert_close(G.latent_avg, G_ros.latent_avg)
    with torch.no_grad():  # one sample keeps the 512-channel 64 px model quick on CPU
        torch.testing.assert_close(G.synthesize(exp["w_plus"][:1]), exp["image_from_w_plus"][:1], **TOL)
        torch.testing.assert_close(G.map(exp["z"], truncation=0.7), exp["w_plus_from_z"], **TOL)


# --- an independent forward pass with NVIDIA's conventions, run on the pickle's own tensors ---------
def _fir(x, f, pad):  # pad = (x0, x1, y0, y1); f applied as a convolution, per channel
    c = x.shape[1]
    x = F.pad(x, list(pad))
    return F.conv2d(x, f.flip([0, 1])[None, None].repeat(c, 1, 1, 1), groups=c)


def _upsample2d(x, f):  # NVIDIA upfirdn2d.upsample2d with up=2: zero-insert, pad [2,1,2,1], gain 4
    n, c, h, w = x.shape
    z = torch.zeros(n, c, h * 2, w * 2)
    z[:, :, ::2, ::2] = x
    return _fir(z, f * 4, (2, 1, 2, 1))


def _nvidia_forward(G_obj, ws):
    t, mods = G_obj.tensors(), G_obj.modules()

    def fc(name, x):
        st = mods[name].state
        y = x @ (t[f"{name}.weight"] * st["weight_gain"]).T + t[f"{name}.bias"] * st["bias_gain"]
        return F.leaky_relu(y, 0.2) * math.sqrt(2) if st["activation"] == "lrelu" else y

    def modconv(x, weight, styles, *, demodulate, up, f):
        n = x.shape[0]
        out_c, in_c, k, _ = weight.shape
        w = weight[None] * styles[:, None, :, None, None]
        if demodulate:
            w = w * (w.square().sum([2, 3, 4]) + 1e-8).rsqrt()[:, :, None, None, None]
        x = x.reshape(1, n * in_c, *x.shape[2:])
        if up:  # conv2d_resample: transposed conv (weight not flipped), then the FIR with padding 1
            x = F.conv_transpose2d(x, w.transpose(1, 2).reshape(n * in_c, out_c, k, k), stride=2, groups=n)
            x = _fir(x, f * 4, (1, 1, 1, 1))
        else:
            x = F.conv2d(x, w.reshape(n * out_c, in_c, k, k), padding=k // 2, groups=n)
        return x.reshape(n, out_c, *x.shape[2:])

    def synth_layer(name, x, w):
        st = mods[name].state
        styles = fc(f"{name}.affine", w)
        x = modconv(x, t[f"{name}.weight"], styles, demodulate=True, up=st["up"] == 2,
                    f=t[f"{name}.resample_filter"])
        x = x + t[f"{name}.noise_const"] * t[f"{name}.noise_strength"]
        x = F.leaky_relu(x + t[f"{name}.bias"][None, :, None, None], 0.2) * math.sqrt(2)
        return x.clamp(-st["conv_clamp"], st["conv_clamp"]) if st["conv_clamp"] is not None else x

    def torgb(name, x, w):
        st = mods[name].state
        styles = fc(f"{name}.affine", w) * st["weight_gain"]
        y = modconv(x, t[f"{name}.weight"], styles, demodulate=False, up=False, f=None)
        y = y + t[f"{name}.bias"][None, :, None, None]
        return y.clamp(-st["conv_clamp"], st["conv_clamp"]) if st["conv_clamp"] is not None else y

    blocks = sorted((int(k[len("synthesis.b"):]) for k in mods if k.count(".") == 1 and k.startswith("synthesis.b")))
    x = img = None
    w_idx = 0
    for res in blocks:
        b = f"synthesis.b{res}"
        if res == 4:
            x = t[f"{b}.const"][None].repeat(ws.shape[0], 1, 1, 1)
            x = synth_layer(f"{b}.conv1", x, ws[:, 0])
            img = torgb(f"{b}.torgb", x, ws[:, 1])
            w_idx = 1
        else:  # each block uses 3 ws; its torgb's w is shared with the next block's conv0
            x = synth_layer(f"{b}.conv0", x, ws[:, w_idx])
            x = synth_layer(f"{b}.conv1", x, ws[:, w_idx + 1])
            img = _upsample2d(img, t[f"{b}.resample_filter"]) + torgb(f"{b}.torgb", x, ws[:, w_idx + 2])
            w_idx += 2
    return img


def test_ada_pickle_matches_nvidia_conventions_with_conv_clamp(tmp_path):
    G_src = seeded_generator(size=32, seed=3)
    pkl = write_nvidia_pickle(tmp_path / "ada.pkl", G_src, flavour="ada", conv_clamp=0.5)
    G = load_generator(pkl)
    assert G.config.conv_clamp == 0.5
    ws = G.map(torch.randn(2, G.style_dim, generator=torch.Generator().manual_seed(0)))
    ws = ws + 0.3 * torch.randn(ws.shape, generator=torch.Generator().manual_seed(1))  # distinct per layer
    G_obj = load_nvidia_pickle(pkl)["G_ema"]
    with torch.no_grad():
        ours = G.synthesize(ws)
        ref = _nvidia_forward(G_obj, ws)
        unclamped = load_generator(write_nvidia_pickle(tmp_path / "noclamp.pkl", G_src)).synthesize(ws)
    torch.testing.assert_close(ours, ref, **TOL)
    assert (ours - unclamped).abs().max() > 1e-2  # the clamp was active, so the test exercised it


def test_malicious_pickle_is_refused_without_executing(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    bad = tmp_path / "evil.pkl"
    bad.write_bytes(pickle.dumps({"G_ema": Evil()}, protocol=3))
    with pytest.raises(CheckpointError, match=r"evil\.pkl.*refused.*(posix|os)\.system"):
        load_generator(bad)
    assert not marker.exists()

    # builtins.eval / exec are refused too
    class Eval:
        def __reduce__(self):
            return (eval, (f"open({str(marker)!r}, 'w')",))

    bad.write_bytes(pickle.dumps(Eval(), protocol=4))
    with pytest.raises(CheckpointError, match="builtins.eval"):
        load_generator(bad)
    assert not marker.exists()


def test_embedded_module_source_is_never_executed(tmp_path):
    marker = tmp_path / "executed"
    src = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
    pkl = write_nvidia_pickle(tmp_path / "src.pkl", seeded_generator(size=8, seed=0), module_src=src)
    G = load_generator(pkl)
    assert G.resolution == 8 and not marker.exists()


def test_weights_only_for_pt(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    bad = tmp_path / "evil.pt"
    torch.save({"g_ema": Evil()}, bad)
    with pytest.raises(CheckpointError, match=r"evil\.pt.*refused"):
        load_generator(bad)
    assert not marker.exists()


def test_truncated_files(tmp_path):
    good_pt = write_tiny_generator(tmp_path / "g.pt", size=16)
    good_pkl = write_nvidia_pickle(tmp_path / "g.pkl", load_generator(good_pt))
    for good in (good_pt, good_pkl):
        data = good.read_bytes()
        cut = tmp_path / f"cut{good.suffix}"
        cut.write_bytes(data[: len(data) // 2])
        with pytest.raises(CheckpointError, match=r"cut\.(pt|pkl).*(truncated|corrupt)"):
            load_generator(cut)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_generator(empty)


def test_mismatched_keys_and_shapes_named(tmp_path):
    path = write_tiny_generator(tmp_path / "g.pt", size=16)
    ckpt = torch.load(path, weights_only=True)
    state = ckpt["g_ema"]
    state["convs.1.conv.weight"] = state["convs.1.conv.weight"][:, :, :-1]
    del state["to_rgbs.0.bias"]
    state["extra.weight"] = torch.zeros(3)
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError) as info:
        load_generator(tmp_path / "bad.pt")
    msg = str(info.value)
    assert "bad.pt" in msg and "to_rgbs.0.bias" in msg and "extra.weight" in msg and "convs.1.conv.weight" in msg

    torch.save({"something": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"other\.pt.*rosinality"):
        load_generator(tmp_path / "other.pt")


def test_safetensors_roundtrip_and_mean_latent_cache(tmp_path):
    path = write_tiny_generator(tmp_path / "g.pt", size=16, with_latent_avg=False)
    G = load_generator(path)
    assert G.latent_avg is None
    avg = G.mean_latent()
    # the documented recipe: mean of the mapping of 4096 fixed-seed samples
    z = torch.randn(4096, G.style_dim, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(avg, G.style(z).mean(0), rtol=1e-5, atol=1e-5)
    assert G.mean_latent() is avg  # cached

    out = save_generator(G, tmp_path / "g.safetensors")
    G2 = load_generator(out)
    assert G2.config == G.config
    torch.testing.assert_close(G2.latent_avg, avg)
    w = G.map(torch.randn(2, G.style_dim, generator=torch.Generator().manual_seed(5)), truncation=0.5)
    with torch.no_grad():
        torch.testing.assert_close(G2.synthesize(w), G.synthesize(w), rtol=0, atol=0)

    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(out.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=r"cut\.safetensors"):
        load_generator(cut)
