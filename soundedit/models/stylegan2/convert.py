"""Convert NVIDIA's StyleGAN2 generators (stylegan2-ada-pytorch / stylegan3, TensorFlow) to our layout.

It is the same network under other names; the differences that matter numerically:

- NVIDIA's ``SynthesisLayer`` stores its conv weight *without* the 1/sqrt(fan_in)
  scale (demodulation makes it almost irrelevant), while rosinality multiplies the
  stored weight by it at run time: we store ``weight * sqrt(fan_in)`` so the product
  is the same and even the demodulation epsilon acts identically.
- ``ToRGBLayer`` scales the styles by 1/sqrt(fan_in) instead of the weight; the
  product is the same, so its weight is copied as is.
- Noise: ``noise_const`` (H, W) times ``noise_strength`` () -> ``noises.noise_i`` (1,1,H,W)
  and ``noise.weight`` (1,).  The FIR filter ``resample_filter`` (normalised to sum 1)
  becomes the blur / upsample kernels, which carry the upsampling gain 4.
- TensorFlow pickles: conv weights are (kh, kw, in, out); the up-sampling conv is
  spatially flipped; modulation biases are stored minus 1.
- The mean latent is ``mapping.w_avg`` (``dlatent_avg`` in TF pickles).

NVIDIA's ada-trained models run their top resolutions in float16 on GPUs and clamp
activations (``conv_clamp``); we run float32 and keep the clamp, which matches NVIDIA's
``force_fp32`` path.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import torch

from soundedit.errors import CheckpointError
from soundedit.models.stylegan2.generator import GeneratorConfig
from soundedit.models.stylegan2.layers import BLUR_KERNEL, make_kernel
from soundedit.models.stylegan2.loading import infer_config
from soundedit.models.stylegan2.pickle_safe import PersistentObject, TFNetwork, load_nvidia_pickle


def nvidia_pickle_to_state(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], torch.Tensor | None,
                                                              GeneratorConfig]:
    """Read an NVIDIA ``.pkl`` (ada/stylegan3 PyTorch or TensorFlow) and convert its ``G_ema``.

    Returns:
        (rosinality state dict, latent_avg, config).
    """
    path = Path(path)
    data = load_nvidia_pickle(path)
    if isinstance(data, dict) and isinstance(data.get("G_ema"), PersistentObject):
        return ada_to_rosinality(data["G_ema"], source=path)
    if isinstance(data, PersistentObject) and data.class_name == "Generator":
        return ada_to_rosinality(data, source=path)
    if isinstance(data, tuple) and len(data) == 3 and all(isinstance(n, TFNetwork) for n in data):
        return tf_to_rosinality(data[2], source=path)  # (G, D, Gs): Gs is the moving average
    if isinstance(data, TFNetwork):
        return tf_to_rosinality(data, source=path)
    what = sorted(data)[:8] if isinstance(data, dict) else type(data).__name__
    raise CheckpointError(f"{path}: expected an NVIDIA StyleGAN2 pickle with 'G_ema' (or a TensorFlow "
                          f"(G, D, Gs) tuple), got {what}")


def _get(tensors: dict, key: str, source) -> torch.Tensor:
    try:
        return tensors[key].detach().float()
    except KeyError:
        raise CheckpointError(f"{source}: NVIDIA generator is missing {key!r}") from None


def ada_to_rosinality(G: PersistentObject, *, source: str | os.PathLike = "pickle"):
    """Convert a stylegan2-ada-pytorch ``Generator`` (as plain data) to our layout."""
    if G.class_name != "Generator":
        raise CheckpointError(f"{source}: G_ema is a {G.class_name}, expected a StyleGAN2 Generator")
    t = G.tensors()
    modules = G.modules()
    if any(k.startswith("mapping.embed.") for k in t):
        raise CheckpointError(f"{source}: class-conditional generators (mapping.embed) are not supported")
    if "synthesis.input.affine.weight" in t:
        raise CheckpointError(f"{source}: this is a StyleGAN3 generator; only StyleGAN2 generators are supported")
    out: dict[str, torch.Tensor] = {}

    n_mlp = sum(1 for k in t if re.fullmatch(r"mapping\.fc\d+\.weight", k))
    for i in range(n_mlp):
        out[f"style.{i + 1}.weight"] = _get(t, f"mapping.fc{i}.weight", source)
        out[f"style.{i + 1}.bias"] = _get(t, f"mapping.fc{i}.bias", source)
    fc0 = modules.get("mapping.fc0")
    lr_mlp = float(fc0.state.get("bias_gain", 0.01)) if fc0 is not None else 0.01

    resolutions = sorted(int(m.group(1)) for k in t if (m := re.fullmatch(r"synthesis\.b(\d+)\.conv1\.weight", k)))
    if not resolutions or resolutions[0] != 4:
        raise CheckpointError(f"{source}: NVIDIA generator has no synthesis.b4 block")
    conv_clamp = None

    def layer(nv: str, ours: str, noise_index: int, up: bool) -> None:
        nonlocal conv_clamp
        weight = _get(t, f"{nv}.weight", source)  # (out, in, k, k)
        fan_in = weight[0].numel()
        out[f"{ours}.conv.weight"] = (weight * math.sqrt(fan_in)).unsqueeze(0)
        out[f"{ours}.conv.modulation.weight"] = _get(t, f"{nv}.affine.weight", source)
        out[f"{ours}.conv.modulation.bias"] = _get(t, f"{nv}.affine.bias", source)
        out[f"{ours}.activate.bias"] = _get(t, f"{nv}.bias", source)
        res = int(re.match(r"synthesis\.b(\d+)", nv).group(1))
        if f"{nv}.noise_strength" in t:  # use_noise=False layers carry no noise
            out[f"{ours}.noise.weight"] = _get(t, f"{nv}.noise_strength", source).reshape(1)
            out[f"noises.noise_{noise_index}"] = _get(t, f"{nv}.noise_const", source).reshape(1, 1, res, res)
        else:
            out[f"{ours}.noise.weight"] = torch.zeros(1)
            out[f"noises.noise_{noise_index}"] = torch.zeros(1, 1, res, res)
        if up:
            out[f"{ours}.conv.blur.kernel"] = _resample_kernel(t, f"{nv}.resample_filter") * 4
        mod = modules.get(nv)
        if mod is not None and mod.state.get("conv_clamp") is not None:
            conv_clamp = float(mod.state["conv_clamp"])

    def torgb(nv: str, ours: str, skip_from: str | None) -> None:
        out[f"{ours}.conv.weight"] = _get(t, f"{nv}.weight", source).unsqueeze(0)
        out[f"{ours}.conv.modulation.weight"] = _get(t, f"{nv}.affine.weight", source)
        out[f"{ours}.conv.modulation.bias"] = _get(t, f"{nv}.affine.bias", source)
        out[f"{ours}.bias"] = _get(t, f"{nv}.bias", source).reshape(1, -1, 1, 1)
        if skip_from is not None:
            out[f"{ours}.upsample.kernel"] = _resample_kernel(t, skip_from) * 4

    for res in resolutions:
        if f"synthesis.b{res}.torgb.weight" not in t:
            raise CheckpointError(f"{source}: synthesis.b{res} has no torgb: only the 'skip' generator "
                                  f"architecture (every public StyleGAN2 model) is supported")
    out["input.input"] = _get(t, "synthesis.b4.const", source).unsqueeze(0)
    layer("synthesis.b4.conv1", "conv1", 0, up=False)
    torgb("synthesis.b4.torgb", "to_rgb1", None)
    for k, res in enumerate(resolutions[1:]):
        log_res = int(math.log2(res))
        layer(f"synthesis.b{res}.conv0", f"convs.{2 * k}", 2 * log_res - 5, up=True)
        layer(f"synthesis.b{res}.conv1", f"convs.{2 * k + 1}", 2 * log_res - 4, up=False)
        torgb(f"synthesis.b{res}.torgb", f"to_rgbs.{k}", f"synthesis.b{res}.resample_filter")
    latent_avg = t.get("mapping.w_avg")
    config = infer_config(out, source=source, conv_clamp=conv_clamp, lr_mlp=lr_mlp)
    return out, (latent_avg.detach().float() if latent_avg is not None else None), config


def _resample_kernel(t: dict, key: str) -> torch.Tensor:
    if key in t:
        f = t[key].detach().float()
        if f.ndim == 1:  # separable filters may be stored as 1-D taps
            f = f[None, :] * f[:, None]
        return f / f.sum()
    return make_kernel(BLUR_KERNEL)


def tf_to_rosinality(Gs: TFNetwork, *, source: str | os.PathLike = "pickle"):
    """Convert a TensorFlow-era StyleGAN2 ``Gs`` network (as plain data) to our layout."""
    if Gs.version < 4:
        raise CheckpointError(f"{source}: TensorFlow network pickle version {Gs.version} is too old (need >= 4)")
    import numpy as np

    v = {k: np.asarray(a) for k, a in Gs.variables().items()}
    if any(k.startswith("mapping/LabelEmbed") for k in v):
        raise CheckpointError(f"{source}: class-conditional generators (LabelEmbed) are not supported")
    if any(re.fullmatch(r"synthesis/ToRGB_lod\d+/.*", k) for k in v):
        raise CheckpointError(f"{source}: StyleGAN (v1) / progressive-growing 'orig' generators are not supported")

    def g(key: str) -> torch.Tensor:
        try:
            return torch.from_numpy(np.ascontiguousarray(v[key], dtype=np.float32))
        except KeyError:
            raise CheckpointError(f"{source}: TensorFlow generator is missing variable {key!r}") from None

    out: dict[str, torch.Tensor] = {}
    n_mlp = sum(1 for k in v if re.fullmatch(r"mapping/Dense\d+/weight", k))
    for i in range(n_mlp):
        out[f"style.{i + 1}.weight"] = g(f"mapping/Dense{i}/weight").T.contiguous()
        out[f"style.{i + 1}.bias"] = g(f"mapping/Dense{i}/bias")
    resolutions = sorted(int(m.group(1)) for k in v if (m := re.fullmatch(r"synthesis/(\d+)x\1/Conv1/weight", k)))
    blur = make_kernel(Gs.static_kwargs.get("resample_kernel") or BLUR_KERNEL) * 4

    def modconv(scope: str, ours: str, *, flip: bool = False) -> None:
        w = g(f"{scope}/weight")  # (kh, kw, in, out)
        if flip:  # TF's transposed conv uses the spatially flipped kernel
            w = torch.flip(w, [0, 1])
        out[f"{ours}.conv.weight"] = w.permute(3, 2, 0, 1).unsqueeze(0).contiguous()
        out[f"{ours}.conv.modulation.weight"] = g(f"{scope}/mod_weight").T.contiguous()
        out[f"{ours}.conv.modulation.bias"] = g(f"{scope}/mod_bias") + 1  # TF adds the 1 at run time

    def styled(scope: str, ours: str, noise_index: int, *, up: bool) -> None:
        modconv(scope, ours, flip=up)
        out[f"{ours}.activate.bias"] = g(f"{scope}/bias")
        out[f"{ours}.noise.weight"] = g(f"{scope}/noise_strength").reshape(1)
        out[f"noises.noise_{noise_index}"] = g(f"synthesis/noise{noise_index}")
        if up:
            out[f"{ours}.conv.blur.kernel"] = blur.clone()

    def rgb(scope: str, ours: str, *, up: bool) -> None:
        modconv(scope, ours)
        out[f"{ours}.bias"] = g(f"{scope}/bias").reshape(1, -1, 1, 1)
        if up:
            out[f"{ours}.upsample.kernel"] = blur.clone()

    out["input.input"] = g("synthesis/4x4/Const/const")
    styled("synthesis/4x4/Conv", "conv1", 0, up=False)
    rgb("synthesis/4x4/ToRGB", "to_rgb1", up=False)
    for k, res in enumerate(r for r in resolutions if r > 4):
        log_res = int(math.log2(res))
        styled(f"synthesis/{res}x{res}/Conv0_up", f"convs.{2 * k}", 2 * log_res - 5, up=True)
        styled(f"synthesis/{res}x{res}/Conv1", f"convs.{2 * k + 1}", 2 * log_res - 4, up=False)
        rgb(f"synthesis/{res}x{res}/ToRGB", f"to_rgbs.{k}", up=True)
    latent_avg = g("dlatent_avg") if "dlatent_avg" in v else None
    lr_mlp = float(Gs.static_kwargs.get("mapping_lrmul") or 0.01)
    config = infer_config(out, source=source, lr_mlp=lr_mlp)
    return out, latent_avg, config


def convert_generator(src: str | os.PathLike, dst: str | os.PathLike) -> dict:
    """Convert any supported generator file (or weights.lock name) to our ``.safetensors`` format.

    The weights are loaded and checked exactly as :func:`load_generator` does; the mean
    latent is computed when the source has none, so the output is complete.

    Args:
        src: rosinality ``.pt``, NVIDIA ``.pkl``, our ``.safetensors`` or a weights.lock name.
        dst: output path ending in ``.safetensors`` (written atomically).

    Returns:
        A summary: input, output, resolution, n_latent, style_dim, channels, latent_avg
        ("from checkpoint" or "computed"), bytes written.
    """
    from soundedit.errors import InputError
    from soundedit.models.stylegan2.loading import build_generator, read_generator_checkpoint, save_generator
    from soundedit.weights import resolve

    dst = Path(dst)
    if dst.suffix != ".safetensors":
        raise InputError(f"OUT: expected a path ending in .safetensors, got {str(dst)!r}")
    path = resolve(src)
    if dst.exists() and dst.resolve() == path.resolve():
        raise InputError(f"OUT: {dst} is the input file; choose another output path")
    state, latent_avg, config = read_generator_checkpoint(path)
    G = build_generator(state, latent_avg, config, source=path)
    out = save_generator(G, dst)
    return {"input": str(path), "output": str(out), "resolution": G.resolution, "n_latent": G.n_latent,
            "style_dim": G.style_dim, "channels": list(config.channels), "conv_clamp": config.conv_clamp,
            "latent_avg": "from checkpoint" if latent_avg is not None else "computed",
            "bytes": out.stat().st_size}
