"""Labelled audio collections in their original layouts: ESC-50, UrbanSound8K, folder-per-class.

A dataset is read from its metadata as released (``meta/esc50.csv`` + ``audio/``;
``metadata/UrbanSound8K.csv`` + ``audio/foldN/``) so the official folds and class
names are used as published.  Rows whose files are absent are never dropped
silently: they are kept in :attr:`AudioDataset.missing`, and callers decide
(the CLI refuses to evaluate a partial protocol unless the folds that are there
are asked for, or ``--skip-missing`` is given).
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from soundedit.audio.io import AUDIO_EXTENSIONS
from soundedit.errors import InputError
from soundedit.text.templates import clean_label

#: Suffixes treated as audio when walking folders (what soundedit.audio decodes).
AUDIO_SUFFIXES = AUDIO_EXTENSIONS

ESC50_CSV = Path("meta") / "esc50.csv"
US8K_CSV = Path("metadata") / "UrbanSound8K.csv"
LAYOUTS = ("auto", "esc50", "urbansound8k", "folder")


@dataclass(frozen=True)
class Clip:
    """One audio file and, when known, its class and official fold.

    Attributes:
        path: the audio file.
        label: cleaned class name (``"dog bark"``), or ``None`` when unknown.
        target: index of ``label`` in the dataset's ``classes``, or ``None``.
        fold: official cross-validation fold, or ``None``.
    """

    path: Path
    label: str | None = None
    target: int | None = None
    fold: int | None = None


@dataclass
class AudioDataset:
    """A labelled (or unlabelled) list of clips.

    Attributes:
        name: ``"esc50"``, ``"urbansound8k"``, ``"folder"`` or ``"files"``.
        root: the dataset folder (``None`` for a plain list of files).
        classes: candidate class names, cleaned, in official target order.
        clips: clips whose files exist (after fold selection and limit).
        missing: rows of the metadata (in the selected folds) whose files are absent.
        metadata: the metadata CSV that was read, if any.
        all_folds: every official fold the metadata names (empty without folds).
        n_listed: rows of the metadata in the selected folds (present + missing, before ``limit``).
        selected_folds: the folds asked for (``None``: all of them).
        present_folds: official folds with at least one present file, whatever the selection.
    """

    name: str
    root: Path | None
    classes: list[str]
    clips: list[Clip]
    missing: list[Clip] = field(default_factory=list)
    metadata: Path | None = None
    all_folds: list[int] = field(default_factory=list)
    n_listed: int = 0
    selected_folds: list[int] | None = None
    present_folds: list[int] = field(default_factory=list)

    @property
    def labelled(self) -> bool:
        """True when every clip has a known class."""
        return bool(self.clips) and all(c.target is not None for c in self.clips)

    @property
    def folds(self) -> list[int]:
        """Official folds represented among the present clips."""
        return sorted({c.fold for c in self.clips if c.fold is not None})

    def missing_summary(self) -> str:
        """One line: how many listed files are absent, per fold, and which folds are complete."""
        if not self.missing:
            return "no missing files"
        per_fold = Counter(c.fold for c in self.missing)
        present = Counter(c.fold for c in self.clips)
        gone = sorted(f for f in per_fold if f is not None and present.get(f, 0) == 0)
        parts = ", ".join(f"fold {f}: {n}" for f, n in sorted(per_fold.items(), key=lambda kv: (kv[0] is None, kv[0])))
        where = str(self.metadata.relative_to(self.root)) if self.metadata and self.root else "the metadata"
        listed = self.n_listed or len(self.missing) + len(self.clips)
        line = f"{len(self.missing)} of {listed} files listed in {where} are missing ({parts})"
        if gone:
            line += (f"; fold {gone[0]} is entirely absent" if len(gone) == 1
                     else f"; folds {','.join(map(str, gone))} are entirely absent")
        complete = [f for f in self.folds if per_fold.get(f, 0) == 0]
        if complete:
            line += f"; complete folds here: {','.join(map(str, complete))}"
        return line

    def checksum(self) -> str:
        """sha256 over the metadata file (if any) and the sorted clip names, targets and folds.

        Identifies exactly which data a report was computed on (file contents are
        hashed separately by the embedding cache).
        """
        h = hashlib.sha256()
        if self.metadata is not None:
            h.update(self.metadata.read_bytes())
        for c in sorted(self.clips, key=lambda c: str(c.path)):
            h.update(f"{c.path.name}\t{c.target}\t{c.fold}\n".encode())
        return h.hexdigest()


def detect_layout(root: Path) -> str:
    """``"esc50"``, ``"urbansound8k"`` or ``"folder"`` from the files under ``root``."""
    if (root / ESC50_CSV).is_file():
        return "esc50"
    if (root / US8K_CSV).is_file():
        return "urbansound8k"
    return "folder"


def load_dataset(
    root: str | Path,
    *,
    layout: str = "auto",
    labels: Sequence[str] | None = None,
    folds: Sequence[int] | None = None,
    limit: int | None = None,
    what: str | None = None,
    takes_labels: bool = True,
) -> AudioDataset:
    """Read a dataset folder in its original layout.

    Args:
        root: ESC-50 or UrbanSound8K release folder, or any folder of audio
            (sub-folder names become classes unless ``labels`` is given).
        layout: ``"auto"`` (detect), ``"esc50"``, ``"urbansound8k"`` or ``"folder"``.
        labels: candidate class names for a plain folder (ground truth is then
            taken from a sub-folder name when it matches one of them).
        folds: keep only these official folds (rows of other folds are neither
            evaluated nor reported missing).
        limit: keep at most this many clips, taken evenly across classes (for quick runs).
        what: the flag ``root`` came from (``"--root"``), named in errors about the folder.
        takes_labels: the caller accepts ``--labels``/``--labels-file`` for a folder without
            class sub-folders (if not, the error asks for class sub-folders only).

    Returns:
        The :class:`AudioDataset`; absent files are in ``.missing``.

    Raises:
        InputError: unknown layout, unreadable/malformed metadata, folds that the
            metadata does not have, or no audio at all.
    """
    root = Path(root)
    if layout not in LAYOUTS:
        raise InputError(f"layout: expected one of {', '.join(LAYOUTS)}, got {layout!r}")
    if not root.is_dir():
        raise InputError(f"{what or 'dataset root'}: expected a folder, got {str(root)!r} "
                         f"({'a file' if root.exists() else 'does not exist'})")
    layout = detect_layout(root) if layout == "auto" else layout
    if layout == "esc50":
        ds = _load_esc50(root)
    elif layout == "urbansound8k":
        ds = _load_us8k(root)
    else:
        ds = _load_folder(root, labels, what=what, takes_labels=takes_labels)
    ds.present_folds = sorted({c.fold for c in ds.clips if c.fold is not None})
    if folds:
        wanted = sorted(set(int(f) for f in folds))
        unknown = [f for f in wanted if f not in ds.all_folds]
        if unknown:
            have = ",".join(map(str, ds.all_folds)) or "none (this layout has no folds)"
            raise InputError(f"--folds: {ds.name} at {root} has folds {have}; got {','.join(map(str, unknown))}")
        ds.selected_folds = wanted
        ds.clips = [c for c in ds.clips if c.fold in wanted]
        ds.missing = [c for c in ds.missing if c.fold in wanted]
    ds.n_listed = len(ds.clips) + len(ds.missing)
    if limit is not None:
        ds.clips = subsample(ds.clips, limit)
    if not ds.clips and not ds.missing:
        raise InputError(f"{what or 'dataset root'} {root}: expected audio files ({', '.join(AUDIO_SUFFIXES)}), "
                         "found none")
    return ds


def dataset_from_files(paths: Sequence[Path], labels: Sequence[str]) -> AudioDataset:
    """An unlabelled dataset from explicit files, classified against ``labels``."""
    classes = _unique_labels(labels, what="--labels")
    return AudioDataset(name="files", root=None, classes=classes, clips=[Clip(Path(p)) for p in paths])


def subsample(clips: list[Clip], limit: int) -> list[Clip]:
    """At most ``limit`` clips, round-robin over classes (deterministic: file order within a class)."""
    if limit < 1:
        raise InputError(f"--limit: expected a positive number of clips, got {limit}")
    if len(clips) <= limit:
        return clips
    by_class: dict[object, list[int]] = {}
    for i, c in enumerate(clips):
        by_class.setdefault(c.target, []).append(i)
    queues = list(by_class.values())
    keep: list[int] = []
    while len(keep) < limit:
        for q in queues:
            if q and len(keep) < limit:
                keep.append(q.pop(0))
    return [clips[i] for i in sorted(keep)]


def read_labels_file(path: str | Path) -> list[str]:
    """Class names from a text file: one per line, ``#`` comments and blank lines ignored."""
    from soundedit.fileio import read_text_file

    text = read_text_file(path, "--labels-file")
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    return [line for line in lines if line]


