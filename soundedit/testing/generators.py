"""Seeded StyleGAN2 generators and IR-SE50 identity nets written in the real file layouts.

Tests (ours and users') build small checkpoints with these and load them through the
same public loaders as the real files::

    from soundedit.testing.generators import write_tiny_generator
    path = write_tiny_generator(tmp_path / "g.pt", size=32)
    G = soundedit.load_generator(path)

Layouts written: rosinality ``.pt`` (:func:`write_tiny_generator`), NVIDIA
stylegan2-ada-pytorch pickles and NVIDIA TensorFlow pickles
(:func:`write_nvidia_pickle`, built the way ``torch_utils.persistence`` /
``dnnlib.tflib`` pickle their networks, without needing either package), and
TreB1eN's IR-SE50 state dict (:func:`write_seeded_identity_net`).
"""

from __future__ import annotations

import collections
import math
import os
import pickle
from pathlib import Path

import torch

from soundedit.fileio import atomic_open
from soundedit.models.stylegan2.generator import Generator, GeneratorConfig, default_channels
from soundedit.models.stylegan2.layers import make_kernel


def seeded_generator(*, size: int = 32, style_dim: int = 64, n_mlp: int = 2, channel_multiplier: int = 1,
                     max_channels: int | None = 64, seed: int = 0) -> Generator:
    """A :class:`Generator` with seeded random weights (rosinality's init), latent_avg computed.

    Args:
        size: resolution in px (4..1024).
        style_dim, n_mlp, channel_multiplier: as in rosinality's ``Generator``.
        max_channels: cap on feature maps per layer to keep it small (None = the real widths).
        seed: weights are a deterministic function of the arguments and this seed.
    """
    channels = default_channels(size, channel_multiplier)
    if max_channels is not None:
        channels = tuple(min(c, max_channels) for c in channels)
    config = GeneratorConfig(resolution=size, style_dim=style_dim, n_mlp=n_mlp,
                             channel_multiplier=channel_multiplier, channels=channels)
    G = Generator(config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in G.state_dict().items():
            if name.endswith(".kernel"):
                continue  # FIR filters are fixed
            r = torch.randn(tensor.shape, generator=gen)
            if name.startswith("style.") and name.endswith(".weight"):
                value = r / config.lr_mlp
            elif name.endswith("modulation.bias"):
                value = 1.0 + 0.1 * r
            elif (name.endswith(("activate.bias", "to_rgb1.bias", "noise.weight"))
                  or (name.startswith(("to_rgbs.", "style.")) and name.endswith(".bias"))):
                value = 0.1 * r
            else:  # conv weights, constant input, noise maps
                value = r
            tensor.copy_(value)
    G.mean_latent()
    return G.eval().requires_grad_(False)


def write_tiny_generator(path: str | os.PathLike, *, size: int = 32, style_dim: int = 64, n_mlp: int = 2,
                         channel_multiplier: int = 1, max_channels: int | None = 64, seed: int = 0,
                         with_latent_avg: bool = True) -> Path:
    """Write a seeded rosinality-layout checkpoint ``{"g_ema": ..., "latent_avg": ...}``.

    Args:
        path: output ``.pt`` path.
        size, style_dim, n_mlp, channel_multiplier, max_channels, seed: see :func:`seeded_generator`.
        with_latent_avg: False writes ``{"g_ema": ...}`` only (the loader then computes it).

    Returns:
        The path written.
    """
    G = seeded_generator(size=size, style_dim=style_dim, n_mlp=n_mlp, channel_multiplier=channel_multiplier,
                         max_channels=max_channels, seed=seed)
    obj = {"g_ema": {k: v.clone() for k, v in G.state_dict().items()}}
    if with_latent_avg:
        obj["latent_avg"] = G.latent_avg.clone()
    with atomic_open(path) as f:
        torch.save(obj, f)
    return Path(path)


# --------------------------------------------------------------------------- NVIDIA pickles
class _NamedGlobal:
    """A global that the written pickle names (module, name) without it being importable here."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, *args, **kwargs):  # pickle requires a callable; only its name is written
        raise TypeError(f"{self.module}.{self.name} is a placeholder for writing pickles")


_RECONSTRUCT = _NamedGlobal("torch_utils.persistence", "_reconstruct_persistent_obj")
_EASYDICT = _NamedGlobal("dnnlib.util", "EasyDict")
_TF_NETWORK = _NamedGlobal("dnnlib.tflib.network", "Network")


class _PersistentOut:
    """Pickles as ``torch_utils.persistence`` does: ``_reconstruct_persistent_obj(meta)``."""

    def __init__(self, class_name: str, state: dict, module_src: str) -> None:
        self.class_name, self.state, self.module_src = class_name, state, module_src

    def __reduce__(self):
        meta = dict(type="class", version=6, module_src=self.module_src, class_name=self.class_name,
                    state=self.state)
        return (_RECONSTRUCT, (meta,))


class _EasyDictOut(dict):
    def __reduce__(self):
        return (_EASYDICT, (), None, None, iter(self.items()))


class _TFNetworkOut:
    def __init__(self, state: dict) -> None:
        self.state = state

    def __reduce__(self):
        return (_TF_NETWORK, (), self.state)


class _NvidiaPickler(pickle._Pickler):
    """Pure-Python pickler that writes :class:`_NamedGlobal` objects as GLOBAL opcodes."""

    def save(self, obj, save_persistent_id=True):
        if isinstance(obj, _NamedGlobal):
            memo = self.memo.get(id(obj))
            if memo is not None:
                self.write(self.get(memo[0]))
                return
            self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("ascii"))
            self.memoize(obj)
            return
        super().save(obj, save_persistent_id)


def _module_state(params: dict, buffers: dict, modules: dict, attrs: dict | None = None,
                  init_kwargs: dict | None = None) -> dict:
    """An ``nn.Module.__dict__`` as pickled by torch (hook dicts included)."""
    state = {"training": False,
             "_parameters": collections.OrderedDict((k, torch.nn.Parameter(v.clone(), requires_grad=False))
                                                    for k, v in params.items()),
             "_buffers": collections.OrderedDict((k, v.clone()) for k, v in buffers.items()),
             "_non_persistent_buffers_set": set(),
             "_backward_hooks": collections.OrderedDict(), "_forward_hooks": collections.OrderedDict(),
             "_forward_pre_hooks": collections.OrderedDict(), "_state_dict_hooks": collections.OrderedDict(),
             "_load_state_dict_pre_hooks": collections.OrderedDict(),
             "_modules": collections.OrderedDict(modules),
             "_init_args": (), "_init_kwargs": _EasyDictOut(init_kwargs or {})}
    state.update(attrs or {})
    return state


def _ada_generator(G: Generator, module_src: str, conv_clamp: float | None) -> _PersistentOut:
    """``G`` re-expressed as stylegan2-ada-pytorch's ``Generator`` (the inverse of our converter)."""
    sd = {k: v.detach().cpu().float() for k, v in G.state_dict().items()}
    cfg = G.config
    P = lambda name, state: _PersistentOut(name, state, module_src)  # noqa: E731

    fcs = collections.OrderedDict()
    for i in range(cfg.n_mlp):
        fcs[f"fc{i}"] = P("FullyConnectedLayer", _module_state(
            {"weight": sd[f"style.{i + 1}.weight"], "bias": sd[f"style.{i + 1}.bias"]}, {}, {},
            {"activation": "lrelu", "weight_gain": cfg.lr_mlp / math.sqrt(cfg.style_dim), "bias_gain": cfg.lr_mlp}))
    mapping = P("MappingNetwork", _module_state(
        {}, {"w_avg": G.mean_latent().cpu()}, fcs,
        {"z_dim": cfg.style_dim, "c_dim": 0, "w_dim": cfg.style_dim, "num_ws": G.n_latent,
         "num_layers": cfg.n_mlp, "w_avg_beta": 0.995},
        {"z_dim": cfg.style_dim, "c_dim": 0, "w_dim": cfg.style_dim, "num_ws": G.n_latent,
         "num_layers": cfg.n_mlp}))

    def affine(ours: str):
        return P("FullyConnectedLayer", _module_state(
            {"weight": sd[f"{ours}.conv.modulation.weight"], "bias": sd[f"{ours}.conv.modulation.bias"]}, {}, {},
            {"activation": "linear", "weight_gain": 1 / math.sqrt(cfg.style_dim), "bias_gain": 1}))

    def layer(ours: str, noise_index: int, res: int, up: bool):
        w = sd[f"{ours}.conv.weight"][0]
        filt = sd[f"{ours}.conv.blur.kernel"] / 4 if up else make_kernel(cfg.blur_kernel)
        return P("SynthesisLayer", _module_state(
            {"weight": w / math.sqrt(w[0].numel()), "bias": sd[f"{ours}.activate.bias"],
             "noise_strength": sd[f"{ours}.noise.weight"].reshape(())},
            {"resample_filter": filt, "noise_const": sd[f"noises.noise_{noise_index}"].reshape(res, res)},
            {"affine": affine(ours)},
            {"resolution": res, "up": 2 if up else 1, "use_noise": True, "activation": "lrelu",
             "conv_clamp": conv_clamp, "padding": 1, "act_gain": math.sqrt(2)}))

    def torgb(ours: str):
        w = sd[f"{ours}.conv.weight"][0]
        return P("ToRGBLayer", _module_state(
            {"weight": w, "bias": sd[f"{ours}.bias"].reshape(-1)}, {}, {"affine": affine(ours)},
            {"conv_clamp": conv_clamp, "weight_gain": 1 / math.sqrt(w[0].numel())}))

    blocks = collections.OrderedDict()
    ch = cfg.channels
    blocks["b4"] = P("SynthesisBlock", _module_state(
        {"const": sd["input.input"][0]}, {"resample_filter": make_kernel(cfg.blur_kernel)},
        {"conv1": layer("conv1", 0, 4, False), "torgb": torgb("to_rgb1")},
        {"in_channels": 0, "out_channels": ch[0], "resolution": 4, "architecture": "skip", "num_conv": 1,
         "num_torgb": 1}))
    for k in range(len(G.to_rgbs)):
        res = 8 * 2 ** k
        log_res = int(math.log2(res))
        blocks[f"b{res}"] = P("SynthesisBlock", _module_state(
            {}, {"resample_filter": sd[f"to_rgbs.{k}.upsample.kernel"] / 4},
            {"conv0": layer(f"convs.{2 * k}", 2 * log_res - 5, res, True),
             "conv1": layer(f"convs.{2 * k + 1}", 2 * log_res - 4, res, False),
             "torgb": torgb(f"to_rgbs.{k}")},
            {"in_channels": ch[k], "out_channels": ch[k + 1], "resolution": res, "architecture": "skip",
             "num_conv": 2, "num_torgb": 1}))
    synthesis_kwargs = _EasyDictOut(channel_base=32768, channel_max=512, num_fp16_res=4, conv_clamp=conv_clamp)
    synthesis = P("SynthesisNetwork", _module_state(
        {}, {}, blocks, {"w_dim": cfg.style_dim, "img_resolution": cfg.resolution, "img_channels": 3,
                         "num_ws": G.n_latent},
        {"w_dim": cfg.style_dim, "img_resolution": cfg.resolution, "img_channels": 3, **synthesis_kwargs}))
    init = {"z_dim": cfg.style_dim, "c_dim": 0, "w_dim": cfg.style_dim, "img_resolution": cfg.resolution,
            "img_channels": 3, "mapping_kwargs": _EasyDictOut(num_layers=cfg.n_mlp),
            "synthesis_kwargs": synthesis_kwargs}
    return P("Generator", _module_state(
        {}, {}, {"synthesis": synthesis, "mapping": mapping},
        {"z_dim": cfg.style_dim, "c_dim": 0, "w_dim": cfg.style_dim, "img_resolution": cfg.resolution,
         "img_channels": 3, "num_ws": G.n_latent}, init))


def _tf_networks(G: Generator, module_src: str) -> _TFNetworkOut:
    """``G`` as NVIDIA's TensorFlow ``Gs`` network (variables as numpy arrays)."""
    import numpy as np

    sd = {k: v.detach().cpu().float() for k, v in G.state_dict().items()}
    cfg = G.config

    def np32(t: torch.Tensor):
        return np.ascontiguousarray(t.numpy().astype(np.float32))

    mapping_vars = []
    for i in range(cfg.n_mlp):
        mapping_vars += [(f"Dense{i}/weight", np32(sd[f"style.{i + 1}.weight"].T)),
                         (f"Dense{i}/bias", np32(sd[f"style.{i + 1}.bias"]))]
    synth_vars = []

    def modconv(scope: str, ours: str, flip: bool = False):
        w = sd[f"{ours}.conv.weight"][0].permute(2, 3, 1, 0)  # (out,in,kh,kw) -> (kh,kw,in,out)
        if flip:
            w = torch.flip(w, [0, 1])
        synth_vars.extend([(f"{scope}/weight", np32(w)),
                           (f"{scope}/mod_weight", np32(sd[f"{ours}.conv.modulation.weight"].T)),
                           (f"{scope}/mod_bias", np32(sd[f"{ours}.conv.modulation.bias"] - 1))])

    def styled(scope: str, ours: str, up: bool = False):
        modconv(scope, ours, flip=up)
        synth_vars.extend([(f"{scope}/noise_strength", np32(sd[f"{ours}.noise.weight"].reshape(()))),
                           (f"{scope}/bias", np32(sd[f"{ours}.activate.bias"]))])

    def rgb(scope: str, ours: str):
        modconv(scope, ours)
        synth_vars.append((f"{scope}/bias", np32(sd[f"{ours}.bias"].reshape(-1))))

    synth_vars.append(("4x4/Const/const", np32(sd["input.input"])))
    styled("4x4/Conv", "conv1")
    rgb("4x4/ToRGB", "to_rgb1")
    for k in range(len(G.to_rgbs)):
        res = 8 * 2 ** k
        styled(f"{res}x{res}/Conv0_up", f"convs.{2 * k}", up=True)
        styled(f"{res}x{res}/Conv1", f"convs.{2 * k + 1}")
        rgb(f"{res}x{res}/ToRGB", f"to_rgbs.{k}")
    synth_vars += [(f"noise{i}", np32(sd[f"noises.noise_{i}"])) for i in range(G.num_noise_layers)]

    def net(name: str, variables: list, components: dict, static_kwargs: dict) -> _TFNetworkOut:
        return _TFNetworkOut({"version": 4, "name": name, "static_kwargs": static_kwargs,
                              "components": components, "build_module_src": module_src,
                              "build_func_name": name, "variables": variables})

    kwargs = {"resolution": cfg.resolution, "latent_size": cfg.style_dim, "dlatent_size": cfg.style_dim,
              "mapping_layers": cfg.n_mlp}
    mapping = net("G_mapping", mapping_vars, {}, kwargs)
    synthesis = net("G_synthesis", synth_vars, {}, kwargs)
    return net("G_main", [("dlatent_avg", np32(G.mean_latent().cpu()))],
               {"mapping": mapping, "synthesis": synthesis}, kwargs)


def write_nvidia_pickle(path: str | os.PathLike, G: Generator, *, flavour: str = "ada",
                        conv_clamp: float | None = None,
                        module_src: str = "# NVIDIA's network source would be embedded here\n") -> Path:
    """Write ``G`` as an NVIDIA StyleGAN2 pickle holding the same weights.

    Args:
        path: output ``.pkl``.
        G: a generator (e.g. :func:`seeded_generator` or one loaded from a file).
        flavour: ``"ada"`` (stylegan2-ada-pytorch ``{"G_ema": Generator, ...}``) or ``"tf"``
            (the TensorFlow-era ``(G, D, Gs)`` tuple of ``dnnlib.tflib.network.Network``).
        conv_clamp: ada only: the clamp stored on each layer (ada-trained models use 256).
        module_src: source code embedded in the pickle, as NVIDIA's code does; a safe
            loader must never execute it (tests put a tripwire here).

    Returns:
        The path written.
    """
    if flavour == "ada":
        net = _ada_generator(G, module_src, conv_clamp)
        data = {"G": net, "D": None, "G_ema": net, "augment_pipe": None,
                "training_set_kwargs": _EasyDictOut(resolution=G.resolution, use_labels=False)}
    elif flavour == "tf":
        gs = _tf_networks(G, module_src)
        data = (gs, gs, gs)
    else:
        raise ValueError(f"flavour must be 'ada' or 'tf', got {flavour!r}")
    with atomic_open(path) as f:
        _NvidiaPickler(f, protocol=3).dump(data)
    return Path(path)


# --------------------------------------------------------------------------- IR-SE50
def write_seeded_identity_net(path: str | os.PathLike, seed: int = 0, *, tiny: bool = False) -> Path:
    """Write a seeded IR-SE identity net as TreB1eN's plain state dict (``model_ir_se50.pth`` keys).

    Args:
        path: output ``.pth``.
        seed: weights are deterministic per seed.
        tiny: False = the real IR-SE50 (43 M parameters, ~175 MB); True = the same key
            layout with one unit per stage and 16..128 channels (~1.7 M parameters, loads and
            runs fast; for tests that only need a working identity loss).

    Returns:
        The path written.
    """
    from soundedit.models.identity import IdentityNet

    model = IdentityNet(units=(1, 1, 1, 1), widths=(16, 32, 64, 128)) if tiny else IdentityNet()
    gen = torch.Generator().manual_seed(seed)
    state = {}
    prelus = _prelu_names(model)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                value = torch.zeros_like(t)
            elif name.endswith("running_var"):
                value = 1.0 + 0.1 * torch.randn(t.shape, generator=gen).abs()
            elif name.endswith(("running_mean", ".bias")):
                value = 0.1 * torch.randn(t.shape, generator=gen)
            elif t.ndim == 1:  # BatchNorm scale or PReLU slope
                prelu = name in prelus
                value = (0.25 if prelu else 1.0) + (0.01 if prelu else 0.1) * torch.randn(t.shape, generator=gen)
            else:
                value = torch.randn(t.shape, generator=gen) / math.sqrt(t[0].numel())
            state[name] = value.contiguous()
    with atomic_open(path) as f:
        torch.save(state, f)
    return Path(path)


def _prelu_names(model: torch.nn.Module) -> set[str]:
    return {f"{name}.weight" for name, m in model.named_modules() if isinstance(m, torch.nn.PReLU)}
