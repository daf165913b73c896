"""Evaluation runs: datasets x encoders -> numbers, JSON + Markdown reports and plots.

These functions glue the pieces (dataset layouts, cached embeddings, zero-shot
scoring, the linear probe, reports) into the protocols behind ``soundedit
classify`` and ``soundedit eval``.  Models are passed in already loaded, so the
same runs work from the CLI, from scripts and in tests with seeded tiny models.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from soundedit.errors import InputError, check_seed
from soundedit.evaluation import reports
from soundedit.evaluation.datasets import AudioDataset, Clip
from soundedit.evaluation.embeddings import embed_files, encoder_fingerprint
from soundedit.evaluation.metrics import topk_predictions
from soundedit.evaluation.zeroshot import (DEFAULT_TEMPLATES, class_embeddings, evaluate_scores, softmax,
                                           zero_shot_scores)

logger = logging.getLogger("soundedit")


@dataclass
class NamedEncoder:
    """An audio encoder with the name it is reported under and its cache fingerprint."""

    name: str
    encoder: object
    fingerprint: str = ""

    def __post_init__(self) -> None:
        if not self.fingerprint:
            self.fingerprint = encoder_fingerprint(self.encoder)

    def describe(self) -> dict:
        from soundedit.config import to_dict

        config = getattr(self.encoder, "config", None)
        return {"name": self.name, "fingerprint": self.fingerprint,
                "config": to_dict(config) if config is not None else None}


@dataclass
class DatasetEmbeddings:
    """Raw embeddings of a dataset's present clips, and the clips that failed to decode.

    Attributes:
        clips: the embedded clips, aligned with ``embeddings`` rows.
        embeddings: (M, D) float32 raw encoder outputs.
        failures: ``(clip, reason)`` for every clip that could not be embedded.
    """

    dataset: AudioDataset
    clips: list[Clip]
    embeddings: np.ndarray
    failures: list[tuple[Clip, str]] = field(default_factory=list)
    cache_hits: int = 0

    @property
    def targets(self) -> np.ndarray:
        return np.asarray([c.target for c in self.clips], dtype=np.int64)

    @property
    def folds(self) -> list[int | None]:
        return [c.fold for c in self.clips]


def require_complete(dataset: AudioDataset, *, skip_missing: bool = False) -> None:
    """Refuse a dataset with absent files unless told to skip them.

    A protocol over a partial dataset (e.g. a "5-fold mean" over one fold) would
    be a silently wrong number; the error says which folds are complete.

    Raises:
        InputError: files listed in the metadata are missing and ``skip_missing`` is False.
    """
    if not dataset.missing:
        return
    if not dataset.clips:  # --skip-missing would leave nothing to evaluate: say so, and what is there
        where = str(dataset.metadata.relative_to(dataset.root)) if dataset.metadata and dataset.root \
            else "the metadata"
        asked = dataset.selected_folds
        have = dataset.present_folds
        there = (f"files are present for {'fold' if len(have) == 1 else 'folds'} {','.join(map(str, have))} only" if have
                 else "no listed file is present at all")
        if asked:
            raise InputError(f"--folds {','.join(map(str, asked))}: no clips are left to evaluate: all "
                             f"{len(dataset.missing)} files listed for {'fold' if len(asked) == 1 else 'folds'} "
                             f"{','.join(map(str, asked))} in {where} are missing from {dataset.root} ({there})")
        raise InputError(f"{dataset.root}: no clips are left to evaluate: all {len(dataset.missing)} files listed in "
                         f"{where} are missing ({there})")
    if skip_missing:
        logger.warning("%s: %s; evaluating the %d present clips (--skip-missing)", dataset.root,
                       dataset.missing_summary(), len(dataset.clips))
        return
    absent = {c.fold for c in dataset.missing}
    complete = [f for f in dataset.folds if f not in absent]
    hint = f"pass --folds {','.join(map(str, complete))} to evaluate the complete folds, or " if complete else "pass "
    raise InputError(f"{dataset.root}: {dataset.missing_summary()}; {hint}--skip-missing to evaluate the present files")


def embed_dataset(dataset: AudioDataset, encoder: NamedEncoder, *, cache_dir: str | Path | None = None,
                  batch_size: int = 16, device=None) -> DatasetEmbeddings:
    """Embed every present clip of ``dataset`` (cached); failures are kept with their reasons."""
    got = embed_files(encoder.encoder, [c.path for c in dataset.clips], batch_size=batch_size, cache_dir=cache_dir,
                      encoder_id=encoder.fingerprint, device=device,
                      description=f"{encoder.name}: {dataset.name}")
    failures = [(dataset.clips[i], reason) for i, reason in sorted(got.failures.items())]
    for clip, reason in failures:
        logger.warning("skipping %s: %s", clip.path, reason)
    return DatasetEmbeddings(dataset=dataset, clips=[dataset.clips[i] for i in got.ok], embeddings=got.embeddings,
                             failures=failures, cache_hits=got.cache_hits)


def classify_embeddings(emb: DatasetEmbeddings, text_embeddings, logit_scale: float, *, top_k: int = 5) -> dict:
    """Zero-shot predictions per clip plus a summary (accuracy when labels are known).

    Returns:
        ``{"classes", "items": [{"file", "label", "fold", "top": [{"label", "score"}], "correct"}],
        "failures": [{"file", "reason"}], "missing": [file], "summary": {...}}``; scores are CLIP-style
        probabilities (softmax of ``logit_scale * cos``).
    """
    ds = emb.dataset
    classes = ds.classes
    logits = zero_shot_scores(emb.embeddings, np.asarray(text_embeddings), logit_scale) if emb.clips \
        else np.zeros((0, len(classes)))
    probs = softmax(logits) if emb.clips else logits
    k = max(1, min(top_k, len(classes)))
    order = topk_predictions(logits, k)
    items = []
    for clip, row, p in zip(emb.clips, order, probs):
        item = {"file": _display(clip.path, ds.root), "label": clip.label, "fold": clip.fold,
                "top": [{"label": classes[j], "score": float(p[j])} for j in row]}
        if clip.target is not None:
            item["correct"] = bool(row[0] == clip.target)
        items.append(item)
    summary: dict = {"classified": len(emb.clips), "failed": len(emb.failures), "missing": len(ds.missing),
                     "missing_summary": ds.missing_summary() if ds.missing else None}
    labelled = [i for i, c in enumerate(emb.clips) if c.target is not None]
    if labelled:
        result = evaluate_scores(logits[labelled], emb.targets[labelled], classes,
                                 folds=[emb.clips[i].fold for i in labelled])
        summary.update(labelled=len(labelled), accuracy=result.top1, top5=result.top5,
                       folds={str(f): v for f, v in result.folds.items()},
                       fold_mean={m: {"mean": a, "std": b} for m, (a, b) in result.fold_mean.items()},
                       per_class=result.per_class)
    return {"dataset": ds.name, "root": str(ds.root) if ds.root else None, "classes": classes, "top_k": k,
            "items": items, "failures": [{"file": _display(c.path, ds.root), "reason": r} for c, r in emb.failures],
            "missing": [_display(c.path, ds.root) for c in ds.missing], "summary": summary}


def run_zero_shot(datasets: Sequence[AudioDataset], encoders: Sequence[NamedEncoder], clip_space, *,
                  templates: Sequence[str] = DEFAULT_TEMPLATES, cache_dir: str | Path | None = None,
                  batch_size: int = 16, device=None, out_dir: str | Path | None = None,
                  settings: dict | None = None) -> dict:
    """Zero-shot protocol (top-1/top-5 per official fold, mean ± std) for every encoder x dataset.

    Args:
        datasets: labelled datasets (ESC-50: 5 folds, UrbanSound8K: 10 folds, folders: no folds).
        encoders: the audio encoders to compare; each is paired with ``clip_space`` in turn.
        clip_space: a :class:`~soundedit.models.ClipSpace` (text tower and logit scale).
        templates: prompt templates with ``{label}`` (several = ensembling).
        cache_dir: embedding cache (``None``: no cache).
        out_dir: if given, ``zeroshot.json``, ``zeroshot.md`` and PNG plots are written there, as one set
            (see :func:`write_reports`).
        settings: extra settings recorded in the report (e.g. CLI flags).

    Returns:
        The report dict (what ``zeroshot.json`` holds).
    """
    _check_labelled(datasets)
    report = _report_head("zeroshot", datasets, encoders,
                          {"templates": list(templates), "clip": getattr(clip_space, "name", ""),
                           "logit_scale": float(clip_space.logit_scale), **(settings or {})})
    text = {ds.name: class_embeddings(clip_space, ds.classes, templates).numpy() for ds in datasets}
    rows = []
    for enc in encoders:
        row = {"encoder": enc.name, "zeroshot": {}}
        for ds in datasets:
            emb = embed_dataset(ds, enc, cache_dir=cache_dir, batch_size=batch_size, device=device)
            if not emb.clips:
                raise InputError(f"{ds.root}: none of the {len(ds.clips)} clips could be decoded "
                                 f"(first: {f'{emb.failures[0][0].path}: {emb.failures[0][1]}' if emb.failures else 'no clips'})")
            logits = zero_shot_scores(emb.embeddings, text[ds.name], clip_space.logit_scale)
            res = evaluate_scores(logits, emb.targets, ds.classes, folds=emb.folds)
            entry = res.to_dict()
            entry.update(n=len(emb.clips), failures=[{"file": str(c.path), "reason": r} for c, r in emb.failures],
                         cache_hits=emb.cache_hits, confusion=res.confusion.tolist())
            report["results"].setdefault(enc.name, {})[ds.name] = entry
            row["zeroshot"][ds.name] = _headline(res.fold_mean["top1"], res.top1)
        rows.append(row)
    report["table1"] = rows
    if out_dir is not None:
        write_reports(out_dir, zeroshot=report)
    return report


def run_probe(datasets: Sequence[AudioDataset], encoders: Sequence[NamedEncoder], *,
              Cs: Sequence[float] | None = None, cache_dir: str | Path | None = None, batch_size: int = 16,
              device=None, out_dir: str | Path | None = None, seed: int = 0, settings: dict | None = None) -> dict:
    """Linear-probe protocol (official folds as CV, C by inner CV on training folds) per encoder x dataset.

    Args mirror :func:`run_zero_shot`; ``Cs`` is the C grid (default
    :data:`soundedit.evaluation.probe.DEFAULT_CS`).  With fewer than two official
    folds present, stratified pseudo-folds are used and the report says so.

    Returns:
        The report dict (what ``probe.json`` holds).
    """
    from soundedit.evaluation.probe import DEFAULT_CS, linear_probe

    _check_labelled(datasets)
    Cs = tuple(Cs or DEFAULT_CS)
    report = _report_head("probe", datasets, encoders, {"Cs": list(Cs), "seed": seed, **(settings or {})})
    rows = []
    for enc in encoders:
        row = {"encoder": enc.name, "probe": {}}
        for ds in datasets:
            emb = embed_dataset(ds, enc, cache_dir=cache_dir, batch_size=batch_size, device=device)
            folds = emb.folds if all(f is not None for f in emb.folds) else None
            res = linear_probe(emb.embeddings, emb.targets, folds, n_classes=len(ds.classes), Cs=Cs, seed=seed)
            entry = res.to_dict()
            entry.update(n=len(emb.clips), failures=[{"file": str(c.path), "reason": r} for c, r in emb.failures],
                         confusion=res.confusion.tolist())
            report["results"].setdefault(enc.name, {})[ds.name] = entry
            row["probe"][ds.name] = (res.mean, res.std)
        rows.append(row)
    report["table1"] = rows
    if out_dir is not None:
        write_reports(out_dir, probe=report)
    return report


def write_reports(out_dir: str | Path, *, zeroshot: dict | None = None, probe: dict | None = None,
                  table1: bool = False) -> dict[str, dict[str, Path]]:
    """Write the given reports (``PART.json``, ``PART.md`` and PNG plots each) and, with ``table1``, the
    Table 1 that merges them (``table1.json`` / ``table1.md``) into ``out_dir``, as one set
    (:func:`soundedit.fileio.output_set`): it replaces an earlier run's files of the same parts, and a
    failure or Ctrl-C on the way leaves ``out_dir`` as it was rather than half the reports written.

    The plots are drawn from the reports' numbers; each report gets ``plots`` (recorded in its JSON) and
    ``files`` (its JSON and Markdown), paths in ``out_dir``.

    Returns:
        part -> name -> path, for each part written.
    """
    from soundedit.fileio import output_set

    out = Path(out_dir)
    given = {part: rep for part, rep in (("zeroshot", zeroshot), ("probe", probe)) if rep is not None}
    parts = [*given, *(["table1"] if table1 else [])]
    files: dict[str, dict[str, Path]] = {}
    with output_set(out, replaces=reports.output_claims(parts), last=f"{parts[-1]}.json") as stage:
        for part, rep in given.items():
            rep["plots"] = {name: str(out / f"{name}.png") for name in _draw_plots(rep, part, stage)}
            title = "Zero-shot classification" if part == "zeroshot" else "Linear probe (supervised)"
            written = reports.write_report(stage, rep, _markdown(title, rep, rep["table1"], part=part), stem=part)
            files[part] = {k: out / v.name for k, v in written.items()}
            rep["files"] = {k: str(v) for k, v in files[part].items()}  # after its JSON, before table1.json
        if table1:
            files["table1"] = {k: out / v.name for k, v in _write_table1(stage, zeroshot, probe).items()}
    return files


def write_table1(out_dir: str | Path, zeroshot: dict | None, probe: dict | None) -> dict[str, Path]:
    """Merge zero-shot and probe reports into the paper's full Table 1 (``table1.md`` / ``table1.json``),
    as one set replacing an earlier Table 1 (the reports themselves are not written: see :func:`write_reports`)."""
    from soundedit.fileio import output_set

    out = Path(out_dir)
    with output_set(out, replaces=reports.output_claims(["table1"]), last="table1.json") as stage:
        written = _write_table1(stage, zeroshot, probe)
    return {k: out / v.name for k, v in written.items()}


def _write_table1(folder: Path, zeroshot: dict | None, probe: dict | None) -> dict[str, Path]:
    merged: dict[str, dict] = {}
    for rep in (probe, zeroshot):
        for row in (rep or {}).get("table1", []):
            merged.setdefault(row["encoder"], {"encoder": row["encoder"]}).update(
                {k: v for k, v in row.items() if k != "encoder"})
    rows = list(merged.values())
    md = "# Table 1: supervised (linear probe) and zero-shot top-1 accuracy (%)\n\n" + reports.table1_markdown(rows)
    stratified = [f"{enc} on {ds} ({res['protocol']})" for enc, per_ds in (probe or {}).get("results", {}).items()
                  for ds, res in per_ds.items() if str(res.get("protocol", "")).startswith("stratified")]
    if stratified:  # not comparable with the paper's official-fold figures
        md += ("\nSupervised figures over stratified CV splits of the clips present (fewer than two official "
               f"folds), not official folds: {'; '.join(stratified)}.\n")
    return reports.write_report(folder, {"table1": rows, "zeroshot": zeroshot, "probe": probe}, md, stem="table1")


# ------------------------------------------------------------------------------------------------


def _draw_plots(report: dict, part: str, folder: Path) -> list[str]:
    """Draw a zero-shot or probe report's plots (confusion matrices; per-class accuracy for zero-shot)
    from its numbers into ``folder``; returns their names (file names without ``.png``)."""
    slugs = _encoder_slugs([enc["name"] for enc in report["encoders"]])
    names = []
    for enc, per_ds in report["results"].items():
        for ds, res in per_ds.items():
            slug, classes = f"{slugs[enc]}_{ds}", report["datasets"][ds]["classes"]
            if part == "zeroshot":
                reports.plot_confusion(res["confusion"], classes, folder / f"zeroshot_confusion_{slug}.png",
                                       title=f"zero-shot {ds}, {enc}")
                reports.plot_per_class(res["per_class"], folder / f"zeroshot_per_class_{slug}.png",
                                       title=f"zero-shot per-class top-1, {ds}, {enc}")
                names += [f"zeroshot_confusion_{slug}", f"zeroshot_per_class_{slug}"]
            else:
                reports.plot_confusion(res["confusion"], classes, folder / f"probe_confusion_{slug}.png",
                                       title=f"linear probe {ds}, {enc} ({res['protocol']})")
                names.append(f"probe_confusion_{slug}")
    return names


def _check_labelled(datasets: Sequence[AudioDataset]) -> None:
    for ds in datasets:
        if not ds.labelled:
            raise InputError(f"{ds.root}: evaluation needs labelled clips (an ESC-50/UrbanSound8K layout or "
                             f"class sub-folders); {sum(c.target is None for c in ds.clips)} clips have no label")
    names = [ds.name for ds in datasets]
    if len(set(names)) != len(names):
        raise InputError(f"--root: each dataset kind may appear once per run, got {names}")


def _headline(fold_mean: tuple[float, float], overall: float) -> tuple[float, float | None]:
    """Mean ± std over folds when the data has folds, else the overall accuracy."""
    mean, std = fold_mean
    return (overall, None) if np.isnan(mean) else (mean, std)


def _report_head(kind: str, datasets, encoders, settings: dict) -> dict:
    return {
        "kind": kind,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "environment": reports.environment(),
        "settings": settings,
        "datasets": {ds.name: _describe_dataset(ds) for ds in datasets},
        "encoders": [e.describe() for e in encoders],
        "results": {},
    }


def _describe_dataset(ds: AudioDataset) -> dict:
    return {"root": str(ds.root), "layout": ds.name, "classes": ds.classes, "folds": ds.folds,
            "n_clips": len(ds.clips), "n_missing": len(ds.missing),
            "missing": ds.missing_summary() if ds.missing else None,
            "metadata": str(ds.metadata) if ds.metadata else None,
            "metadata_sha256": hashlib.sha256(ds.metadata.read_bytes()).hexdigest() if ds.metadata else None,
            "checksum": ds.checksum()}


def _markdown(title: str, report: dict, rows: list[dict], *, part: str) -> str:
    lines = [f"# {title}", "", reports.table1_markdown(rows)]
    lines.append("Top-1 accuracy in percent, mean ± std over the official folds present "
                 + ("(or, for the linear probe where fewer than two are present, over stratified CV splits of "
                    "the clips present, marked stratified-k below)" if part == "probe"
                    else "(overall accuracy for data without folds)") + ".\n")
    for enc, per_ds in report["results"].items():
        for ds, res in per_ds.items():
            folds = {k: v if isinstance(v, dict) else {"top1": v} for k, v in res.get("folds", {}).items()}
            if part == "zeroshot":
                lines.append(reports.folds_markdown(f"{enc} on {ds}: per fold", folds))
            else:
                stratified = res["protocol"].startswith("stratified")
                unit = "split" if stratified else "fold"  # stratified: CV splits of the clips present, not folds
                for k, n in res.get("fold_n", {}).items():
                    folds[k]["n"] = n
                if stratified:
                    folds = {f"split {k}": v for k, v in folds.items()}
                why = ": no official folds to cross-validate on" if stratified else ""
                chosen = ", ".join(f"{c:g}" for c in res["chosen_C"].values())
                lines.append(reports.folds_markdown(f"{enc} on {ds}: per {unit} ({res['protocol']}{why}, C per "
                                                    f"{unit}: {chosen})", folds, keys=("top1",)))
            if res.get("failures"):
                n = len(res["failures"])
                lines.append(f"{n} clip{'s' if n != 1 else ''} could not be decoded (listed in the JSON).\n")
    for name, ds in report["datasets"].items():
        lines.append(f"- **{name}**: {ds['n_clips']} clips from `{ds['root']}`, folds {ds['folds'] or '–'}, "
                     f"checksum `{ds['checksum'][:16]}`" + (f"; {ds['missing']}" if ds["missing"] else ""))
    env = report["environment"]
    lines.append(f"\nsoundedit {env['soundedit']}, torch {env['torch']}, scikit-learn {env['scikit-learn']}; "
                 f"{report['created']}.\n")
    return "\n".join(lines)


def _display(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return str(Path(path).relative_to(root))
        except ValueError:
            pass
    return str(path)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", Path(name).stem if Path(name).suffix else name).strip("-") or "encoder"


def _encoder_slugs(names: Sequence[str]) -> dict[str, str]:
    """A file-name part per encoder name, unique: two ``enc.safetensors`` from different folders got the
    same plot names, and the second's plots replaced the first's."""
    slugs: dict[str, str] = {}
    for name in names:
        base = slug = _slug(name)
        n = 1
        while slug in slugs.values():
            n += 1
            slug = f"{base}-{n}"
        slugs[name] = slug
    return slugs


# ------------------------------------------------------------------------------------------------
# manipulation metrics over edit jobs


def read_jobs(path: str | Path) -> list[dict]:
    """Edit jobs from a CSV with columns ``source, sound, label`` (and optional ``text``).

    ``source`` is an integer seed or a path (W/W+ code or photo); ``sound`` an audio
    file; ``label`` the semantic class the edit aims at; ``text`` the prompt of the
    paired text-guided edit (default: the label).  Relative paths are relative to
    the CSV's folder.

    Every source is checked here, before any model loads: a seed's range, a latent file's content
    (one code: a ``(N, L, D)`` file with N > 1 is refused) and a photo's decoding and size.  Each job
    also records its CSV ``row`` for later messages.

    Raises:
        InputError: missing or repeated columns, no rows, an empty field, files that do not exist, or
            unusable sources; the message names the file and row (its line) and the column.
    """
    import csv

    from soundedit.text.templates import clean_label

    from soundedit.fileio import check_columns_once, check_csv_row, read_text_file

    path = Path(path)
    reader = csv.DictReader(io.StringIO(read_text_file(path, "--jobs", "CSV"), newline=""))
    header = reader.fieldnames or []  # the first line, read as the header whether or not rows follow
    check_columns_once(header, _JOB_COLUMNS, f"--jobs {path}")  # (a spreadsheet's unnamed columns may repeat)
    absent = [c for c in ("source", "sound", "label") if c not in header]
    if absent:
        raise InputError(f"--jobs {path}: expected columns source, sound, label (text optional); missing "
                         f"{', '.join(absent)}")
    rows = [(reader.line_num, row) for row in reader]  # the line each row ends on (blank lines are skipped)
    if not rows:
        raise InputError(f"--jobs {path}: expected one job per line after the header, got no rows")
    jobs = []
    for line, row in rows:
        where = f"--jobs {path}: row {line}"
        check_csv_row(row, len(header), where)
        given = {"source": (row["source"] or "").strip(), "sound": (row["sound"] or "").strip(),
                 "label": clean_label(row["label"] or "")}
        empty = next((c for c, v in given.items() if not v), None)
        if empty is not None:
            raise InputError(f"{where}: {empty}: expected {_JOB_FIELDS[empty]}, got {row[empty] or ''!r}")
        source, sound, label = given.values()
        sound_path = (path.parent / sound) if not Path(sound).is_absolute() else Path(sound)
        if not sound_path.is_file():
            raise InputError(f"{where}: sound {sound!r} does not exist (looked at {sound_path})")
        if source.lstrip("-").isdigit():
            src: object = check_seed(int(source), f"{where}: source")
        else:
            src = (path.parent / source) if not Path(source).is_absolute() else Path(source)
            if not Path(src).is_file():
                raise InputError(f"{where}: source {source!r} is neither a seed nor a file")
            src = str(src)
            _check_job_source(src, source, where)
        jobs.append({"source": src, "sound": str(sound_path), "label": label,
                     "text": (row.get("text") or "").strip() or label, "row": line})
    return jobs


#: what each required column of a ``--jobs`` row holds (said when a row leaves it empty)
_JOB_FIELDS = {"source": "a seed or a latent or photo file", "sound": "an audio file",
               "label": "the class name the edit aims at"}
#: the columns a job list's rows are read from
_JOB_COLUMNS = (*_JOB_FIELDS, "text")


def _check_job_source(src: str, given: str, where: str) -> None:
    """A job's source file: a latent holding one code, or a photo that decodes and is large enough."""
    from soundedit.editing.sources import IMAGE_SUFFIXES, LATENT_SUFFIXES

    suffix = Path(src).suffix.lower()
    if suffix in LATENT_SUFFIXES:
        from soundedit.editing.sources import check_one_code  # the edit batch's own check of a row's latent

        check_one_code(src, where)
    elif suffix in IMAGE_SUFFIXES:
        from soundedit.inversion.api import check_photo
        from soundedit.inversion.image import load_image

        check_photo(load_image(src, what=f"{where}: source"), what=f"{where}: source {given!r}")
    else:
        raise InputError(f"{where}: source {given!r}: expected a seed, a latent ({'/'.join(LATENT_SUFFIXES)}) or "
                         f"a photo ({'/'.join(IMAGE_SUFFIXES)})")


