"""``soundedit train`` (alignment training, ``train prepare ...`` manifests) and ``soundedit embed``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from soundedit.cli._common import DeviceOpt, JsonOpt, check_weights, emit_json, path_arg, stderr, stdout
from soundedit.cli.main import app
from soundedit.config import MAX_LR, OPTIMIZERS

train_app = typer.Typer(
    help="Train an audio encoder into CLIP space (contrastive alignment), or build manifests.\n\n"
    "Examples:\n\n"
    "  soundedit train --manifest train.csv --val val.csv --out runs/x\n\n"
    "  soundedit train --manifest train.csv --val val.csv --out runs/x --resume\n\n"
    "  soundedit train prepare esc50 ESC-50-master/ --out esc50.csv\n\n"
    "  torchrun --nproc_per_node 4 --no-python soundedit train --manifest train.csv --out runs/x",
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
prepare_app = typer.Typer(help="Build a training manifest (CSV/JSONL) from a dataset layout on disk.\n\n"
                          "Example: soundedit train prepare esc50 ESC-50-master/ --out esc50.csv --val-folds 5",
                          no_args_is_help=True)
train_app.add_typer(prepare_app, name="prepare")
app.add_typer(train_app, name="train")


@train_app.callback()
def train(
    ctx: typer.Context,
    manifest: Annotated[Path | None, typer.Option("--manifest", "-m", help="Training manifest (.csv or .jsonl).")] = None,
    val: Annotated[Path | None, typer.Option(
        "--val", help="Validation manifest (default: the manifest's split=val rows, if any).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", parser=path_arg,
                                              help="Run folder: checkpoints, metrics, logs.")] = None,
    config: Annotated[str, typer.Option("--config", help="Recipe: paper (ResNet50, SGD, batch 384, 50 epochs) | fast.")] = "paper",
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its resume.pt.")] = False,
    clip: Annotated[str, typer.Option("--clip", help="Frozen CLIP: weights.lock name or OpenAI-layout file.")] = "clip-vit-b-32",
    arch: Annotated[str | None, typer.Option("--arch", help="timm ResNet for the encoder (default: the recipe's).")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Override the recipe's epochs.")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", min=1, help="Global batch (all GPUs, all accumulation steps).")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help=f"Override the recipe's learning rate (> 0, at most {MAX_LR:g}).")] = None,
    optimizer: Annotated[str | None, typer.Option("--optimizer", help="sgd | adamw (default: the recipe's).")] = None,
    grad_accum: Annotated[int | None, typer.Option("--grad-accum", min=1, help="Micro-batches per optimizer step.")] = None,
    sample_rate: Annotated[int | None, typer.Option("--sample-rate", help="Audio rate of the log-mel (default 44100).")] = None,
    mel_cache: Annotated[Path | None, typer.Option(
        "--mel-cache", help="Folder for a memory-mapped log-mel cache (computed once, reused; default: none).")] = None,
    workers: Annotated[int, typer.Option("--workers", min=0, help="DataLoader worker processes.")] = 2,
    allow_missing: Annotated[bool, typer.Option(
        "--allow-missing", help="Skip missing/unreadable audio (counted and reported) instead of failing.")] = False,
    no_text_augment: Annotated[bool, typer.Option("--no-text-augment", help="Turn WordNet text augmentation off.")] = False,
    save_every: Annotated[int | None, typer.Option("--save-every", min=0, help="Also save resume state every N steps.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed, 0 to 2**63 - 1 (default: the recipe's, 0).")] = None,
    device: DeviceOpt = "auto",
    json_out: JsonOpt = False,
) -> None:
    """Train an audio encoder into CLIP space: L(a<->t) + L(a<->v) + L(a<->a^) against frozen CLIP.

    Example: soundedit train --manifest train.csv --val val.csv --out runs/x --config fast
    """
    if ctx.invoked_subcommand is not None:
        return
    import dataclasses

    from soundedit.config import TrainConfig
    from soundedit.errors import InputError, check_number, check_seed
    from soundedit.fileio import check_folder
    from soundedit.models import load_clip_space
    from soundedit.runtime import set_progress_enabled
    from soundedit.training import distributed
    from soundedit.training.loop import check_config, train_alignment
    from soundedit.training.manifest import check_audio, read_manifest, split_rows

    if manifest is None or out is None:
        raise InputError("soundedit train: expected --manifest and --out (see `soundedit train --help`), "
                         f"got manifest={manifest}, out={out}")
    check_folder(out, "--out", writable=True)
    try:
        cfg = TrainConfig.preset(config)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    enc = cfg.encoder
    if arch is not None:
        enc = dataclasses.replace(enc, arch=arch)
    if sample_rate is not None:
        enc = dataclasses.replace(enc, audio=dataclasses.replace(enc.audio, sample_rate=sample_rate))
    overrides = {k: v for k, v in dict(epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
                                       grad_accum=grad_accum, seed=seed, save_every_steps=save_every).items()
                 if v is not None}
    if no_text_augment:
        overrides["text_augment"] = False
    # the flags as typed first, then the whole recipe, all before the manifest's audio is probed
    if lr is not None:
        check_number(lr, "--lr", low=0, high=MAX_LR, low_open=True)
    if seed is not None:
        check_seed(seed)
    _check_encoder_flags(optimizer, sample_rate, arch)
    cfg = dataclasses.replace(cfg, encoder=enc, **overrides)
    check_config(cfg)

    rows = read_manifest(manifest)
    if val is not None:
        train_rows, val_rows = rows, read_manifest(val)
    elif any(r.split for r in rows):
        train_rows, val_rows = split_rows(rows, what=f"--manifest {manifest}")
    else:
        train_rows, val_rows = rows, []
    train_rows, train_report = check_audio(train_rows, allow_missing=allow_missing, what=f"--manifest {manifest}")
    if val_rows:
        val_rows, _ = check_audio(val_rows, allow_missing=allow_missing, what=f"--val {val or manifest}")
    check_weights(("--clip", clip))

    info, dev = distributed.init_from_env(device)
    if not info.is_main:
        set_progress_enabled(False)
    try:
        space = load_clip_space(clip, device=dev)
        result = train_alignment(cfg, train_rows, clip=space, out_dir=out, val_rows=val_rows or None, device=dev,
                                 resume=resume, cache_dir=mel_cache, num_workers=workers, manifest=manifest)
    except BaseException:
        distributed.shutdown(clean=False)
        raise
    distributed.shutdown()
    if not info.is_main:
        return
    last = result.history[-1] if result.history else {}
    summary = {"out": str(result.out_dir), "best": str(result.best) if result.best else None, "last": str(result.last),
               "epochs": result.epochs, "global_step": result.global_step, "skipped_files": train_report.bad,
               "final": last}
    if json_out:
        emit_json(summary)
        return
    from rich.table import Table

    table = Table(title=f"training run {result.out_dir}")
    for col in ("epoch", "train loss", "val loss", "val top-1"):
        table.add_column(col, justify="right")
    for rec in result.history:
        table.add_row(str(rec["epoch"]), f"{rec['train_loss']:.4f}",
                      f"{rec['val_loss']:.4f}" if "val_loss" in rec else "-",
                      f"{rec['val_top1']:.3f}" if "val_top1" in rec else "-")
    stdout.print(table)
    stdout.print(f"best: {summary['best']}\nlast: {summary['last']}")


# -- manifests --------------------------------------------------------------------------------------

ManifestOut = Annotated[Path, typer.Option("--out", "-o", parser=path_arg, help="Manifest to write (.csv or .jsonl).")]
AllowMissingOpt = Annotated[bool, typer.Option(
    "--allow-missing", help="Leave out clips that are not on disk (counted and reported) instead of failing.")]


def _parse_ints(text: str | None, what: str) -> list[int] | None:
    from soundedit.errors import InputError

    if text is None or not text.strip():
        return None
    try:
        return sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise InputError(f"{what}: expected numbers like '1' or '1,2', got {text!r}") from None


def _check_out(out: Path) -> None:
    """``--out`` as a manifest file path, checked before the dataset is scanned."""
    from soundedit.fileio import check_output_file

    check_output_file(out, "--out", "a manifest file path (.csv or .jsonl)")


def _write(rows, out: Path, allow_missing: bool, what: str, json_out: bool) -> None:
    from collections import Counter

    from soundedit.training.manifest import check_audio, write_manifest

    kept, report = check_audio(rows, allow_missing=allow_missing, what=what, probe=False)
    write_manifest(kept, out)
    splits = Counter(r.split or "-" for r in kept)
    summary = {"manifest": str(out), "rows": len(kept), "skipped_missing": len(report.missing),
               "labels": len({r.label for r in kept if r.label}), "splits": dict(splits)}
    if json_out:
        emit_json(summary)
    else:
        stdout.print(f"wrote {out}: {len(kept)} clips, {summary['labels']} labels, splits "
                     + ", ".join(f"{k} {v}" for k, v in sorted(splits.items()))
                     + (f"; {len(report.missing)} listed clip(s) not on disk were left out" if report.missing else ""))


@prepare_app.command("esc50")
def prepare_esc50(
    root: Annotated[Path, typer.Argument(help="ESC-50 folder (meta/esc50.csv + audio/).")],
    out: ManifestOut,
    folds: Annotated[str | None, typer.Option("--folds", help="Only these folds, e.g. '1,2,3,4,5'.")] = None,
    val_folds: Annotated[str, typer.Option("--val-folds", help="Folds marked split=val.")] = "5",
    allow_missing: AllowMissingOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """ESC-50 -> manifest (label = category). Example: soundedit train prepare esc50 ESC-50/ --out esc50.csv"""
    from soundedit.training import importers

    _check_out(out)
    rows = importers.esc50(root, folds=_parse_ints(folds, "--folds"), val_folds=_parse_ints(val_folds, "--val-folds") or [])
    _write(rows, out, allow_missing, f"ESC-50 {root}", json_out)


@prepare_app.command("urbansound8k")
def prepare_urbansound8k(
    root: Annotated[Path, typer.Argument(help="UrbanSound8K folder (metadata/UrbanSound8K.csv + audio/foldN/).")],
    out: ManifestOut,
    folds: Annotated[str | None, typer.Option("--folds", help="Only these folds, e.g. '1,2'.")] = None,
    val_folds: Annotated[str, typer.Option("--val-folds", help="Folds marked split=val.")] = "10",
    allow_missing: AllowMissingOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """UrbanSound8K -> manifest. Example: soundedit train prepare urbansound8k UrbanSound8K/ --out us8k.csv"""
    from soundedit.training import importers

    _check_out(out)
    rows = importers.urbansound8k(root, folds=_parse_ints(folds, "--folds"),
                                  val_folds=_parse_ints(val_folds, "--val-folds") or [])
    _write(rows, out, allow_missing, f"UrbanSound8K {root}", json_out)


@prepare_app.command("vggsound")
def prepare_vggsound(
    csv_path: Annotated[Path, typer.Argument(help="vggsound.csv (youtube id, start s, label, train/test).")],
    clips: Annotated[Path, typer.Argument(help="Folder of downloaded clips ({id}_{start:06d}.wav/.flac, ...).")],
    out: ManifestOut,
    frames: Annotated[Path | None, typer.Option("--frames", help="Folder of one frame per clip (same names, .jpg/.png).")] = None,
    allow_missing: AllowMissingOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """VGGSound -> manifest. Example: soundedit train prepare vggsound vggsound.csv clips/ --out vgg.csv --frames frames/"""
    from soundedit.training import importers

    _check_out(out)
    _write(importers.vggsound(csv_path, clips, frames_dir=frames), out, allow_missing, f"VGGSound {csv_path}", json_out)


@prepare_app.command("audioset")
def prepare_audioset(
    segments: Annotated[Path, typer.Argument(help="Segments CSV, e.g. balanced_train_segments.csv.")],
    ontology: Annotated[Path, typer.Argument(help="ontology.json naming the label ids.")],
    clips: Annotated[Path, typer.Argument(help="Folder of downloaded clips.")],
    out: ManifestOut,
    split: Annotated[str, typer.Option("--split", help="Value of the split column.")] = "train",
    frames: Annotated[Path | None, typer.Option("--frames", help="Folder of frames named like the clips.")] = None,
    allow_missing: AllowMissingOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """AudioSet -> manifest. Example: soundedit train prepare audioset balanced_train_segments.csv ontology.json clips/ --out as.csv"""
    from soundedit.training import importers

    _check_out(out)
    from soundedit.errors import InputError
    from soundedit.training.manifest import SPLITS

    if split not in SPLITS:  # `train` would refuse the manifest
        raise InputError(f"--split: expected one of {', '.join(SPLITS)}, got {split!r}")
    rows = importers.audioset(segments, ontology, clips, split=split, frames_dir=frames)
    _write(rows, out, allow_missing, f"AudioSet {segments}", json_out)


@prepare_app.command("folder")
def prepare_folder(
    root: Annotated[Path, typer.Argument(help="A folder with one sub-folder of audio files per class.")],
    out: ManifestOut,
    json_out: JsonOpt = False,
) -> None:
    """Class folders -> manifest (label = folder name). Example: soundedit train prepare folder sounds/ --out m.csv"""
    from soundedit.training import importers

    _check_out(out)
    _write(importers.folder(root), out, False, f"folder {root}", json_out)


# -- embed ------------------------------------------------------------------------------------------


@app.command()
def embed(
    sounds: Annotated[list[str] | None, typer.Argument(help="Audio files or folders; '-' reads paths from stdin.")] = None,
    text: Annotated[list[str] | None, typer.Option("--text", "-t", help="Text(s) to embed (repeat the option).")] = None,
    image: Annotated[list[Path] | None, typer.Option("--image", "-i", help="Image file(s) to embed (repeat).")] = None,
    encoder: Annotated[str, typer.Option("--encoder", "-e", help="Audio encoder: weights.lock name or checkpoint (authors' .pth or ours).")] = "authors-resnet18",
    clip: Annotated[str, typer.Option("--clip", help="CLIP weights: weights.lock name or OpenAI-layout file.")] = "clip-vit-b-32",
    template: Annotated[str, typer.Option("--template", help="Format string applied to each --text ('{}' = as given).")] = "{}",
    out: Annotated[Path | None, typer.Option("--out", "-o", parser=path_arg,
                                              help="Write embeddings (N, d) float32 here (.npy) + an index .json beside it.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Clips per forward pass.")] = 16,
    cache_dir: Annotated[Path | None, typer.Option(
        "--cache-dir", help="Audio embedding cache (default: $SOUNDEDIT_HOME/cache/embeddings).")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the embedding cache.")] = False,
    device: DeviceOpt = "auto",
    json_out: Annotated[bool, typer.Option("--json", help="JSON lines on stdout: {kind, source, embedding}.")] = False,
) -> None:
    """Embed sounds, texts or images into CLIP space (unit-norm rows, in the order given: audio, text, images).

    Examples: soundedit embed sounds/*.wav --out emb.npy ;  soundedit embed --text thunder --text rain --json
    """
    import json
    import sys

    import numpy as np
    import torch

    from soundedit.audio import AUDIO_EXTENSIONS
    from soundedit.cli._common import embedding_cache, expand_inputs
    from soundedit.errors import InputError
    from soundedit.fileio import atomic_open, check_output_file, write_json
    from soundedit.inversion.image import load_image, to_tensor
    from soundedit.models import load_clip_space
    from soundedit.runtime import progress, resolve_device
    from soundedit.text.templates import check_template, fill_template

    if out is None and not json_out:
        raise InputError("soundedit embed: expected --out FILE.npy or --json (where should the embeddings go?)")
    if out is not None and out.suffix != ".npy":
        raise InputError(f"--out: expected a .npy path, got {str(out)!r}")
    if out is not None:  # before any model loads: an unusable --out would otherwise fail after the embedding
        check_output_file(out, "--out", "a .npy file path")
    audio_paths = expand_inputs(sounds, what="SOUNDS", suffixes=tuple(AUDIO_EXTENSIONS)) if sounds else []
    texts, images = list(text or []), list(image or [])
    blank = [t for t in texts if not t.strip()]
    if blank:  # an empty prompt embeds to a meaningless vector that would sit in the output unnoticed
        raise InputError(f"--text: expected a non-empty text, got {blank[0]!r}")
    check_template(template, "--template", fields=("", "label"))
    prompts = [fill_template(template, t, "--template", fields=("", "label")) for t in texts]
    # decoded now, before any model loads: an unreadable or oversized image (a decompression bomb) is
    # refused up front, through the same loader as the editing commands
    frames = [load_image(p, what="--image") for p in images]
    if not (audio_paths or texts or images):
        raise InputError("soundedit embed: expected audio files, --text or --image, got nothing to embed")
    cache = embedding_cache(cache_dir, no_cache) if audio_paths else None
    check_weights(("--encoder", encoder if audio_paths else None), ("--clip", clip))
    dev = resolve_device(device)
    space = load_clip_space(clip, audio_encoder=encoder if audio_paths else None, device=dev)
    index: list[dict] = []
    chunks: list[torch.Tensor] = []
    if audio_paths:
        from soundedit.evaluation.embeddings import embed_files

        done = embed_files(space.audio_encoder, audio_paths, batch_size=batch_size, device=dev, cache_dir=cache)
        if done.failures:
            bad = "; ".join(f"{audio_paths[i]}: {why}" for i, why in list(done.failures.items())[:5])
            raise InputError(f"SOUNDS: {len(done.failures)} of {len(audio_paths)} file(s) could not be embedded ({bad})")
        chunks.append(torch.nn.functional.normalize(torch.from_numpy(done.embeddings).float(), dim=-1))
        index += [{"kind": "audio", "source": str(p)} for p in audio_paths]
    with torch.no_grad(), progress("embedding", total=len(texts) + len(images)) as bar:
        for s in range(0, len(texts), batch_size):
            batch = texts[s:s + batch_size]
            # the prompts are complete already: "{}" keeps ClipSpace from wrapping them again
            chunks.append(space.embed_text(prompts[s:s + batch_size], templates=("{}",)).cpu())
            index += [{"kind": "text", "source": t} for t in batch]
            bar.advance(len(batch))
        for p, frame in zip(images, frames):
            chunks.append(space.embed_image(to_tensor(frame).to(dev)).cpu())
            index.append({"kind": "image", "source": str(p)})
            bar.advance(1)
    emb = torch.cat(chunks).float().numpy()
    if out is not None:
        with atomic_open(out, "wb") as fh:
            np.save(fh, emb)
        write_json(out.with_suffix(".json"), {
            "embeddings": out.name, "shape": list(emb.shape), "embed_dim": int(emb.shape[1]), "normalised": True,
            "clip": clip, "encoder": encoder if audio_paths else None, "text_template": template,
            "rows": [{"row": i, **rec} for i, rec in enumerate(index)]})
        stderr.print(f"wrote {out} {emb.shape} and {out.with_suffix('.json')}")
    if json_out:
        for rec, vec in zip(index, emb):
            sys.stdout.write(json.dumps({**rec, "embedding": [round(float(x), 7) for x in vec]}) + "\n")
        sys.stdout.flush()


def _check_encoder_flags(optimizer: str | None, sample_rate: int | None, arch: str | None) -> None:
    """``--optimizer``, ``--sample-rate`` and ``--arch`` named as typed (the recipe's own check names
    its fields: optimizer, sample_rate, arch)."""
    from soundedit.audio.io import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
    from soundedit.errors import InputError

    if optimizer is not None and optimizer not in OPTIMIZERS:
        raise InputError(f"--optimizer: expected {' or '.join(OPTIMIZERS)}, got {optimizer!r}")
    if sample_rate is not None and not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise InputError(f"--sample-rate: expected {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz, got {sample_rate}")
    if arch is not None:
        import timm

        if not timm.is_model(arch):
            close = timm.list_models(f"*{arch.split('.')[0][:6]}*")[:5]
            raise InputError(f"--arch: expected a timm model name (e.g. resnet18, resnet50), got {arch!r}"
                             + (f"; similar: {', '.join(close)}" if close else ""))
