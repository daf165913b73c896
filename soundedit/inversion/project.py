"""Optimisation-based GAN inversion: find the W/W+ code whose image matches a photo.

The method of Karras et al. 2020 (StyleGAN2, Sec. 5 "projection"): start at the mean
latent, optimise the code with Adam against a perceptual distance (LPIPS-VGG) plus
pixel MSE, with a learning-rate ramp (linear warm-up, cosine ramp-down) and Gaussian
noise added to the code early on (decaying to zero) to escape poor local minima.
Optionally the per-layer noise maps are optimised too, with the multi-scale
autocorrelation penalty that keeps them from encoding the image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from soundedit.editing.schedules import RampSchedule
from soundedit.config import MAX_LR, MAX_STEPS
from soundedit.errors import InputError, check_int, check_number
from soundedit.steps import StepGraph, StepHistory, check_graph_mode, make_adam, refill, set_lr

#: per-step callback: ``callback(step, losses)`` with ``losses`` holding ``(N,)`` tensors and ``lr``.
Callback = Callable[[int, dict[str, torch.Tensor]], None]

#: samples used to estimate the spread of W (scales the latent noise)
W_STD_SAMPLES = 10_000


@dataclass
class ProjectionResult:
    """What :func:`project` returns (tensors on the CPU).

    Attributes:
        w_plus: ``(N, n_latent, style_dim)`` the codes found.
        image: ``(N, 3, H, W)`` their reconstructions (with ``noise`` if it was optimised, else the
            generator's constant noise), in about [-1, 1].
        noise: the optimised noise maps (list of ``(N, 1, h, w)``) or ``None``.
        history: per-step ``total``, ``mse``, ``lpips`` (when used), ``noise_reg`` as ``(steps, N)``
            and ``lr`` as ``(steps,)``.
        metrics: final ``mse``, ``psnr`` (dB, images scaled to [0, 1]) and ``lpips`` (when a perceptual
            net was given), each ``(N,)``.
        settings: the hyperparameters used.
    """

    w_plus: torch.Tensor
    image: torch.Tensor
    noise: list[torch.Tensor] | None
    history: dict[str, torch.Tensor]
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)


def noise_regularization(noises: list[torch.Tensor]) -> torch.Tensor:
    """Autocorrelation of each noise map with its 1-px shifts, summed over a pyramid down to 8 px.

    Returns:
        ``(N,)``: zero for white noise; grows when the maps carry image structure.
    """
    total = 0.0
    for noise in noises:
        while True:
            total = total + (noise * torch.roll(noise, 1, dims=3)).mean(dim=(1, 2, 3)) ** 2
            total = total + (noise * torch.roll(noise, 1, dims=2)).mean(dim=(1, 2, 3)) ** 2
            if noise.shape[2] <= 8:
                break
            noise = F.avg_pool2d(noise, 2)
    return total


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of images in [-1, 1] (measured on the [0, 1] scale): ``(N,)``."""
    mse01 = ((a.clamp(-1, 1) - b.clamp(-1, 1)) / 2).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse01.clamp_min(1e-12))


@torch.no_grad()
def w_spread(G: torch.nn.Module, w_avg: torch.Tensor, *, samples: int = W_STD_SAMPLES, seed: int = 0) -> float:
    """The RMS distance of W samples (the mapping network's outputs) from the mean W ``w_avg``."""
    z = torch.randn(samples, int(G.style_dim), generator=torch.Generator().manual_seed(seed)).to(w_avg.device)
    w = torch.cat([G.style(c) for c in z.split(1024)])
    return float(((w - w_avg) ** 2).sum() / samples) ** 0.5


