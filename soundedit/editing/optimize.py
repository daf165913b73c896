"""The sound-guided latent optimisation (a pure function of models and tensors).

    w* = argmin_w  (1 − cos(f_v(G(w)), t)) + λ_sim · Σ_l weight_l · ‖w_l − w_s,l‖²
                   + λ_ID · (1 − cos(R(G(w_s)), R(G(w))))

``t`` is the target embedding (a sound, a text, or a mix of both), ``f_v`` CLIP's
image encoder, ``G`` the StyleGAN2 synthesis network, ``R`` IR-SE50 (faces only)
and ``weight_l`` the per-layer weights of :mod:`soundedit.editing.gates`.
N edits run as one batch with per-item losses, so a batch equals N single runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import torch

from soundedit.config import MAX_LR, MAX_STEPS
from soundedit.editing.gates import LayerWeights
from soundedit.editing.losses import cosine_distance, identity_loss, similarity_loss
from soundedit.editing.result import EditResult
from soundedit.editing.schedules import RampSchedule
from soundedit.errors import DivergedError, InputError, check_int, check_number
from soundedit.steps import StepGraph, StepHistory, check_graph_mode, make_adam, refill, set_lr

logger = logging.getLogger("soundedit")

Callback = Callable[[int, dict[str, torch.Tensor]], Any]


def _as_batch(w_source: torch.Tensor, target: torch.Tensor, n_latent: int, style_dim: int,
              embed_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Check shapes once at the entry point and broadcast sources and targets to a common N."""
    if w_source.dim() == 2 and w_source.shape == (n_latent, style_dim):
        w_source = w_source.unsqueeze(0)
    elif w_source.dim() == 2 and w_source.shape[1] == style_dim:  # W codes (N, D): same w on every layer
        w_source = w_source.unsqueeze(1).expand(-1, n_latent, -1)
    if w_source.dim() != 3 or w_source.shape[1:] != (n_latent, style_dim):
        raise InputError(f"w_source: expected W+ of shape (N, {n_latent}, {style_dim}) for this generator, "
                         f"got {tuple(w_source.shape)}")
    if target.dim() == 1:
        target = target.unsqueeze(0)
    if target.dim() != 2 or target.shape[1] != embed_dim:
        raise InputError(f"target: expected embeddings of shape (N, {embed_dim}), got {tuple(target.shape)}")
    n = max(w_source.shape[0], target.shape[0])
    for name, t in (("w_source", w_source), ("target", target)):
        if t.shape[0] not in (1, n):
            raise InputError(f"{name}: batch of {t.shape[0]} does not match the other input's batch of {n}")
    return w_source.expand(n, -1, -1), target.expand(n, -1)


