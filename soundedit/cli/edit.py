"""``soundedit edit`` and ``soundedit mix``: sound-guided (and text-guided) latent editing.

Thin commands over :class:`soundedit.editing.Editor`: they check every input
once (files, flags, job lists) before any model is loaded, then load the models
(weights.lock names or paths), run, and write the outputs atomically.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape

from soundedit.cli._common import (DeviceOpt, JsonOpt, check_weights, emit_json, interrupted, path_arg, save_outputs,
                                   stderr, stdout)
from soundedit.cli.main import app
from soundedit.config import CPU_AUTO_STEPS, FULL_STEPS, MAX_INTERPOLATE, MAX_LR, MAX_STEPS, auto_steps
from soundedit.errors import InputError, check_int, check_number, check_seed
from soundedit.fileio import SavedThenInterrupted, check_folder

logger = logging.getLogger("soundedit")


# -- shared options (Annotated so defaults show in --help) ---------------------------------------
SoundOpt = Annotated[Optional[list[Path]], typer.Option("--sound", "--audio", "-s", help="Sound file (any format soundedit reads); repeat to mix several.")]
GainOpt = Annotated[Optional[str], typer.Option("--gain", help="Gain in dB per --sound, comma-separated (e.g. 0,-10).")]
TextOpt = Annotated[Optional[str], typer.Option("--text", "-t", help="Text prompt (alone or with the sound).")]
SeedSrcOpt = Annotated[Optional[int], typer.Option("--seed", help="Source: sample W+ from this seed, 0 to 2**63 - 1 "
                                                               "(truncation applies). Default 0 when no source is given.")]
LatentOpt = Annotated[Optional[Path], typer.Option("--latent", help="Source: a saved W or W+ code (.pt/.pth/.npy).")]
FreeOpt = Annotated[bool, typer.Option("--free", help="Free generation from the mean latent (no regulariser).")]
GeneratorOpt = Annotated[str, typer.Option("--generator", "-g", help="StyleGAN2 weights.lock name or file.")]
EncoderOpt = Annotated[str, typer.Option("--audio-encoder", help="Audio encoder weights.lock name or file.")]
ClipOpt = Annotated[str, typer.Option("--clip", help="CLIP weights.lock name or file (OpenAI layout).")]
IdentityOpt = Annotated[str, typer.Option("--identity", help="IR-SE50 name or file; loaded only when --lambda-id > 0.")]
PresetOpt = Annotated[Optional[str], typer.Option("--preset", help="faces | scenes | art (default: from the generator).")]
StepsOpt = Annotated[str, typer.Option("--steps", help=f"Optimisation steps (1 to {MAX_STEPS}), or 'auto' ({FULL_STEPS} "
                                                     f"on a GPU, {CPU_AUTO_STEPS} on a CPU).")]
LambdaSimOpt = Annotated[Optional[float], typer.Option("--lambda-sim", help="Latent-similarity weight (default: preset).")]
LambdaIdOpt = Annotated[Optional[float], typer.Option("--lambda-id", help="Identity-loss weight (default: preset).")]
MaskOpt = Annotated[str, typer.Option("--mask", help="Per-layer regulariser: adaptive | uniform | authors.")]
LrOpt = Annotated[float, typer.Option("--lr", help=f"Peak learning rate, > 0 and at most {MAX_LR:g} (Adam, warm-up + "
                                                  "cosine ramp-down).")]
TruncOpt = Annotated[float, typer.Option("--truncation", help="Truncation of --seed sources.")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", parser=path_arg, help="Output folder.")]
AudioWeightOpt = Annotated[float, typer.Option("--audio-weight", help="Weight of the sound in a sound+text target.")]
TextWeightOpt = Annotated[float, typer.Option("--text-weight", help="Weight of the text in a sound+text target.")]
FramesOpt = Annotated[int, typer.Option("--frame-every", help="Keep a progress frame every k steps (0: about 25 frames).")]
ImageOpt = Annotated[Optional[Path], typer.Option("--image", "-i", help="Source photo (same as IMAGE).", show_default=False)]
InvMethodOpt = Annotated[str, typer.Option("--invert-method", help="Photo inversion: auto (e4e for faces, projection "
                                           "otherwise) | e4e | projection | e4e+projection.")]
InvStepsOpt = Annotated[Optional[int], typer.Option("--invert-steps", help="Projection steps of the photo inversion "
                                                    "(default 500; 100 to refine e4e).", show_default=False)]
AlignOpt = Annotated[Optional[bool], typer.Option("--align/--no-align", help="Photo: FFHQ face alignment, or centre crop "
                                                  "(default: align for face generators).", show_default=False)]
LpipsOpt = Annotated[str, typer.Option("--lpips", help="Photo inversion: VGG16 weights for LPIPS, or 'none'.")]
E4eOpt = Annotated[str, typer.Option("--encoder", help="Photo inversion: e4e checkpoint (name or file).")]


def _check_file(path: Path | None, what: str) -> None:
    if path is not None:
        from soundedit.fileio import check_file

        check_file(path, what)


def _source(image: Path | None, seed: int | None, latent: Path | None, free: bool) -> tuple[Any, str, int]:
    """The one source the flags name (default seed 0), a description for logs, and how many codes it
    holds as stored (a ``(N, L, D)`` latent file: N; anything else: 1)."""
    given = [name for name, v in (("IMAGE", image), ("--seed", seed), ("--latent", latent), ("--free", free or None))
             if v is not None]
    if len(given) > 1:
        raise InputError(f"source: expected one of IMAGE, --seed, --latent or --free, got {' and '.join(given)}")
    _check_file(image, "IMAGE")
    _check_file(latent, "--latent")
    if seed is not None:
        check_seed(seed)
    if latent is not None:  # non-finite or empty codes fail here, before the models load
        from soundedit.editing.sources import read_latent

        codes = read_latent(latent, what="--latent")
        return str(latent), f"latent {latent.name}", codes.shape[0] if codes.dim() == 3 else 1
    if free:
        return None, "the mean latent (free generation)", 1
    if image is not None:
        return str(image), f"photo {image.name}", 1
    return (seed if seed is not None else 0), f"seed {seed if seed is not None else 0}", 1


def _check_result_folder(out: Path, latent: Path | None, n_items: int = 1, *, mix: bool = False) -> None:
    """No folder of the user's where this edit's or mix's outputs go (``item-000 ...`` for an edit of a
    ``--latent`` of ``n_items`` codes), checked before the models load."""
    from soundedit.editing.report import check_result_folder

    check_result_folder(out, n_items, mix=mix, keep=_entries_holding(out, latent))


def _check_photo(image: Path | None) -> None:
    """Decode the photo now, so an unreadable, oversized or tiny one fails before the models load."""
    if image is not None:
        from soundedit.inversion.api import check_photo
        from soundedit.inversion.image import load_image

        check_photo(load_image(image, what="IMAGE"), what="IMAGE")


def _inversion_options(image: Path | None, generator: str, align, method: str, steps: int | None, lpips: str,
                       encoder: str) -> dict | None:
    """A photo source's inversion flags checked, and the photo decoded, before any model loads
    (``None`` without a photo)."""
    if image is None:
        return None
    from soundedit.cli.invert import inversion_options

    options = inversion_options(generator, align, method, steps, lpips, encoder, "w+", None, 0, prefix="--invert-")
    _check_photo(image)
    return options


def _invert_photo(editor, image: Path | None, options: dict | None, out: Path):
    """Align and invert a photo source into ``out/inversion/`` (saved first: a failed edit keeps it), so
    the edit starts from the photo's own code; returns ``(inversion, the report's source entry)`` or
    ``(None, None)`` without a photo."""
    if image is None:
        return None, None
    from soundedit.cli.invert import run_inversion
    from soundedit.editing.report import INVERSION_FOLDER

    inversion = run_inversion(editor.generator, image, options)
    paths = inversion.save(out / INVERSION_FOLDER)
    return inversion, {"kind": "photo", "path": str(image), "inversion": {
        "method": inversion.report["method"], "alignment": inversion.report["alignment"]["mode"],
        "metrics": inversion.report["metrics"], "outputs": {k: str(v) for k, v in paths.items()}}}


def _steps(value: str, device) -> tuple[int, str | None]:
    """``--steps``: an integer, or ``auto`` (fewer on a CPU); returns the steps and a note to show."""
    if value.strip().lower() == "auto":
        steps = auto_steps(device.type)
        if steps < FULL_STEPS:
            return steps, (f"running on the CPU: {steps} steps instead of {FULL_STEPS} "
                           f"(pass --steps {FULL_STEPS} for the full edit, or use a GPU)")
        return steps, None
    return _fixed_steps(value), None


def _fixed_steps(value: str) -> int:
    """``--steps`` other than ``auto``: an integer from 1 to ``MAX_STEPS`` (a huge count would fail inside torch)."""
    try:
        steps = int(value)
    except ValueError:
        steps = 0
    if not 1 <= steps <= MAX_STEPS:
        raise InputError(f"--steps: expected an integer from 1 to {MAX_STEPS} or 'auto', got {value!r}")
    return steps


def _check_settings(mask: str, lr: float, truncation: float, lambda_sim: float | None, lambda_id: float | None,
                    preset: str | None, steps: str, frame_every: int = 0) -> None:
    """The optimisation flags shared by edit and mix, checked before any model is loaded."""
    from soundedit.editing.gates import MASK_MODES
    from soundedit.editing.presets import PRESETS

    if mask not in MASK_MODES:
        raise InputError(f"--mask: expected one of {', '.join(MASK_MODES)}, got {mask!r}")
    if preset is not None and preset not in PRESETS:
        raise InputError(f"--preset: expected one of {', '.join(PRESETS)}, got {preset!r}")
    check_number(lr, "--lr", low=0, high=MAX_LR, low_open=True)
    check_number(truncation, "--truncation", low=0, high=1)
    for name, v in (("--lambda-sim", lambda_sim), ("--lambda-id", lambda_id)):
        if v is not None:
            check_number(v, name, low=0)
    check_int(frame_every, "--frame-every", low=0, high=MAX_STEPS)
    if steps.strip().lower() != "auto":  # 'auto' depends on the device, which is resolved later
        _fixed_steps(steps)


def _load_editor(generator: str, audio_encoder: str, clip: str, identity: str, device, note: str | None, *,
                 preset: str | None = None, lambda_id: float | None = None, free: bool = False):
    """Load the models (a missing checkpoint fails here, within seconds), then show the steps note.

    The identity net is loaded lazily, but when the edit will use it (λ_ID > 0 from the flag or
    the preset) its checkpoint is located up front too, so a missing one fails before the rest loads.
    """
    from soundedit.editing import Editor
    from soundedit.editing.presets import default_preset, preset_settings

    uses_identity = not free and preset_settings(preset or default_preset(generator), lambda_id=lambda_id)["lambda_id"] > 0
    check_weights(("--generator", generator), ("--audio-encoder", audio_encoder), ("--clip", clip),
                  ("--identity", identity if uses_identity else None))
    if uses_identity:
        from soundedit.weights import resolve

        resolve(identity)
    logger.info("loading %s, %s and %s on %s", generator, audio_encoder, clip, device)
    editor = Editor.from_pretrained(generator=generator, audio_encoder=audio_encoder, clip=clip, identity=identity,
                                    device=str(device))
    if note:
        stderr.print(f"[yellow]note:[/yellow] {note}")
    return editor


def _progress_callback(bar, steps: int):
    def callback(step: int, losses: dict) -> None:
        bar.advance()
        if step % 5 == 0 or step == steps - 1:
            bar.update(postfix=f"loss {losses['total'].mean():.4f}  clip {losses['clip'].mean():.4f}")
    return callback


def _summary(report: dict, out: Path) -> None:
    """A short human summary on stdout (the full report is in report.json)."""
    from rich.table import Table

    table = Table(title=f"edit → {out}", show_header=True)
    table.add_column("value")
    table.add_column("", justify="right")
    metrics = report.get("metrics", {})
    for key, label in (("source_target_cosine", "cos(source image, target)"),
                       ("target_cosine", "cos(edited image, target)"),
                       ("source_cosine", "cos(edited image, source image)"),
                       ("identity_cosine", "identity cosine to source")):
        if key in metrics:  # one value per edited code (a list when the source held several)
            values = metrics[key] if isinstance(metrics[key], list) else [metrics[key]]
            table.add_row(label, ", ".join(f"{v:.4f}" for v in values))
    table.add_row("steps", str(report["settings"]["steps"]))
    table.add_row("seconds", f"{report['seconds']:.1f}")
    stdout.print(table)


def _common_setup(sound, gain, text, image, seed, latent, free):
    """The sound/gain/text/source checks of edit and mix (their settings are checked first, by each);
    returns ``(gains, source, description, stored codes)`` (see :func:`_source`)."""
    from soundedit.audio.io import check_guide_sound

    for s in sound or []:
        _check_file(s, "--sound")
        check_guide_sound(s, what="--sound")  # decoded now: a bad or too short sound fails before the models load
    from soundedit.editing.batch import parse_gains
    from soundedit.editing.targets import check_prompt

    gains = parse_gains(gain)
    if gains is not None and len(gains) != len(sound or []):
        raise InputError(f"--gain: expected one gain per --sound ({len(sound or [])}), got {len(gains)}: {gain!r}")
    check_prompt(text)
    if not sound and not text:
        raise InputError("expected a target: --sound FILE and/or --text PROMPT")
    return (gains, *_source(image, seed, latent, free))


@app.command()
def edit(
    image: Annotated[Optional[Path], typer.Argument(help="Source photo (inverted into W+); or use --seed/--latent.",
                                                    show_default=False)] = None,
    sound: SoundOpt = None,
    gain: GainOpt = None,
    text: TextOpt = None,
    seed: SeedSrcOpt = None,
    latent: LatentOpt = None,
    free: FreeOpt = False,
    generator: GeneratorOpt = "ffhq-1024",
    audio_encoder: EncoderOpt = "authors-resnet18",
    clip: ClipOpt = "clip-vit-b-32",
    identity: IdentityOpt = "ir-se50",
    preset: PresetOpt = None,
    steps: StepsOpt = "auto",
    lambda_sim: LambdaSimOpt = None,
    lambda_id: LambdaIdOpt = None,
    mask: MaskOpt = "adaptive",
    lr: LrOpt = 0.1,
    truncation: TruncOpt = 0.7,
    audio_weight: AudioWeightOpt = 1.0,
    text_weight: TextWeightOpt = 1.0,
    frame_every: FramesOpt = 0,
    image_opt: ImageOpt = None,
    invert_method: InvMethodOpt = "auto",
    invert_steps: InvStepsOpt = None,
    align: AlignOpt = None,
    lpips: LpipsOpt = "vgg16-imagenet",
    encoder: E4eOpt = "e4e-ffhq",
    batch: Annotated[Optional[str], typer.Option("--batch", help="CSV job list (or '-' for stdin): one edit per row; "
                                                 "resumable, sharded under torchrun.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Edits optimised together in one batch.")] = 4,
    device: DeviceOpt = "auto",
    out: OutOpt = Path("out/edit"),
    json_out: JsonOpt = False,
) -> None:
    """Edit an image (photo, seed or latent) so it looks like a sound.

    Writes source.png, edited.png, comparison.png, progress.gif, gates.png, w_plus.pt and
    report.json into --out. A photo is aligned and inverted into W+ first (outputs in
    OUT/inversion/), and comparison.png then shows photo, reconstruction and edit.

    Examples:

      soundedit edit face.png --sound siren.wav

      soundedit edit --image photo.jpg --sound rain.wav --invert-method e4e+projection

      soundedit edit --seed 3 --sound thunder.wav --sound rain.wav --gain 0,-10 -g landscape-256

      soundedit edit --batch jobs.csv --out runs/   (columns: out,sound,gain,text,seed,latent,image)
    """
    check_folder(out, "--out", writable=True)  # before any model is loaded or step run
    from soundedit.runtime import resolve_device

    _check_settings(mask, lr, truncation, lambda_sim, lambda_id, preset, steps, frame_every)
    check_number(audio_weight, "--audio-weight", low=0)
    check_number(text_weight, "--text-weight", low=0)
    if image is not None and image_opt is not None:
        raise InputError("IMAGE: give the photo once, as IMAGE or --image, not both")
    image = image if image is not None else image_opt
    if batch_size < 1:
        raise InputError(f"--batch-size: expected >= 1, got {batch_size}")
    if batch is not None:
        if image or sound or text or seed is not None or latent or free or audio_weight != 1.0 or text_weight != 1.0:
            raise InputError("--batch takes sources and targets from the job file; "
                             "drop IMAGE/--sound/--text/--seed/--latent/--free/--audio-weight/--text-weight")
        return _run_batch(batch, generator, audio_encoder, clip, identity, preset, steps, lambda_sim, lambda_id, mask,
                          lr, truncation, frame_every, batch_size, device, out, json_out)
    for flag, weight, target, given in (("--audio-weight", audio_weight, "--sound", sound),
                                        ("--text-weight", text_weight, "--text", text)):
        if weight != 1.0 and not given:  # it weighs that target against the other: alone it would be ignored
            raise InputError(f"{flag}: weighs the {target} target; got {weight:g} without {target}")
    gains, source, described, n_codes = _common_setup(sound, gain, text, image, seed, latent, free)
    _check_result_folder(out, latent, n_codes)
    invert_options = _inversion_options(image, generator, align, invert_method, invert_steps, lpips, encoder)
    dev = resolve_device(device)
    n_steps, note = _steps(steps, dev)
    editor = _load_editor(generator, audio_encoder, clip, identity, dev, note, preset=preset, lambda_id=lambda_id,
                          free=free)
    from soundedit.runtime import progress

    inversion, photo_source = _invert_photo(editor, image, invert_options, out)
    source = inversion.w_plus if inversion is not None else source
    logger.info("editing %s for %d steps", described, n_steps)
    with progress("editing", total=n_steps) as bar:
        try:
            result = editor.edit(audio=[str(s) for s in sound] if sound else None, gains_db=gains, text=text,
                                 source=source, free=free, audio_weight=audio_weight, text_weight=text_weight,
                                 callback=_progress_callback(bar, n_steps), steps=n_steps, lr=lr,
                                 lambda_sim=lambda_sim, lambda_id=lambda_id, preset=preset, layer_mask=mask,
                                 truncation=truncation, frame_every=frame_every or max(1, n_steps // 25))
        except KeyboardInterrupt:
            interrupted("edit", out, inversion)
    result.meta["command"] = ["soundedit", *sys.argv[1:]]
    if inversion is not None:
        result.meta["source"] = [photo_source]
    paths = save_outputs(result, out, keep=_entries_holding(out, latent))
    if inversion is not None:
        _photo_comparison(inversion, result, paths["comparison"])
    report = {**result.report(), "outputs": {k: str(v) for k, v in paths.items()}}
    if json_out:
        emit_json(report)
    else:
        _summary(report, out)


def _entries_holding(out: Path, latent: Path | None) -> tuple[str, ...]:
    """The entry of ``out`` that holds this run's ``--latent`` (e.g. ``item-001/w_plus.pt`` of an earlier
    batch): the save must not delete the code the edit started from."""
    if latent is None:
        return ()
    try:
        return (Path(latent).resolve().relative_to(out.resolve()).parts[0],)
    except (ValueError, IndexError):  # elsewhere
        return ()


def _photo_comparison(inversion, result, path: Path) -> None:
    """comparison.png for a photo: the aligned photo, its reconstruction (the edit's source) and the edit."""
    from soundedit.editing.report import _png, labelled_row, to_pil
    from soundedit.fileio import write_bytes

    label = result.meta.get("label")
    label = label[0] if isinstance(label, list) else label
    psnr = inversion.report["metrics"]["psnr"]
    row = labelled_row([to_pil(inversion.aligned[0]), to_pil(result.source_image[0]), to_pil(result.image[0])],
                       ["photo", f"reconstruction ({psnr:.1f} dB)", f"edited: {label or 'target'}"])
    write_bytes(path, _png(row))


def _run_batch(batch: str, generator, audio_encoder, clip, identity, preset, steps, lambda_sim, lambda_id, mask, lr,
               truncation, frame_every, batch_size, device, out: Path, json_out: bool) -> None:
    """``edit --batch``: rows validated up front (files decoded), rows finished with the same job and
    settings skipped, changed ones re-run, this rank's rows in batches."""
    from soundedit.editing.batch import check_row_latents, edit_settings, read_jobs, rerun_reason, shard
    from soundedit.runtime import distributed_rank
    from soundedit.runtime import progress, resolve_device

    if batch == "-":
        text, name = sys.stdin.read(), "<stdin>"
    else:
        from soundedit.fileio import read_text_file

        text, name = read_text_file(batch, "--batch", "CSV"), Path(batch).name
    base = Path(batch).parent if batch != "-" else None  # relative paths: to the job file, as manifests
    jobs = read_jobs(text, out_dir=out, source_name=name, base=base)
    rank, world, local_rank = distributed_rank()
    mine = shard(jobs, rank, world)
    if world > 1:
        logger.info("rank %d of %d: %d of %d rows", rank, world, len(mine), len(jobs))
    if device == "auto" and world > 1:
        import torch

        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    dev = resolve_device(device)
    n_steps, note = _steps(steps, dev)
    frames = frame_every or max(1, n_steps // 25)
    # what each finished row's report.json must record to be skipped: the settings and models of this run
    settings = edit_settings(generator, steps=n_steps, lr=lr, lambda_sim=lambda_sim, lambda_id=lambda_id,
                             preset=preset, layer_mask=mask, truncation=truncation, frame_every=frames)
    models = {"generator": str(generator), "audio_encoder": str(audio_encoder), "clip": str(clip)}
    if settings["lambda_id"] > 0:
        models["identity"] = str(identity)
    reruns = {j.index: rerun_reason(j, settings, models) for j in mine if j.done}
    todo = [j for j in mine if not j.done or reruns[j.index]]
    summaries = [{"row": j.index + 1, "out": str(j.out), "status": "skipped (report.json exists)"}
                 for j in mine if j.done and not reruns[j.index]]
    shown = [j for j in todo if reruns.get(j.index)]
    if shown:
        for j in shown[:_MAX_RERUN_NOTES]:
            stderr.print("[yellow]note:[/yellow] " + escape(f"--batch row {j.index + 1} ({j.out}) runs again: "
                                                         f"{reruns[j.index]}"), highlight=False)
    if len(shown) > _MAX_RERUN_NOTES:
        stderr.print(f"[yellow]note:[/yellow] {len(shown) - _MAX_RERUN_NOTES} more finished rows run again "
                     "(--json gives every row's reason)")
    finished = 0
    if todo:
        editor = _load_editor(generator, audio_encoder, clip, identity, dev, note, preset=preset, lambda_id=lambda_id)
        check_row_latents(((job.edit["source"], f"--batch {name} row {job.index + 1}") for job in todo),
                          editor.generator)  # named as read_jobs names rows
        groups = [todo[i:i + batch_size] for i in range(0, len(todo), batch_size)]
        try:
            with progress(f"editing {len(todo)} rows", total=n_steps * len(groups)) as bar:
                for group in groups:
                    result = editor.edit_many([j.edit for j in group], callback=_progress_callback(bar, n_steps),
                                              steps=n_steps, lr=lr, lambda_sim=lambda_sim, lambda_id=lambda_id,
                                              preset=preset, layer_mask=mask, truncation=truncation,
                                              frame_every=frames)
                    for i, job in enumerate(group):
                        item = result.item(i)
                        item.meta["row"] = job.index + 1
                        try:
                            item.save(job.out)  # one set, replacing a changed row's earlier outputs
                        except SavedThenInterrupted:  # held off until the row's set was in place
                            finished += 1
                            raise
                        finished += 1
                        reason = reruns.get(job.index)
                        summaries.append({"row": job.index + 1, "out": str(job.out),
                                          "status": f"re-run ({reason})" if reason else "done",
                                          "target_cosine": item.metrics["target_cosine"].item()})
        except KeyboardInterrupt:
            stderr.print(f"[red]interrupted[/red]: {finished} finished edits are kept under {out} "
                         "(each with report.json); rerun the same command to resume")
            raise typer.Exit(130) from None
    summaries.sort(key=lambda s: s["row"])
    if json_out:
        emit_json({"rank": rank, "world_size": world, "rows": summaries})
    else:
        again = f" ({len(shown)} re-run: job or settings changed)" if shown else ""
        stdout.print(f"{finished} edits done{again}, {len(mine) - len(todo)} skipped (already finished) → {out}")


#: at most this many "runs again" notes (one per changed row) on stderr
_MAX_RERUN_NOTES = 10


@app.command()
def mix(
    image: Annotated[Optional[Path], typer.Argument(help="Source photo (inverted into W+); or use --seed/--latent.",
                                                    show_default=False)] = None,
    sound: SoundOpt = None,
    gain: GainOpt = None,
    text: TextOpt = None,
    layers: Annotated[Optional[str], typer.Option("--layers", help="Which code each W+ layer comes from, e.g. "
                                                  "'1-9:sound,10-18:text' (default: the paper's split scaled to the "
                                                  "generator; unnamed layers keep the source).")] = None,
    interpolate: Annotated[int, typer.Option("--interpolate", help="Also render N frames from the sound- to the "
                                             f"text-guided code (0: none; at most {MAX_INTERPOLATE}).")] = 0,
    seed: SeedSrcOpt = None,
    latent: LatentOpt = None,
    free: FreeOpt = False,
    generator: GeneratorOpt = "ffhq-1024",
    audio_encoder: EncoderOpt = "authors-resnet18",
    clip: ClipOpt = "clip-vit-b-32",
    identity: IdentityOpt = "ir-se50",
    preset: PresetOpt = None,
    steps: StepsOpt = "auto",
    lambda_sim: LambdaSimOpt = None,
    lambda_id: LambdaIdOpt = None,
    mask: MaskOpt = "adaptive",
    lr: LrOpt = 0.1,
    truncation: TruncOpt = 0.7,
    invert_method: InvMethodOpt = "auto",
    invert_steps: InvStepsOpt = None,
    align: AlignOpt = None,
    lpips: LpipsOpt = "vgg16-imagenet",
    encoder: E4eOpt = "e4e-ffhq",
    device: DeviceOpt = "auto",
    out: OutOpt = Path("out/mix"),
    json_out: JsonOpt = False,
) -> None:
    """Mix a sound-guided and a text-guided edit by StyleGAN layer range.

    Writes source.png, sound.png, text.png, mixed.png, comparison.png, w_plus.pt, report.json
    (and interpolation.gif with --interpolate) into --out.

    Examples:

      soundedit mix --sound giggle.wav --text "blue background"

      soundedit mix --seed 5 --sound rain.wav --text "sunset" --layers 1-7:sound,8-14:text -g landscape-256
    """
    check_folder(out, "--out", writable=True)  # before any model is loaded or step run
    from soundedit.runtime import progress, resolve_device

    _check_settings(mask, lr, truncation, lambda_sim, lambda_id, preset, steps)
    if not sound or not text:
        raise InputError("mix: expected both --sound FILE and --text PROMPT")
    from soundedit.editing.mixing import check_interpolate

    check_interpolate(interpolate)
    gains, source, described, _ = _common_setup(sound, gain, text, image, seed, latent, free)
    if latent is not None:  # an (N, L, D) file's count is known before the generator loads
        from soundedit.editing.editor import ONE_CODE_FOR_A_MIX
        from soundedit.editing.sources import check_one_code

        check_one_code(latent, "--latent", expected=ONE_CODE_FOR_A_MIX)
    _check_result_folder(out, latent, mix=True)
    if layers:
        from soundedit.editing.mixing import check_layers_syntax

        check_layers_syntax(layers)  # ranges are checked against n_latent once the generator is loaded
    invert_options = _inversion_options(image, generator, align, invert_method, invert_steps, lpips, encoder)
    dev = resolve_device(device)
    n_steps, note = _steps(steps, dev)
    editor = _load_editor(generator, audio_encoder, clip, identity, dev, note, preset=preset, lambda_id=lambda_id,
                          free=free)
    inversion, photo_source = _invert_photo(editor, image, invert_options, out)
    source = inversion.w_plus if inversion is not None else source
    logger.info("mixing sound- and text-guided edits of %s (%d steps)", described, n_steps)
    with progress("editing (sound + text)", total=n_steps) as bar:
        try:
            result = editor.mix(audio=[str(s) for s in sound], gains_db=gains, text=text, source=source, free=free,
                                layers=layers, interpolate=interpolate, callback=_progress_callback(bar, n_steps),
                                steps=n_steps, lr=lr, lambda_sim=lambda_sim, lambda_id=lambda_id, preset=preset,
                                layer_mask=mask, truncation=truncation)
        except KeyboardInterrupt:
            interrupted("mix", out, inversion)
    if inversion is not None:
        result.edits.meta["source"] = [photo_source, photo_source]  # both edits start from the photo's code
    paths = save_outputs(result, out, keep=_entries_holding(out, latent))
    report = {**result.report(), "outputs": {k: str(v) for k, v in paths.items()}}
    if json_out:
        emit_json(report)
    else:
        m = report["mixed_metrics"]
        stdout.print(f"mixed image → {paths['mixed']}: cos to sound {m['sound_cosine']:.4f}, "
                     f"cos to text {m['text_cosine']:.4f} (layers {','.join(report['layers'])})")
