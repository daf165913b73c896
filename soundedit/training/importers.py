"""Build manifests from common dataset layouts (files must already be on disk; nothing is downloaded).

Each importer returns manifest rows for every clip the dataset's metadata lists;
missing files are then found by :func:`soundedit.training.manifest.check_audio`,
which reports them and drops them only when allowed.  Supported layouts:

- ESC-50: ``meta/esc50.csv`` + ``audio/`` (:func:`esc50`)
- UrbanSound8K: ``metadata/UrbanSound8K.csv`` + ``audio/foldN/`` (:func:`urbansound8k`)
- VGGSound: ``vggsound.csv`` (YouTube id, start s, label, train/test) + local clips (:func:`vggsound`)
- AudioSet: segment CSVs + ``ontology.json`` + local clips (:func:`audioset`)
- a folder per class (:func:`folder`)
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from soundedit.audio.io import AUDIO_EXTENSIONS
from soundedit.errors import InputError
from soundedit.text.templates import DEFAULT_TEMPLATE, clean_label
from soundedit.training.manifest import ManifestRow

logger = logging.getLogger("soundedit")

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def _need_file(path: Path, what: str) -> Path:
    if not path.is_file():
        got = "a folder" if path.is_dir() else "it does not exist"
        raise InputError(f"{what}: expected the file {str(path)!r}, {got}")
    return path


def _fold_rows(meta: Path, columns: tuple[str, str], folds: Iterable[int] | None, val_folds: Iterable[int],
               audio_of: Callable[[str, int], Path]) -> list[ManifestRow]:
    """Rows of a metadata CSV with a ``fold`` column (ESC-50, UrbanSound8K), folds filtered and split assigned.

    The CSV is read and checked as classify/eval read it (header, cells per row, UTF-8).
    ``columns`` are the file-name and class-name columns; ``audio_of(file_name, fold)`` gives the clip's path.

    Raises:
        InputError: malformed metadata (named by row), or ``folds``/``val_folds`` the metadata does not list.
    """
    from soundedit.evaluation.datasets import _int, _read_csv

    file_col, class_col = columns
    records = []
    for line, rec in enumerate(_read_csv(meta, [file_col, "fold", class_col]), start=2):  # line 1 is the header
        fold = _int(rec["fold"], path=meta, line=line, column="fold")
        for col in (file_col, class_col):
            if not rec[col].strip():
                raise InputError(f"{meta}: row {line}: expected a value in column {col!r}, got an empty cell")
        records.append((fold, rec))
    have = sorted({fold for fold, _ in records})
    for flag, wanted in (("--folds", folds), ("--val-folds", val_folds)):
        unknown = sorted(set(wanted or ()) - set(have))
        if unknown:
            raise InputError(f"{flag}: {meta} lists clips in folds {','.join(map(str, have))}; "
                             f"got {','.join(map(str, unknown))}"
                             + (" (pass --val-folds '' for no validation split)" if flag == "--val-folds" else ""))
    keep = None if folds is None else set(folds)
    val = set(val_folds)
    rows = [ManifestRow(audio=str(audio_of(rec[file_col].strip(), fold)), label=clean_label(rec[class_col]),
                        split="val" if fold in val else "train")
            for fold, rec in records if keep is None or fold in keep]
    if rows and all(r.split == "val" for r in rows):  # fine for a --val manifest, not for --manifest
        logger.warning("every kept fold is a --val-folds fold: no row is marked for training (this manifest "
                       "can be `soundedit train --val`, not --manifest)")
    return rows


def esc50(root: str | os.PathLike, *, folds: Iterable[int] | None = None, val_folds: Iterable[int] = (5,)) -> list[ManifestRow]:
    """ESC-50 (``meta/esc50.csv``: filename, fold, target, category, ...; clips in ``audio/``).

    Args:
        root: the dataset folder.
        folds: keep only these folds (default: all five).
        val_folds: folds marked ``split=val`` (the rest ``train``).

    Returns:
        One row per listed clip: label = category (``chirping_birds`` -> ``chirping birds``).
    """
    root = Path(root)
    meta = _need_file(root / "meta" / "esc50.csv", "ESC-50 root")
    return _fold_rows(meta, ("filename", "category"), folds, val_folds, lambda name, fold: root / "audio" / name)


def urbansound8k(root: str | os.PathLike, *, folds: Iterable[int] | None = None,
                 val_folds: Iterable[int] = (10,)) -> list[ManifestRow]:
    """UrbanSound8K (``metadata/UrbanSound8K.csv``: slice_file_name, ..., fold, classID, class; ``audio/foldN/``).

    Args:
        root: the dataset folder.
        folds: keep only these folds (default: all ten).
        val_folds: folds marked ``split=val``.
    """
    root = Path(root)
    meta = _need_file(root / "metadata" / "UrbanSound8K.csv", "UrbanSound8K root")
    return _fold_rows(meta, ("slice_file_name", "class"), folds, val_folds,
                      lambda name, fold: root / "audio" / f"fold{fold}" / name)


class _ClipIndex:
    """Local clips of YouTube-based datasets, found by file stem.

    Downloaders name clips differently; tried in order: ``{id}_{start:06d}``
    (VGGSound's own scripts), ``{id}_{start}``, ``{id}_{start_ms}_{end_ms}``
    (AudioSet tools), ``Y{id}`` and ``{id}`` — the last two are taken as the full
    video, so the row gets ``start``/``duration`` to cut the segment.
    """

    def __init__(self, folder: Path, suffixes: tuple[str, ...]) -> None:
        if not folder.is_dir():
            raise InputError(f"clips folder: expected a folder of downloaded clips, got {str(folder)!r}")
        self.by_stem: dict[str, Path] = {}
        for p in sorted(folder.rglob("*")):
            if p.is_file() and p.suffix.lower() in suffixes:
                self.by_stem.setdefault(p.stem, p)

    def find(self, ytid: str, start: float, end: float) -> tuple[Path | None, bool]:
        """``(path, is_full_video)``; path ``None`` when no clip is on disk."""
        s, e = int(round(start)), int(round(end))
        for stem in (f"{ytid}_{s:06d}", f"{ytid}_{s}", f"{ytid}_{int(start * 1000)}_{int(end * 1000)}",
                     f"{ytid}_{s}_{e}"):
            if stem in self.by_stem:
                return self.by_stem[stem], False
        for stem in (f"Y{ytid}", ytid):
            if stem in self.by_stem:
                return self.by_stem[stem], True
        return None, False


def vggsound(csv_path: str | os.PathLike, clips_dir: str | os.PathLike, *, frames_dir: str | os.PathLike | None = None,
             clip_seconds: float = 10.0) -> list[ManifestRow]:
    """VGGSound (``vggsound.csv`` rows: YouTube id, start seconds, label, ``train``/``test``).

    Args:
        csv_path: the dataset's CSV (no header).
        clips_dir: folder with the locally downloaded audio (see :class:`_ClipIndex` for names).
        frames_dir: optional folder with one frame per clip named like the clip (enables L(a<->v)).
        clip_seconds: segment length (VGGSound: 10 s).

    Returns:
        Rows; clips not on disk get the expected path ``clips_dir/{id}_{start:06d}.wav`` so they are reported missing.
    """
    clips = _ClipIndex(Path(clips_dir), AUDIO_EXTENSIONS)
    frames = _ClipIndex(Path(frames_dir), _IMAGE_SUFFIXES) if frames_dir is not None else None
    rows = []
    with open(_need_file(Path(csv_path), "VGGSound CSV"), newline="", encoding="utf-8") as fh:
        for n, rec in enumerate(csv.reader(fh), 1):
            if not rec or rec[0].startswith("#"):
                continue
            if len(rec) < 4:
                raise InputError(f"VGGSound CSV {csv_path}:{n}: expected 'youtube_id,start,label,split', got {rec!r}")
            ytid, start, label, split = rec[0].strip(), float(rec[1]), rec[2].strip(), rec[3].strip()
            rows.append(_youtube_row(clips, frames, ytid, start, start + clip_seconds, label, label, split, Path(clips_dir)))
    return rows


def audioset(segments_csv: str | os.PathLike, ontology_json: str | os.PathLike, clips_dir: str | os.PathLike, *,
             split: str = "train", frames_dir: str | os.PathLike | None = None) -> list[ManifestRow]:
    """AudioSet segments (``# ...`` comment lines, then ``YTID, start_seconds, end_seconds, "labels"``).

    Args:
        segments_csv: e.g. ``balanced_train_segments.csv``.
        ontology_json: ``ontology.json`` (list of ``{"id": "/m/...", "name": ...}``) naming the label ids.
        clips_dir: folder with the locally downloaded clips.
        split: value of the ``split`` column for all rows.
        frames_dir: optional folder of frames named like the clips.

    Returns:
        Rows with label = the first class name and text = "the sound of A, B and C" over all classes.
    """
    try:
        names = {item["id"]: item["name"] for item in json.loads(_need_file(Path(ontology_json), "AudioSet ontology").read_text())}
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(f"AudioSet ontology {ontology_json}: expected a JSON list of {{'id', 'name'}} objects ({exc})") from None
    clips = _ClipIndex(Path(clips_dir), AUDIO_EXTENSIONS)
    frames = _ClipIndex(Path(frames_dir), _IMAGE_SUFFIXES) if frames_dir is not None else None
    rows = []
    with open(_need_file(Path(segments_csv), "AudioSet segments CSV"), newline="", encoding="utf-8") as fh:
        lines = (line for line in fh if line.strip() and not line.startswith("#"))
        for n, rec in enumerate(csv.reader(lines, skipinitialspace=True), 1):
            if len(rec) < 4:
                raise InputError(f"AudioSet CSV {segments_csv}: row {n}: expected 'YTID, start, end, labels', got {rec!r}")
            ytid, start, end = rec[0].strip(), float(rec[1]), float(rec[2])
            ids = [i.strip() for i in rec[3].split(",") if i.strip()]
            unknown = [i for i in ids if i not in names]
            if unknown or not ids:
                raise InputError(f"AudioSet CSV {segments_csv}: row {n}: label ids {unknown or ids} not in {ontology_json}")
            labels = [names[i].lower() for i in ids]
            text = DEFAULT_TEMPLATE.format(
                label=labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1])
            rows.append(_youtube_row(clips, frames, ytid, start, end, labels[0], text, split, Path(clips_dir)))
    return rows


def _youtube_row(clips, frames, ytid, start, end, label, text, split, clips_dir: Path) -> ManifestRow:
    path, full = clips.find(ytid, start, end)
    frame = frames.find(ytid, start, end)[0] if frames is not None else None
    return ManifestRow(audio=str(path if path is not None else clips_dir / f"{ytid}_{int(round(start)):06d}.wav"),
                       text=None if text == label else text, label=clean_label(label),
                       image=str(frame) if frame is not None else None, split=split,
                       start=start if full else None, duration=(end - start) if full else None)


def folder(root: str | os.PathLike) -> list[ManifestRow]:
    """A folder per class: ``root/<label>/**/<audio files>``; label = the class folder's name.

    Raises:
        InputError: no class folders with audio.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"folder: expected a folder with one sub-folder per class, got {str(root)!r}")
    rows = []
    for cls in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(cls.rglob("*")):
            if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS:
                rows.append(ManifestRow(audio=str(f), label=clean_label(cls.name)))
    if not rows:
        raise InputError(f"folder {root}: expected class sub-folders holding audio files ({', '.join(AUDIO_EXTENSIONS)}), found none")
    return rows