def optimize_latent(
    generator: torch.nn.Module,
    clip_space: Any,
    target: torch.Tensor,
    w_source: torch.Tensor,
    *,
    steps: int = 300,
    lr: float = 0.1,
    lambda_sim: float = 0.008,
    lambda_id: float = 0.0,
    layer_mask: str | torch.Tensor = "adaptive",
    identity: torch.nn.Module | None = None,
    schedule: Callable[[int, int, float], float] | None = None,
    noise: str = "const",
    generator_seed: int = 0,
    max_gate_ratio: float = 10.0,
    frame_every: int = 0,
    callback: Callback | None = None,
    cuda_graph: str | None = None,
) -> EditResult:
    """Optimise W+ codes so CLIP sees ``G(w)`` close to ``target`` while staying near ``w_source``.

    Args:
        generator: a StyleGAN2 ``Generator`` (``.n_latent``, ``.style_dim``, ``.synthesize``).
        clip_space: a ``ClipSpace`` (``.embed_image`` differentiable, ``.embed_dim``).
        target: ``(N, d)`` or ``(d,)`` target embeddings (unit norm, e.g. from
            :func:`soundedit.editing.targets.build_target`); one per item or shared.
        w_source: ``(N, n_latent, style_dim)`` or ``(n_latent, style_dim)`` W+, or
            ``(N, style_dim)`` W codes; the start point and the similarity anchor.
        steps: optimisation steps.
        lr: peak learning rate of Adam.
        lambda_sim: weight of the latent-similarity term (0: free generation).
        lambda_id: weight of the identity term; needs ``identity`` when > 0.
        layer_mask: ``"adaptive"``, ``"uniform"``, ``"authors"`` or fixed weights
            ``(n_latent,)``/``(N, n_latent)`` (see :mod:`soundedit.editing.gates`).
        identity: an ``IdentityNet`` (``.embed_faces``); only used when ``lambda_id > 0``.
        schedule: ``schedule(step, steps, lr) -> lr``; default StyleCLIP's :class:`RampSchedule`.
        noise: the generator's noise mode: ``"const"`` (its stored noise maps; the paper's
            setting, deterministic), ``"random"`` (fresh maps every step, drawn from a CPU
            ``torch.Generator`` seeded with ``generator_seed``, so still reproducible) or ``"none"``.
        generator_seed: seed of the noise maps when ``noise="random"``.
        max_gate_ratio: adaptive mode's bound on the largest/smallest layer weight.
        frame_every: keep the current images every k steps (0: none) for a progress animation.
        callback: ``callback(step, losses)`` after each step; ``losses`` holds the
            per-item ``clip``, ``sim``, ``id``, ``total`` (``(N,)`` tensors, on the device: reading
            one back waits for the GPU) and ``lr``.
        cuda_graph: ``"auto"``, ``"on"``, ``"off"`` or ``None`` (``SOUNDEDIT_CUDA_GRAPH``, default auto):
            on CUDA, steps after the first three replay a captured CUDA graph
            (:class:`soundedit.steps.StepGraph`; same results, no per-step host overhead).

    Returns:
        :class:`EditResult` with the final ``w_plus (N, L, D)``, ``image (N, 3, H, W)``,
        ``source_image``, per-step ``history`` (``(steps, N)`` per term), ``gates``/``layer_weights``
        ``(N, L)``, ``frames`` and final ``metrics``.

    Raises:
        InputError: bad shapes or settings (checked before any work is done).
        CudaGraphError: ``cuda_graph="on"`` off CUDA, or a step that cannot be captured.
    """
    n_latent, style_dim, embed_dim = int(generator.n_latent), int(generator.style_dim), int(clip_space.embed_dim)
    check_int(steps, "steps", low=0, high=MAX_STEPS)
    check_number(lr, "lr", low=0, high=MAX_LR, low_open=True)
    check_number(lambda_sim, "lambda_sim", low=0)
    check_number(lambda_id, "lambda_id", low=0)
    check_number(frame_every, "frame_every", low=0)
    if lambda_id > 0 and identity is None:
        raise InputError("lambda_id > 0 needs an identity network (identity=load_identity_net('ir-se50'))")
    schedule = schedule or RampSchedule()
    device = next(generator.parameters()).device
    cuda_graph = check_graph_mode(cuda_graph, device)
    w_source, target = _as_batch(w_source.detach().to(device, torch.float32),
                                 target.detach().to(device, torch.float32), n_latent, style_dim, embed_dim)
    n = w_source.shape[0]
    gates = LayerWeights(layer_mask, n_items=n, n_latent=n_latent, device=device, max_ratio=max_gate_ratio)

    noise_rng = torch.Generator().manual_seed(generator_seed) if noise == "random" else None
    # Fresh noise maps are drawn on the CPU (reproducible on every device) and copied into fixed
    # buffers before each step, which a captured CUDA graph can read (_redraw).
    noise_maps = generator.make_noise(n, generator=noise_rng) if noise_rng is not None else None  # the source's

    def synthesize(codes: torch.Tensor) -> torch.Tensor:
        return generator.synthesize(codes, noise=noise_maps if noise_maps is not None else noise)

    with torch.no_grad():
        source_image = synthesize(w_source)
        source_embedding = clip_space.embed_image(source_image)
        source_id = identity.embed_faces(source_image) if lambda_id > 0 else None

    w = w_source.clone().requires_grad_(True)
    zeros = torch.zeros(n, device=device)

    def step() -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        image = synthesize(w)
        clip_term = cosine_distance(clip_space.embed_image(image), target)
        if lambda_sim > 0:
            sim_term, per_layer = similarity_loss(w, w_source, gates.weights())
        else:  # free generation: no regulariser, and the gates have nothing to learn from
            sim_term, per_layer = zeros, None
        id_term = identity_loss(source_id, identity.embed_faces(image)) if source_id is not None else zeros
        total = clip_term + lambda_sim * sim_term + lambda_id * id_term
        optimizer.zero_grad(set_to_none=True)
        total.sum().backward()  # items are independent: the sum's gradient is each item's own
        optimizer.step()
        if per_layer is not None:
            gates.after_step(per_layer)
        return {"clip": clip_term, "sim": sim_term, "id": id_term, "total": total}, image.detach()

    run_step = StepGraph(step, device=device, mode=cuda_graph)
    optimizer = make_adam([w, *gates.params], lr, capturable=run_step.may_capture, device=device)
    history = StepHistory(("clip", "sim", "id", "total"), steps, n, device)
    lrs: list[float] = []
    frames: list[tuple[int, torch.Tensor]] = []
    start = time.perf_counter()
    for step_index in range(steps):
        step_lr = schedule(step_index, steps, lr)
        set_lr(optimizer, step_lr)
        if noise_maps is not None:
            _redraw(noise_maps, noise_rng)
        step_losses, image = run_step()
        losses = history.record(step_index, step_losses)
        lrs.append(step_lr)
        if frame_every > 0 and step_index % frame_every == 0:
            frames.append((step_index, _frame(image)))
        if callback is not None:
            callback(step_index, {**losses, "lr": torch.tensor(step_lr)})
    seconds = time.perf_counter() - start

    # Checked once here, not per step: a per-step check would read the loss back and stall the GPU
    # (steps.py); the history is read back for the result anyway.  Nothing is returned, so nothing is saved.
    losses_cpu = history.to_cpu()
    _check_converged(losses_cpu["total"], w)
    w_final = w.detach()
    with torch.no_grad():
        if noise_maps is not None:
            _redraw(noise_maps, noise_rng)
        image = synthesize(w_final)
        embedding = clip_space.embed_image(image)
        metrics = {
            "target_cosine": torch.cosine_similarity(embedding, target, dim=-1).cpu(),
            "source_target_cosine": torch.cosine_similarity(source_embedding, target, dim=-1).cpu(),
            "source_cosine": torch.cosine_similarity(embedding, source_embedding, dim=-1).cpu(),
            "latent_distance": (w_final - w_source).flatten(1).norm(dim=1).cpu(),
        }
        if identity is not None:
            src = source_id if source_id is not None else identity.embed_faces(source_image)
            metrics["identity_cosine"] = torch.cosine_similarity(identity.embed_faces(image), src, dim=-1).cpu()
    if frame_every > 0:
        frames.append((steps, _frame(image)))
    return EditResult(
        w_plus=w_final.cpu(), w_source=w_source.detach().cpu(), image=image.cpu(), source_image=source_image.cpu(),
        target=target.cpu(),
        history={**losses_cpu, "lr": torch.tensor(lrs, dtype=torch.float32)},
        gates=gates.gates().cpu(), layer_weights=gates.weights().detach().cpu(), frames=frames, metrics=metrics,
        settings={"steps": steps, "lr": lr, "lambda_sim": lambda_sim, "lambda_id": lambda_id,
                  "layer_mask": gates.mode, "max_gate_ratio": max_gate_ratio, "noise": noise,
                  "generator_seed": generator_seed, "cuda_graph": run_step.ran_as,
                  "schedule": repr(schedule), "frame_every": frame_every},
        seconds=seconds,
    )