def _unique_labels(labels: Sequence[str], *, what: str) -> list[str]:
    cleaned = [clean_label(x) for x in labels if clean_label(x)]
    if len(cleaned) < 2:
        raise InputError(f"{what}: expected at least two class names, got {list(labels)!r}")
    dupes = [k for k, n in Counter(cleaned).items() if n > 1]
    if dupes:
        raise InputError(f"{what}: class names must differ after cleaning, got duplicates {dupes}")
    return cleaned


def _read_csv(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            # the header line itself: a row's keys also hold None for its cells beyond the header
            header = [c for c in (reader.fieldnames or []) if c is not None]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: cannot read the metadata CSV ({exc})") from exc
    absent = [c for c in required if c not in header]
    if absent:
        raise InputError(f"{path}: expected columns {', '.join(required)}; missing {', '.join(absent)} "
                         f"(got {', '.join(header) if header else 'an empty file'})")
    if not rows:
        raise InputError(f"{path}: expected one row per clip under the header, got no rows")
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        if None in row or any(row.get(c) is None for c in required):
            raise InputError(f"{path}: row {line}: expected {len(header)} cells (one per header column), "
                             f"got {len(header) + len(row.get(None) or []) - sum(v is None for v in row.values())}")
    return rows


def _locate(path: Path) -> Path | None:
    """The file, or a re-encoded copy with the same stem (e.g. .wav listed, .flac present)."""
    if path.is_file():
        return path
    for suffix in AUDIO_SUFFIXES:
        alt = path.with_suffix(suffix)
        if alt.is_file():
            return alt
    return None


def _int(value: str, *, path: Path, line: int, column: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InputError(f"{path}: row {line}: expected an integer in column {column!r}, got {value!r}") from None


def _from_rows(name: str, root: Path, csv_path: Path, rows: list[dict[str, str]], *, file_col: str,
               target_col: str, class_col: str, audio_dir) -> AudioDataset:
    names: dict[int, str] = {}
    parsed = []
    for i, row in enumerate(rows, start=2):  # line 1 is the header
        target = _int(row[target_col], path=csv_path, line=i, column=target_col)
        fold = _int(row["fold"], path=csv_path, line=i, column="fold")
        label = clean_label(row[class_col])
        if names.setdefault(target, label) != label:
            raise InputError(f"{csv_path}: row {i}: target {target} is {label!r} here but {names[target]!r} earlier")
        parsed.append((audio_dir(row, fold) / row[file_col], label, target, fold))
    if sorted(names) != list(range(len(names))):
        raise InputError(f"{csv_path}: expected class targets 0..{len(names) - 1}, got {sorted(names)}")
    classes = [names[t] for t in range(len(names))]
    clips, missing = [], []
    for path, label, target, fold in parsed:
        found = _locate(path)
        (clips if found else missing).append(Clip(found or path, label, target, fold))
    return AudioDataset(name=name, root=root, classes=classes, clips=clips, missing=missing, metadata=csv_path,
                        all_folds=sorted({p[3] for p in parsed}))


def _load_esc50(root: Path) -> AudioDataset:
    csv_path = root / ESC50_CSV
    rows = _read_csv(csv_path, ["filename", "fold", "target", "category"])
    return _from_rows("esc50", root, csv_path, rows, file_col="filename", target_col="target", class_col="category",
                      audio_dir=lambda row, fold: root / "audio")


def _load_us8k(root: Path) -> AudioDataset:
    csv_path = root / US8K_CSV
    rows = _read_csv(csv_path, ["slice_file_name", "fold", "classID", "class"])
    return _from_rows("urbansound8k", root, csv_path, rows, file_col="slice_file_name", target_col="classID",
                      class_col="class", audio_dir=lambda row, fold: root / "audio" / f"fold{fold}")


def _load_folder(root: Path, labels: Sequence[str] | None, *, what: str | None = None,
                 takes_labels: bool = True) -> AudioDataset:
    files = sorted(f for f in root.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES
                   and not any(part.startswith(".") for part in f.relative_to(root).parts))
    if labels:
        classes = _unique_labels(labels, what="--labels")
    else:
        subdirs = sorted({f.relative_to(root).parts[0] for f in files if len(f.relative_to(root).parts) > 1})
        if len(subdirs) < 2:
            expected = ("--labels \"a,b,c\" or --labels-file" if takes_labels
                        else "at least two class sub-folders of audio files (their names are the labels)")
            got = ("no class sub-folders" if not subdirs else f"only the class sub-folder {subdirs[0]!r}")
            raise InputError(f"{what + ' ' if what else ''}{root}: not an ESC-50 ({ESC50_CSV}) or UrbanSound8K "
                             f"({US8K_CSV}) layout and {got}; expected {expected}")
        classes = _unique_labels(subdirs, what=f"sub-folders of {root}")
        files = [f for f in files if len(f.relative_to(root).parts) > 1]
    index = {c: i for i, c in enumerate(classes)}
    clips = []
    for f in files:
        rel = f.relative_to(root).parts
        label = clean_label(rel[0]) if len(rel) > 1 else None
        target = index.get(label) if label is not None else None
        clips.append(Clip(f, label if target is not None else None, target, None))
    return AudioDataset(name="folder", root=root, classes=classes, clips=clips)