def check_job_latents(jobs: Sequence[dict], generator, jobs_file: str | Path = "") -> None:
    """Every job's latent holds one code for this generator (see :func:`soundedit.editing.batch.check_row_latents`)."""
    from soundedit.editing.batch import check_row_latents

    check_row_latents(((job["source"], f"--jobs {jobs_file}: row {job.get('row', i + 2)}")
                       for i, job in enumerate(jobs)), generator)


def semantic_classifier_from_sounds(encoder: NamedEncoder, sounds: Sequence[str | Path], labels: Sequence[str], *,
                                    cache_dir=None, device=None, seed: int = 0):
    """Fit the semantic classifier on the audio embeddings of labelled sounds.

    Raises:
        InputError: a sound cannot be decoded (the classifier must see every labelled example).
    """
    from soundedit.evaluation.manipulation import SemanticClassifier

    got = embed_files(encoder.encoder, list(sounds), cache_dir=cache_dir, encoder_id=encoder.fingerprint,
                      device=device, description="semantic classifier: embedding sounds")
    if got.failures:
        i, reason = next(iter(got.failures.items()))
        raise InputError(f"semantic classifier: {len(got.failures)} sounds could not be decoded "
                         f"(first: {sounds[i]}: {reason})")
    return SemanticClassifier(seed=seed).fit(got.embeddings, list(labels))