def _check_converged(total: torch.Tensor, w: torch.Tensor) -> None:
    """Raise :class:`DivergedError` when the ``(steps, N)`` total loss or the final codes are not finite.

    A too-high learning rate can blow the codes up to inf/NaN; saving those would write black images
    and a report full of nulls with exit 0.
    """
    bad_steps = (~torch.isfinite(total)).any(dim=1).nonzero()
    if len(bad_steps):
        k = int(bad_steps[0])
        value = total[k][~torch.isfinite(total[k])][0].item()
        raise DivergedError(f"the optimisation diverged (loss is {value} at step {k + 1} of {len(total)}); "
                            "try a lower --lr")
    if not bool(torch.isfinite(w.detach()).all()):
        raise DivergedError("the optimisation diverged (the edited codes are not finite); try a lower --lr")


def _redraw(maps: list[torch.Tensor], rng: torch.Generator) -> None:
    """Fresh noise in place (maps a captured CUDA graph reads): the values ``Generator.make_noise`` would
    draw from ``rng`` (same shapes, same order), drawn on the CPU and queued without waiting for the GPU."""
    for m in maps:
        refill(m, torch.randn(m.shape, generator=rng))


def _frame(image: torch.Tensor, max_side: int = 256) -> torch.Tensor:
    """A progress frame: ``[-1, 1]`` images -> uint8 on the CPU, at most ``max_side`` px (an
    animation does not need 1024-px frames, and 300 of them would cost gigabytes)."""
    if max(image.shape[-2:]) > max_side:
        scale = max_side / max(image.shape[-2:])
        size = (max(1, round(image.shape[-2] * scale)), max(1, round(image.shape[-1] * scale)))
        image = torch.nn.functional.interpolate(image.float(), size=size, mode="area")
    return ((image.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