def project(G: torch.nn.Module, target: torch.Tensor, *, steps: int = 500, w_space: str = "w+", lr: float = 0.1,
            perceptual: torch.nn.Module | None = None, mse_weight: float = 1.0, optimize_noise: bool = False,
            noise_regularize: float = 1e5, latent_noise: float = 0.05, noise_ramp: float = 0.75,
            lr_rampup: float = 0.05, lr_rampdown: float = 0.25, init: torch.Tensor | None = None,
            device: str | torch.device | None = None, generator: torch.Generator | None = None,
            callback: Callback | None = None, cuda_graph: str | None = None) -> ProjectionResult:
    """Project images into the generator's W or W+ space.

    Args:
        G: a soundedit ``Generator`` (``n_latent``, ``style_dim``, ``resolution``, ``synthesize``).
        target: ``(N, 3, R, R)`` images in [-1, 1] at the generator's resolution ``R``.
        steps: optimisation steps (>= 1).
        w_space: ``"w+"`` (one code per layer: closer fits) or ``"w"`` (one code for all layers:
            better behaved for editing, worse fit).
        lr: peak Adam learning rate.
        perceptual: distance ``(a, b) -> (N,)`` such as :func:`~soundedit.inversion.load_lpips`'s
            LPIPS; ``None`` = pixel MSE only.
        mse_weight: weight of the pixel MSE (images in [-1, 1]) beside the perceptual distance.
        optimize_noise: also fit the per-layer noise maps (sharper reconstructions, but an edit
            rendered with the generator's constant noise no longer matches them).
        noise_regularize: weight of :func:`noise_regularization` (with ``optimize_noise``).
        latent_noise: Gaussian noise added to the code, times the spread of W, decaying
            quadratically to 0 at ``noise_ramp`` of the steps.
        lr_rampup, lr_rampdown: fractions of the steps for warm-up and cosine ramp-down.
        init: start from these codes ``(N, n_latent, style_dim)`` (e.g. an encoder's) instead of the
            mean latent; with ``w_space="w"`` their layer mean is used.
        device: where to run (default: the generator's device).
        generator: ``torch.Generator`` for the latent noise and the initial noise maps.
        callback: called after every step with the step and its losses (``(N,)`` tensors on the device).
        cuda_graph: ``"auto"``, ``"on"``, ``"off"`` or ``None`` (``SOUNDEDIT_CUDA_GRAPH``, default auto):
            on CUDA, steps after the first three replay a captured CUDA graph
            (:class:`soundedit.steps.StepGraph`).

    Returns:
        a :class:`ProjectionResult`.

    Raises:
        InputError: a target of the wrong shape or a bad setting.
        CudaGraphError: ``cuda_graph="on"`` off CUDA, or a step that cannot be captured.
    """
    n_latent, style_dim, res = int(G.n_latent), int(G.style_dim), int(G.resolution)
    if target.ndim != 4 or tuple(target.shape[1:]) != (3, res, res):
        raise InputError(f"project: target must be (N, 3, {res}, {res}) images for this generator, "
                         f"got {tuple(target.shape)}")
    if w_space not in ("w", "w+"):
        raise InputError(f"project: w_space must be 'w' or 'w+', got {w_space!r}")
    check_int(steps, "project: steps", low=1, high=MAX_STEPS)
    check_number(lr, "project: lr", low=0, high=MAX_LR, low_open=True)
    for name, value in (("mse_weight", mse_weight), ("noise_regularize", noise_regularize),
                        ("latent_noise", latent_noise)):
        check_number(value, f"project: {name}", low=0)
    if perceptual is None and mse_weight == 0:
        raise InputError("project: with perceptual=None the pixel MSE is the only loss; mse_weight must be > 0")
    dev = torch.device(device) if device is not None else next(G.parameters()).device
    cuda_graph = check_graph_mode(cuda_graph, dev)
    n = target.shape[0]
    target = target.to(dev, torch.float32)
    w_avg = G.mean_latent().to(next(G.parameters()).device)
    w_std = w_spread(G, w_avg) if latent_noise > 0 else 0.0  # only the latent-noise jitter uses it
    if init is None:
        start = w_avg.view(1, 1, style_dim).expand(n, n_latent if w_space == "w+" else 1, style_dim)
    else:
        init = G.to_w_plus(init.to(dev, torch.float32))
        if init.shape[0] != n:
            raise InputError(f"project: init has {init.shape[0]} codes for {n} target images")
        start = init if w_space == "w+" else init.mean(1, keepdim=True)
    latent = start.detach().clone().requires_grad_(True)
    params = [latent]
    noises = None
    if optimize_noise:
        noises = [t.to(dev).requires_grad_(True) for t in G.make_noise(n, generator=generator)]
        params += noises
    jitter = torch.zeros_like(latent)  # the latent noise, drawn on the CPU and copied in before each step

    def step() -> dict[str, torch.Tensor]:
        w = (latent + jitter).expand(n, n_latent, style_dim)
        image = G.synthesize(w, noise=noises if noises is not None else "const")
        losses = {"mse": (image - target).pow(2).flatten(1).mean(1)}
        losses["noise_reg"] = noise_regularization(noises) if noises is not None else torch.zeros(n, device=dev)
        total = mse_weight * losses["mse"] + noise_regularize * losses["noise_reg"]
        if perceptual is not None:
            losses["lpips"] = perceptual(image, target)
            total = total + losses["lpips"]
        losses["total"] = total
        opt.zero_grad(set_to_none=True)
        total.sum().backward()  # items are independent: the sum gives each its own gradient
        opt.step()
        if noises is not None:
            with torch.no_grad():  # keep the maps unit Gaussian so they cannot absorb the image's contrast
                for m in noises:
                    m.sub_(m.mean(dim=(1, 2, 3), keepdim=True)).div_(m.std(dim=(1, 2, 3), keepdim=True) + 1e-8)
        return losses

    run_step = StepGraph(step, device=dev, mode=cuda_graph)
    opt = make_adam(params, lr, capturable=run_step.may_capture, device=dev, betas=(0.9, 0.999))
    keys = ["total", "mse", "noise_reg"] + (["lpips"] if perceptual is not None else [])
    history = StepHistory(keys, steps, n, dev)
    lrs: list[float] = []
    schedule = RampSchedule(lr_rampup, lr_rampdown)
    for step_index in range(steps):
        step_lr = schedule(step_index, steps, lr)
        set_lr(opt, step_lr)
        strength = w_std * latent_noise * max(0.0, 1.0 - step_index / steps / noise_ramp) ** 2
        if strength > 0:  # drawn on the CPU (reproducible everywhere), queued without waiting for the GPU
            refill(jitter, torch.randn(latent.shape, generator=generator) * strength)
        else:
            jitter.zero_()
        losses = history.record(step_index, run_step())
        lrs.append(step_lr)
        if callback is not None:
            callback(step_index, {**losses, "lr": torch.tensor(step_lr)})
    with torch.no_grad():
        w_plus = latent.detach().expand(n, n_latent, style_dim).contiguous()
        image = G.synthesize(w_plus, noise=noises if noises is not None else "const")
        metrics = {"mse": (image - target).pow(2).flatten(1).mean(1).cpu(), "psnr": psnr(image, target).cpu()}
        if perceptual is not None:
            metrics["lpips"] = perceptual(image, target).cpu()
    settings = {"steps": steps, "w_space": w_space, "lr": lr, "mse_weight": mse_weight,
                "perceptual": type(perceptual).__name__ if perceptual is not None else None,
                "optimize_noise": optimize_noise, "noise_regularize": noise_regularize if optimize_noise else 0.0,
                "latent_noise": latent_noise, "noise_ramp": noise_ramp, "lr_rampup": lr_rampup,
                "lr_rampdown": lr_rampdown, "init": "given" if init is not None else "mean latent",
                "cuda_graph": run_step.ran_as}
    return ProjectionResult(
        w_plus=w_plus.cpu(), image=image.cpu(),
        noise=[m.detach().cpu() for m in noises] if noises is not None else None,
        history={**history.to_cpu(), "lr": torch.tensor(lrs, dtype=torch.float32)}, metrics=metrics,
        settings=settings)