def run_edits(editor, jobs: Sequence[dict], *, semantic=None, identity_net=None, text_edits: bool = True,
              batch_size: int = 4, seed: int = 0, out_dir: str | Path | None = None, settings: dict | None = None,
              **edit_settings) -> dict:
    """Run every job as a sound-guided (and a text-guided) edit, then compute the manipulation metrics.

    Args:
        editor: a :class:`soundedit.editing.Editor`.
        jobs: from :func:`read_jobs` (``source``, ``sound``, ``label``, ``text``).
        semantic: a fitted :class:`~soundedit.evaluation.manipulation.SemanticClassifier`, or ``None``.
        identity_net: for identity similarity (faces), or ``None``.
        text_edits: also run the text-guided edit of every job (needed for cos(w_s, w_t) and the t-SNE pairs).
        batch_size: edits optimised together.
        out_dir: if given, ``edits.json``, ``edits.md`` and the PNGs (plus edited images) are written there,
            as one set (see :func:`~soundedit.evaluation.manipulation.write_manipulation_report`).
        **edit_settings: :class:`~soundedit.config.EditConfig` fields (``steps``, ``lr`` ...).

    Returns:
        With ``out_dir``, the report ``edits.json`` holds; else the metrics dict of
        :func:`~soundedit.evaluation.manipulation.summarize_edits`.
    """
    import torch

    from soundedit.evaluation.manipulation import EditBatch, summarize_edits, write_manipulation_report

    if batch_size < 1:
        raise InputError(f"--batch-size: expected a positive integer, got {batch_size}")

    def batches(kind: str) -> EditBatch:
        parts = []
        for start in range(0, len(jobs), batch_size):
            chunk = jobs[start:start + batch_size]
            specs = [{"source": j["source"], **({"audio": j["sound"]} if kind == "sound" else {"text": j["text"]})}
                     for j in chunk]
            logger.info("%s-guided edits %d-%d of %d", kind, start + 1, start + len(chunk), len(jobs))
            parts.append(editor.edit_many(specs, **edit_settings))
        cat = {f: torch.cat([getattr(p, f).detach().cpu() for p in parts])
               for f in ("w_source", "w_plus", "source_image", "image", "target")}
        if cat["w_plus"].shape[0] != len(jobs):
            raise InputError(f"--jobs: each source must be one code (one seed, one W/W+ code or one photo); "
                             f"{len(jobs)} jobs gave {cat['w_plus'].shape[0]} edits")
        return EditBatch(w_source=cat["w_source"], w_edit=cat["w_plus"], source_image=cat["source_image"],
                         image=cat["image"], target=cat["target"], labels=[j["label"] for j in jobs])

    audio = batches("sound")
    text = batches("text") if text_edits else None
    metrics = summarize_edits(editor.clip_space, audio, text, semantic=semantic, identity_net=identity_net, seed=seed)
    for item, job in zip(metrics["per_edit"], jobs):
        item.update(source=str(job["source"]), sound=job["sound"], text=job["text"])
    if out_dir is not None:
        return write_manipulation_report(out_dir, metrics, settings={**(settings or {}), **edit_settings},
                                         images=lambda folder: _save_edit_images(folder, audio, text))
    return metrics


def _save_edit_images(folder: Path, audio, text) -> None:
    """source | sound edit | text edit, one PNG row per job."""
    import torch

    from soundedit.editing.report import to_pil
    from soundedit.fileio import atomic_open

    for i in range(audio.image.shape[0]):
        tiles = [audio.source_image[i], audio.image[i]] + ([text.image[i]] if text is not None else [])
        row = torch.cat([t.float() for t in tiles], dim=2)  # (3, H, k*W)
        with atomic_open(folder / f"edit_{i:04d}_{_slug(audio.labels[i])}.png", "wb") as fh:
            to_pil(row).save(fh, format="PNG")


#: Registry of evaluation protocols: name -> runner (what ``soundedit eval NAME`` runs).
#: Each returns its report dict and, given ``out_dir``, writes JSON + Markdown + PNGs there.
PROTOCOLS = {"zeroshot": run_zero_shot, "probe": run_probe, "edits": run_edits}
