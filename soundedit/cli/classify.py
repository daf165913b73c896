"""``soundedit classify`` and ``soundedit eval``: zero-shot classification and the paper's evaluations."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from soundedit.cli._common import (DeviceOpt, JsonOpt, SeedOpt, check_weights, embedding_cache, emit_json, interrupted,
                                   path_arg, stderr, stdout)
from soundedit.cli.main import app
from soundedit.config import MAX_STEPS
from soundedit.errors import MAX_EVAL_SEED, check_int, check_number

# -- shared options -------------------------------------------------------------------------------

EncoderOpt = Annotated[list[str], typer.Option(
    "--encoder", "-e", help="Audio encoder: weights.lock name or checkpoint (authors' .pth or ours). Repeat to compare.")]
ClipOpt = Annotated[str, typer.Option("--clip", help="CLIP weights: weights.lock name or OpenAI-layout file.")]
FoldsOpt = Annotated[str | None, typer.Option(
    "--folds", help="Only these official folds, e.g. '1' or '1,2' (default: all).", show_default=False)]
LimitOpt = Annotated[int, typer.Option("--limit", min=0, help="At most N clips, spread over classes (0: all).")]
TemplateOpt = Annotated[list[str], typer.Option(
    "--template", help="Prompt template with {label}; repeat to ensemble (default: 'the sound of {label}').")]
EnsembleOpt = Annotated[bool, typer.Option("--ensemble", help="Average over the built-in prompt templates.")]
SkipMissingOpt = Annotated[bool, typer.Option(
    "--skip-missing", help="Evaluate present files even when the metadata lists absent ones.")]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Clips per forward pass.")]
CacheOpt = Annotated[Path | None, typer.Option(
    "--cache-dir", help="Embedding cache folder (default: $SOUNDEDIT_HOME/cache/embeddings).")]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the embedding cache.")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", parser=path_arg,
                                       help="Folder for the JSON/Markdown report and PNG plots.")]
RootOpt = Annotated[list[Path], typer.Option(
    "--root", help="Dataset folder in its original layout (ESC-50, UrbanSound8K or class sub-folders). Repeatable.")]
DatasetOpt = Annotated[list[str], typer.Option(
    "--dataset", help="Expected layout of each --root: esc50 | urbansound8k | folder (default: detected).")]

DEFAULT_ENCODER = "authors-resnet18"
DEFAULT_CLIP = "clip-vit-b-32"
DATASET_ALIASES = {"esc50": "esc50", "esc-50": "esc50", "us8k": "urbansound8k", "urbansound8k": "urbansound8k",
                   "urbansound": "urbansound8k", "folder": "folder", "auto": "auto"}


def _parse_folds(text: str | None) -> list[int] | None:
    """``--folds`` as sorted fold numbers; ``None`` (not given): all folds.

    A given value is taken at its word: ``''`` is not "all folds", ``'1,'`` not "fold 1" and ``'1,1'`` not
    "fold 1" (a typo for '1,2'?): each is refused rather than guessed at.
    """
    from soundedit.errors import InputError

    if text is None:
        return None
    expected = "--folds: expected fold numbers like '1' or '1,2,3'"
    items = [x.strip() for x in text.split(",")]
    if not all(items):  # '' itself, or '1,' / ',2' / '1,,2'
        raise InputError(f"{expected}, got {text!r}" + (" (an empty item)" if text.strip() else ""))
    # int() would take '1_0' (10) and ' -1', and fail on 5000 digits
    if not all(x.isascii() and x.isdigit() and len(x) <= 9 and int(x) > 0 for x in items):
        raise InputError(f"{expected}, got {text!r}")
    folds = [int(x) for x in items]
    twice = sorted({f for f in folds if folds.count(f) > 1})
    if twice:
        raise InputError(f"{expected}, each once, got {text!r} ({', '.join(map(str, twice))} more than once)")
    return sorted(folds)


def _templates(templates: list[str], ensemble: bool) -> list[str]:
    from soundedit.evaluation.zeroshot import DEFAULT_TEMPLATES, ENSEMBLE_TEMPLATES, check_templates

    if ensemble and templates:
        from soundedit.errors import InputError

        raise InputError("--ensemble and --template: give one or the other")
    return check_templates(templates or (ENSEMBLE_TEMPLATES if ensemble else DEFAULT_TEMPLATES))


def _load_encoders(names: list[str], device):
    from soundedit.errors import InputError
    from soundedit.evaluation.runs import NamedEncoder
    from soundedit.models import load_audio_encoder

    if len(set(names)) != len(names):
        raise InputError(f"--encoder: each encoder once, got {names}")
    return [NamedEncoder(name, load_audio_encoder(name, device=device).eval()) for name in names]


def _load_clip(name: str, encoders, device):
    from soundedit.errors import InputError
    from soundedit.models import load_clip_space

    space = load_clip_space(name, device=device)
    for enc in encoders:
        if enc.encoder.embed_dim != space.embed_dim:
            raise InputError(f"--encoder {enc.name}: embeds into {enc.encoder.embed_dim} dimensions but the CLIP "
                             f"model {name} has embed_dim {space.embed_dim}")
    return space


def _load_datasets(roots: list[Path], datasets: list[str], *, folds, limit, skip_missing):
    from soundedit.errors import InputError
    from soundedit.evaluation.datasets import load_dataset
    from soundedit.evaluation.runs import require_complete

    if not roots:
        raise InputError("--root: expected at least one dataset folder")
    if datasets and len(datasets) != len(roots):
        raise InputError(f"--dataset: give one per --root ({len(roots)}), got {len(datasets)}")
    out = []
    for i, root in enumerate(roots):
        kind = datasets[i].lower() if datasets else "auto"
        if kind not in DATASET_ALIASES:
            raise InputError(f"--dataset: expected esc50, urbansound8k or folder, got {datasets[i]!r}")
        ds = load_dataset(root, layout="auto", folds=folds, limit=limit or None, what="--root", takes_labels=False)
        if DATASET_ALIASES[kind] not in ("auto", ds.name):
            raise InputError(f"--root {root}: --dataset says {DATASET_ALIASES[kind]} but the folder has the "
                             f"{ds.name} layout")
        require_complete(ds, skip_missing=skip_missing)
        out.append(ds)
    return out


# -- soundedit classify -----------------------------------------------------------------------------


@app.command()
def classify(
    inputs: Annotated[list[str], typer.Argument(
        help="A dataset folder (ESC-50/UrbanSound8K layout, class sub-folders, or any audio folder with "
             "--labels), or audio files; '-' reads paths from stdin.", show_default=False)],
    encoder: Annotated[str, typer.Option("--encoder", "-e", help="Audio encoder: weights.lock name or checkpoint.")]
    = DEFAULT_ENCODER,
    clip: ClipOpt = DEFAULT_CLIP,
    labels: Annotated[str | None, typer.Option("--labels", help="Comma-separated class names, e.g. 'dog,rain,siren'.",
                                               show_default=False)] = None,
    labels_file: Annotated[Path | None, typer.Option("--labels-file", help="Class names, one per line.")] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Labels shown per clip.")] = 5,
    folds: FoldsOpt = None,
    limit: LimitOpt = 0,
    template: TemplateOpt = [],  # noqa: B006 (typer reads the default)
    ensemble: EnsembleOpt = False,
    skip_missing: SkipMissingOpt = False,
    json_out: JsonOpt = False,
    tsv: Annotated[bool, typer.Option("--tsv", help="Tab-separated rows on stdout (file, label, fold, top-k, status).")]
    = False,
    batch_size: BatchOpt = 16,
    cache_dir: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    device: DeviceOpt = "auto",
) -> None:
    """Classify every clip zero-shot against class names in CLIP space.

    ESC-50 (meta/esc50.csv + audio/) and UrbanSound8K (metadata/UrbanSound8K.csv +
    audio/foldN/) folders are recognised and their labels used, and accuracy is
    reported against them; any other folder takes its classes from --labels,
    --labels-file or its sub-folder names.

    Examples:

      soundedit classify esc50/ --folds 1

      soundedit classify clips/ --labels "dog,rain,siren" --tsv
    """
    import torch

    from soundedit.errors import InputError
    from soundedit.evaluation.datasets import dataset_from_files, load_dataset, read_labels_file
    from soundedit.evaluation.runs import classify_embeddings, embed_dataset, require_complete
    from soundedit.evaluation.zeroshot import class_embeddings
    from soundedit.runtime import resolve_device

    if json_out and tsv:
        raise InputError("--json and --tsv: choose one output format")
    if labels is not None and labels_file is not None:
        raise InputError("--labels and --labels-file: give one or the other")
    names = [x for x in labels.split(",") if x.strip()] if labels is not None else []
    if labels is not None and not names:  # given but empty: not the same as no labels (a dataset's own)
        raise InputError(f"--labels: expected comma-separated class names (e.g. 'dog,rain,siren'), got {labels!r}")
    if labels_file is not None:
        names = read_labels_file(labels_file)
        if not names:
            raise InputError(f"--labels-file: expected class names, one per line, got none in {str(labels_file)!r}")
    templates = _templates(template, ensemble)
    fold_list = _parse_folds(folds)
    absent = [x for x in inputs if x != "-" and not Path(x).exists()]
    if absent:
        raise InputError(f"INPUTS: {absent[0]!r} does not exist (expected a dataset folder, audio files or -)")
    if len(inputs) == 1 and inputs[0] != "-" and Path(inputs[0]).is_dir():
        ds = load_dataset(inputs[0], labels=names or None, folds=fold_list, limit=limit or None)
        require_complete(ds, skip_missing=skip_missing)
    else:
        from soundedit.cli._common import expand_inputs
        from soundedit.evaluation.datasets import AUDIO_SUFFIXES, subsample

        if not names:
            raise InputError("--labels: classifying loose files needs class names (--labels or --labels-file)")
        if fold_list:
            raise InputError("--folds: only applies to an ESC-50 or UrbanSound8K folder")
        ds = dataset_from_files(expand_inputs(inputs, what="INPUTS", suffixes=AUDIO_SUFFIXES), names)
        if limit:
            ds.clips = subsample(ds.clips, limit)
    check_weights(("--encoder", encoder), ("--clip", clip))
    dev = resolve_device(device)
    encoders = _load_encoders([encoder], dev)
    space = _load_clip(clip, encoders, dev)
    with torch.no_grad():
        text = class_embeddings(space, ds.classes, templates).numpy()
    emb = embed_dataset(ds, encoders[0], cache_dir=embedding_cache(cache_dir, no_cache), batch_size=batch_size, device=dev)
    result = classify_embeddings(emb, text, space.logit_scale, top_k=top_k)
    result.update(encoder=encoder, clip=clip, templates=templates)
    if not emb.clips and emb.failures:
        _print_failures(result)
        raise InputError(f"INPUTS: none of the {len(emb.failures)} clips could be decoded")
    if json_out:
        emit_json(result)
    elif tsv:
        _print_tsv(result)
    else:
        _print_table(result)


def _print_tsv(result: dict) -> None:
    import sys

    k = result["top_k"]
    head = ["file", "label", "fold"] + [f"{c}{i}" for i in range(1, k + 1) for c in ("pred", "score")] + ["status"]
    lines = ["\t".join(head)]
    for item in result["items"]:
        top = [x for t in item["top"] for x in (t["label"], f"{t['score']:.4f}")]
        top += [""] * (2 * k - len(top))
        status = "ok" if "correct" not in item else ("correct" if item["correct"] else "wrong")
        lines.append("\t".join([item["file"], item["label"] or "", "" if item["fold"] is None else str(item["fold"]),
                                *top, status]))
    for fail in result["failures"]:
        reason = " ".join(fail["reason"].split())
        lines.append("\t".join([fail["file"], "", ""] + [""] * (2 * k) + [f"error: {reason}"]))
    sys.stdout.write("\n".join(lines) + "\n")


def _print_failures(result: dict) -> None:
    from rich.markup import escape

    for fail in result["failures"]:
        stderr.print(f"[yellow]could not decode[/yellow] {escape(fail['file'])}: {escape(fail['reason'])}",
                     highlight=False)


def _print_table(result: dict) -> None:
    from rich.markup import escape
    from rich.table import Table

    labelled = "accuracy" in result["summary"]
    table = Table(title=f"zero-shot: {result['encoder']} + {result['clip']}", title_justify="left")
    table.add_column("file", overflow="fold")
    if labelled:
        table.add_column("true")
    table.add_column(f"top-{result['top_k']} (probability)")
    if labelled:
        table.add_column("", justify="center")
    for item in result["items"]:
        top = ", ".join(f"{escape(t['label'])} {t['score']:.2f}" for t in item["top"])
        row = [escape(item["file"])]
        if labelled:
            row.append(escape(item["label"] or "?"))
        row.append(top)
        if labelled:
            row.append("[green]✓[/green]" if item.get("correct") else "[red]✗[/red]")
        table.add_row(*row)
    stdout.print(table)
    _print_summary(result)


def _print_summary(result: dict) -> None:
    from rich.markup import escape
    from rich.table import Table

    s = result["summary"]
    stdout.print(f"classified {s['classified']} clips; {s['failed']} could not be decoded"
                 + (f"; {s['missing']} listed in the metadata are missing" if s["missing"] else ""))
    for fail in result["failures"]:
        stdout.print(f"  [yellow]failed[/yellow] {escape(fail['file'])}: {escape(fail['reason'])}", highlight=False)
    if s.get("missing_summary"):
        stdout.print(f"  [yellow]missing[/yellow]: {escape(s['missing_summary'])}", highlight=False)
    if "accuracy" not in s:
        return
    stdout.print(f"[bold]accuracy[/bold] top-1 {100 * s['accuracy']:.1f}%  top-5 {100 * s['top5']:.1f}% "
                 f"over {s['labelled']} labelled clips")
    if s["folds"]:
        folds = Table(title="per fold", title_justify="left")
        for col in ("fold", "n", "top-1 %", "top-5 %"):
            folds.add_column(col, justify="right")
        for f, v in s["folds"].items():
            folds.add_row(f, str(v["n"]), f"{100 * v['top1']:.1f}", f"{100 * v['top5']:.1f}")
        stdout.print(folds)
    per_class = Table(title="per class (top-1)", title_justify="left")
    per_class.add_column("class")
    per_class.add_column("accuracy %", justify="right")
    for name, acc in sorted(((k, v) for k, v in s["per_class"].items() if v is not None), key=lambda kv: -kv[1]):
        per_class.add_row(escape(name), f"{100 * acc:.1f}")
    stdout.print(per_class)


# -- soundedit eval ---------------------------------------------------------------------------------

eval_app = typer.Typer(
    name="eval",
    help="Run the paper's evaluations and write JSON + Markdown (Table 1 format) + PNG plots.\n\n"
         "Example: soundedit eval zeroshot --dataset esc50 --root ESC-50-master/ --encoder authors-resnet18 --out out/",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(eval_app, name="eval")


@eval_app.command("zeroshot")
def eval_zeroshot(
    root: RootOpt,
    dataset: DatasetOpt = [],  # noqa: B006
    encoder: EncoderOpt = [DEFAULT_ENCODER],  # noqa: B006
    clip: ClipOpt = DEFAULT_CLIP,
    out: OutOpt = Path("out/eval"),
    folds: FoldsOpt = None,
    limit: LimitOpt = 0,
    template: TemplateOpt = [],  # noqa: B006
    ensemble: EnsembleOpt = False,
    skip_missing: SkipMissingOpt = False,
    json_out: JsonOpt = False,
    batch_size: BatchOpt = 16,
    cache_dir: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    device: DeviceOpt = "auto",
) -> None:
    """Zero-shot protocol: top-1/top-5 per official fold (ESC-50: 5, UrbanSound8K: 10), mean ± std.

    Example: soundedit eval zeroshot --dataset esc50 --root ESC-50-master/ -e authors-resnet18 -e ours.safetensors
    """
    from soundedit.evaluation.runs import run_zero_shot

    templates = _templates(template, ensemble)
    _check_out(out, ["zeroshot"])
    with _interruptible("eval zeroshot", out):
        datasets, dev, encoders, settings = _eval_inputs(root, dataset, encoder, folds=folds, limit=limit,
                                                         skip_missing=skip_missing, device=device, clip=clip)
        space = _load_clip(clip, encoders, dev)
        report = run_zero_shot(datasets, encoders, space, templates=templates,
                               cache_dir=embedding_cache(cache_dir, no_cache), batch_size=batch_size, device=dev,
                               out_dir=out, settings=settings)
    _finish(report, json_out)


@eval_app.command("probe")
def eval_probe(
    root: RootOpt,
    dataset: DatasetOpt = [],  # noqa: B006
    encoder: EncoderOpt = [DEFAULT_ENCODER],  # noqa: B006
    out: OutOpt = Path("out/eval"),
    folds: FoldsOpt = None,
    limit: LimitOpt = 0,
    c_values: Annotated[str, typer.Option("--C", help="Comma-separated grid of C for the inner CV.")]
    = "0.001,0.01,0.1,1,10,100",
    skip_missing: SkipMissingOpt = False,
    json_out: JsonOpt = False,
    batch_size: BatchOpt = 16,
    cache_dir: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> None:
    """Linear probe: logistic regression on frozen embeddings, official folds as CV, C chosen on training folds.

    Example: soundedit eval probe --dataset us8k --root UrbanSound8K/ --encoder authors-resnet18 --out out/
    """
    check_int(seed, "--seed", low=0, high=MAX_EVAL_SEED, hint=" (scikit-learn takes 32-bit seeds)")
    from soundedit.errors import InputError
    from soundedit.evaluation.runs import run_probe

    try:
        Cs = [float(x) for x in c_values.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"--C: expected comma-separated numbers, got {c_values!r}") from None
    if not Cs:
        raise InputError(f"--C: expected comma-separated positive numbers, got {c_values!r}")
    for c in Cs:  # nan passes a plain "c <= 0" and would only fail in scikit-learn, after the embedding
        check_number(c, f"--C {c_values!r}", low=0, low_open=True)
    _check_out(out, ["probe"])
    with _interruptible("eval probe", out):
        datasets, dev, encoders, settings = _eval_inputs(root, dataset, encoder, folds=folds, limit=limit,
                                                         skip_missing=skip_missing, device=device)
        report = run_probe(datasets, encoders, Cs=Cs, cache_dir=embedding_cache(cache_dir, no_cache),
                           batch_size=batch_size, device=dev, out_dir=out, seed=seed, settings=settings)
    _finish(report, json_out)


@eval_app.command("table1")
def eval_table1(
    root: RootOpt,
    dataset: DatasetOpt = [],  # noqa: B006
    encoder: EncoderOpt = [DEFAULT_ENCODER],  # noqa: B006
    clip: ClipOpt = DEFAULT_CLIP,
    out: OutOpt = Path("out/eval"),
    folds: FoldsOpt = None,
    limit: LimitOpt = 0,
    template: TemplateOpt = [],  # noqa: B006
    ensemble: EnsembleOpt = False,
    skip_missing: SkipMissingOpt = False,
    json_out: JsonOpt = False,
    batch_size: BatchOpt = 16,
    cache_dir: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> None:
    """The paper's Table 1 in one go: linear probe + zero-shot for every encoder and dataset.

    Embeddings are computed once (cache) and shared by both protocols.

    Example: soundedit eval table1 --root ESC-50-master/ --root UrbanSound8K/ -e authors-resnet18 -e ours.safetensors
    """
    check_int(seed, "--seed", low=0, high=MAX_EVAL_SEED, hint=" (scikit-learn takes 32-bit seeds)")
    from soundedit.evaluation.runs import run_probe, run_zero_shot, write_reports

    templates = _templates(template, ensemble)
    _check_out(out, ["zeroshot", "probe", "table1"])
    with _interruptible("eval table1", out):
        datasets, dev, encoders, settings = _eval_inputs(root, dataset, encoder, folds=folds, limit=limit,
                                                         skip_missing=skip_missing, device=device, clip=clip)
        space = _load_clip(clip, encoders, dev)
        cache = embedding_cache(cache_dir, no_cache)
        zs = run_zero_shot(datasets, encoders, space, templates=templates, cache_dir=cache, batch_size=batch_size,
                           device=dev, settings=settings)
        pr = run_probe(datasets, encoders, cache_dir=cache, batch_size=batch_size, device=dev, seed=seed,
                       settings=settings)
        files = write_reports(out, zeroshot=zs, probe=pr, table1=True)  # the three reports: one set
    merged = {"table1": _merge_rows(zs, pr), "files": {k: str(v) for k, v in files["table1"].items()},
              "plots": {**zs["plots"], **pr["plots"]}}
    _finish(merged if not json_out else {"table1": merged["table1"], "zeroshot": zs, "probe": pr}, json_out)


def _check_out(out: Path, parts: list[str], *subfolders: str) -> None:
    """``--out`` (and the sub-folders written there) as folders soundedit can write to, with no folder of
    the user's where these report parts' files go, before any work."""
    from soundedit.evaluation.reports import check_out

    check_out(out, parts)
    for sub in subfolders:
        if (out / sub).exists() and not (out / sub).is_dir():
            from soundedit.errors import InputError

            raise InputError(f"--out: expected {str(out / sub)!r} to be a folder (the command writes its {sub} "
                             f"there), got a file")


def _eval_inputs(roots: list[Path], datasets: list[str], encoders: list[str], *, folds: str | None, limit: int,
                 skip_missing: bool, device: str, clip: str | None = None):
    """What every ``eval`` protocol starts from: ``(datasets, device, encoders, settings for the report)``.
    The weights options (every ``--encoder``, and ``--clip`` where the protocol uses it) are checked once
    the datasets are read, before any model loads."""
    from soundedit.runtime import resolve_device

    fold_list = _parse_folds(folds)
    loaded = _load_datasets(roots, datasets, folds=fold_list, limit=limit, skip_missing=skip_missing)
    check_weights(*(("--encoder", e) for e in encoders), ("--clip", clip))
    dev = resolve_device(device)
    settings = {"folds": fold_list, "limit": limit or None, "skip_missing": skip_missing}
    return loaded, dev, _load_encoders(encoders, dev), settings


def _merge_rows(*reports_: dict) -> list[dict]:
    merged: dict[str, dict] = {}
    for rep in reports_:
        for row in rep["table1"]:
            merged.setdefault(row["encoder"], {}).update(row)
    return list(merged.values())


@contextlib.contextmanager
def _interruptible(command: str, out: Path) -> Iterator[None]:
    """Ctrl-C in the block: one line saying so (as under ``edit``), exit 130. Each command's reports are
    one set, moved in only when complete: nothing was written to ``out``, unless the Ctrl-C came while
    the complete set was being moved in (held off until it was)."""
    from rich.markup import escape

    from soundedit.fileio import SavedThenInterrupted

    try:
        yield
    except SavedThenInterrupted:
        stderr.print(f"[red]interrupted[/red]: the {command} had finished; its reports are in {escape(str(out))}")
        raise typer.Exit(130) from None
    except KeyboardInterrupt:
        interrupted(command, out)


def _finish(report: dict, json_out: bool) -> None:
    from rich.markup import escape

    from soundedit.evaluation.reports import table1_markdown

    if json_out:
        emit_json(report)
        return
    stdout.print(table1_markdown(report["table1"]), markup=False, highlight=False)
    for name, path in report.get("files", {}).items():
        stdout.print(f"{name}: {escape(path)}", highlight=False)
    stdout.print(f"plots: {len(report.get('plots', {}))} PNG files", highlight=False)


@eval_app.command("edits")
def eval_edits(
    jobs: Annotated[Path, typer.Option("--jobs", help="CSV with columns source (seed or file), sound, label "
                                                      "[, text]; paths relative to the CSV.")],
    generator: Annotated[str, typer.Option("--generator", "-g", help="StyleGAN2: weights.lock name or file.")]
    = "landscape-256",
    encoder: Annotated[str, typer.Option("--encoder", "-e", help="Audio encoder: weights.lock name or checkpoint.")]
    = DEFAULT_ENCODER,
    clip: ClipOpt = DEFAULT_CLIP,
    identity: Annotated[str, typer.Option("--identity", help="IR-SE50 name or file: identity similarity (faces).")]
    = "",
    semantic_audio: Annotated[Path | None, typer.Option(
        "--semantic-audio", help="Labelled sounds (class sub-folders, ESC-50 or UrbanSound8K layout) to train the "
                                 "semantic classifier; default: the jobs' own sounds.")] = None,
    steps: Annotated[int | None, typer.Option("--steps", help=f"Optimisation steps, 1 to {MAX_STEPS} (default: the "
                                                               "config's).")]
    = None,
    preset: Annotated[str | None, typer.Option("--preset", help="faces | scenes | art (default: from the generator).")]
    = None,
    no_text: Annotated[bool, typer.Option("--no-text", help="Skip the paired text-guided edits (no w_t statistics).")]
    = False,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Edits optimised together.")] = 4,
    out: OutOpt = Path("out/eval"),
    json_out: JsonOpt = False,
    cache_dir: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> None:
    """Manipulation metrics: run sound- and text-guided edits of every job, then score them.

    Writes edits.json, edits.md, direction/CLIP-cosine histograms, the t-SNE of
    (w_a - w_s) vs (w_t - w_s) and one source|sound|text image row per job.

    Example: soundedit eval edits --jobs jobs.csv -g ffhq-1024 --identity ir-se50 --semantic-audio labels/ --out out/
    """
    check_int(seed, "--seed", low=0, high=MAX_EVAL_SEED, hint=" (scikit-learn takes 32-bit seeds)")
    if steps is not None:  # as under `edit`: 0 steps would score the unedited source as an edit
        check_int(steps, "--steps", low=1, high=MAX_STEPS)
    from rich.markup import escape

    from soundedit.editing import Editor
    from soundedit.evaluation.datasets import load_dataset
    from soundedit.evaluation.runs import (NamedEncoder, check_job_latents, read_jobs, run_edits,
                                           semantic_classifier_from_sounds)
    from soundedit.runtime import resolve_device, seed_everything

    _check_out(out, ["edits"], "images")
    with _interruptible("eval edits", out):
        job_list = read_jobs(jobs)
        if semantic_audio is not None:  # read before any model loads
            ds = load_dataset(semantic_audio, what="--semantic-audio", takes_labels=False)
            if not ds.labelled:
                from soundedit.errors import InputError

                raise InputError(f"--semantic-audio {semantic_audio}: expected labelled sounds (class sub-folders or "
                                 f"a dataset layout)")
            sounds, labels = [c.path for c in ds.clips], [c.label for c in ds.clips]
        else:
            sounds, labels = [j["sound"] for j in job_list], [j["label"] for j in job_list]
        check_weights(("--generator", generator), ("--encoder", encoder), ("--clip", clip),
                      ("--identity", identity or None))
        seed_everything(seed)
        dev = resolve_device(device)
        editor = Editor.from_pretrained(generator=generator, audio_encoder=encoder, clip=clip,
                                        identity=identity or None, device=str(dev))
        check_job_latents(job_list, editor.generator, jobs)
        named = NamedEncoder(encoder, editor.clip_space.audio_encoder)
        cache = embedding_cache(cache_dir, no_cache)
        semantic = semantic_classifier_from_sounds(named, sounds, labels, cache_dir=cache, device=dev, seed=seed)
        overrides = {k: v for k, v in {"steps": steps, "preset": preset}.items() if v is not None}
        report = run_edits(editor, job_list, semantic=semantic,
                           identity_net=editor.identity_net() if identity else None, text_edits=not no_text,
                           batch_size=batch_size, seed=seed, out_dir=out,
                           settings={"jobs": str(jobs), "generator": generator, "encoder": encoder, "clip": clip,
                                     "identity": identity or None, "semantic_training": str(semantic_audio or "jobs"),
                                     "seed": seed},
                           **overrides)
    if json_out:  # the report as written to edits.json
        emit_json(report)
        return
    stdout.print((Path(report["files"]["markdown"])).read_text(encoding="utf-8"), markup=False, highlight=False)
    for name, path in {**report["plots"], **report["files"]}.items():
        stdout.print(f"{name}: {escape(path)}", highlight=False)
