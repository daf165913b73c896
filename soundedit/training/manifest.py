"""Training manifests: one row per clip (audio path, text and/or label, optional frame, split, clip window).

Format: CSV with a header, or JSON lines (``.jsonl``), with the columns

=========  =========================================================================
audio      path of the audio file (relative paths are relative to the manifest's folder)
text       caption/prompt (optional when ``label`` is given: a template makes one)
label      class label (optional; zero-shot validation uses it)
image      path of a video frame / image (optional: enables the L(a<->v) term)
split      ``train``, ``val`` (``valid``, ``validation``), ``test`` or empty (optional; see :func:`split_rows`)
start      clip start in seconds within the file (optional)
duration   clip length in seconds (optional)
=========  =========================================================================

Missing or unreadable audio is found by :func:`check_audio`, counted and
reported; such rows are dropped only when the caller allows it.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from soundedit.errors import InputError
from soundedit.fileio import check_csv_row, read_text_file
from soundedit.text.templates import DEFAULT_TEMPLATE

logger = logging.getLogger("soundedit")

COLUMNS = ("audio", "text", "label", "image", "split", "start", "duration")
#: manifests with these suffixes are JSON lines (one object per line); any other is CSV
_JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")


@dataclass(frozen=True)
class ManifestRow:
    """One training clip (paths absolute after :func:`read_manifest`)."""

    audio: str
    text: str | None = None
    label: str | None = None
    image: str | None = None
    split: str | None = None
    start: float | None = None
    duration: float | None = None
    #: where the row came from, for messages (``"manifest m.csv:7"``); not data, so not compared or written
    where: str | None = field(default=None, compare=False, repr=False)

    def prompt(self, template: str = DEFAULT_TEMPLATE) -> str:
        """The text target: ``text`` if given, else the label through ``template``."""
        from soundedit.text.templates import label_to_prompt

        if self.text:
            return self.text
        if self.label:
            return label_to_prompt(self.label, template)
        raise InputError(f"manifest row {self.audio!r}: expected a text or a label, got neither")


@dataclass
class FileReport:
    """Files (audio clips and video frames) of a manifest that cannot be used."""

    total: int = 0
    missing: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    @property
    def bad(self) -> int:
        return len(self.missing) + len(self.unreadable)

    def summary(self, limit: int = 5) -> str:
        parts = [f"{self.bad} of {self.total} manifest row(s) cannot be used: {len(self.missing)} missing, "
                 f"{len(self.unreadable)} unreadable"]
        if self.missing:
            parts.append("missing e.g. " + ", ".join(self.missing[:limit]))
        if self.unreadable:
            parts.append("unreadable e.g. " + ", ".join(f"{p} ({why})" for p, why in self.unreadable[:limit]))
        return "; ".join(parts)

    def as_dict(self) -> dict:
        return {"total": self.total, "missing": self.missing,
                "unreadable": [{"path": p, "reason": r} for p, r in self.unreadable]}


def _opt_float(value, where: str, column: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{where}: column {column!r} expected a number of seconds, got {value!r}") from None
    # nan passes no range check and would only fail when the clip is decoded, mid-training
    if column == "start" and not (math.isfinite(number) and number >= 0):
        raise InputError(f"{where}: column 'start' expected seconds >= 0, got {value!r}")
    if column == "duration" and not (math.isfinite(number) and number > 0):
        raise InputError(f"{where}: column 'duration' expected seconds > 0, got {value!r}")
    return number


def _row_from_mapping(rec: dict, base: Path, where: str) -> ManifestRow:
    audio = (rec.get("audio") or "").strip() if isinstance(rec.get("audio"), str) else rec.get("audio")
    if not audio:
        raise InputError(f"{where}: expected an 'audio' path, got {rec.get('audio')!r}")

    def path(p):
        return str(p if os.path.isabs(p) else base / p)

    def text(key):
        v = rec.get(key)
        return None if v is None or str(v).strip() == "" else str(v).strip()

    row = ManifestRow(audio=path(audio), text=text("text"), label=text("label"),
                      image=path(text("image")) if text("image") else None, split=text("split"),
                      start=_opt_float(rec.get("start"), where, "start"),
                      duration=_opt_float(rec.get("duration"), where, "duration"), where=where)
    if not row.text and not row.label:
        raise InputError(f"{where}: expected a 'text' or a 'label', got neither")
    return row


def read_manifest(path: str | os.PathLike, *, split: str | None = None) -> list[ManifestRow]:
    """Read a CSV or JSONL manifest.

    Args:
        path: ``.csv`` (header row with the columns above) or ``.jsonl``/``.json`` (one object per line).
        split: keep only rows whose ``split`` equals this (``None``: all rows).

    Returns:
        Rows with absolute paths.

    Raises:
        InputError: the file is missing, empty, or has a malformed row (named by line number).
    """
    p = Path(path)
    text = read_text_file(p, "manifest")
    base = p.resolve().parent
    rows: list[ManifestRow] = []
    if p.suffix.lower() in _JSON_SUFFIXES:
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"manifest {p}:{n}: expected a JSON object per line ({exc})") from None
            if not isinstance(rec, dict):
                raise InputError(f"manifest {p}:{n}: expected a JSON object, got {type(rec).__name__}")
            rows.append(_row_from_mapping(rec, base, f"manifest {p}:{n}"))
    else:
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames or "audio" not in reader.fieldnames:
            raise InputError(f"manifest {p}: expected a CSV header with an 'audio' column "
                             f"(columns: {', '.join(COLUMNS)}), got {reader.fieldnames}")
        for n, rec in enumerate(reader, 2):
            check_csv_row(rec, len(reader.fieldnames), f"manifest {p}:{n}")
            rows.append(_row_from_mapping(rec, base, f"manifest {p}:{n}"))
    if split is not None:
        rows = [r for r in rows if r.split == split]
    if not rows:
        raise InputError(f"manifest {p}: expected at least one row{f' with split {split!r}' if split else ''}, got none")
    return rows


#: ``split`` values of the rows a run validates on; ``train`` (or empty) rows train, ``test`` rows are held out
VAL_SPLITS = ("val", "valid", "validation")
SPLITS = ("train", *VAL_SPLITS, "test")


def split_rows(rows: list[ManifestRow], *, what: str = "manifest") -> tuple[list[ManifestRow], list[ManifestRow]]:
    """``(train_rows, val_rows)`` by the ``split`` column (``test`` rows are left out of both).

    Raises:
        InputError: a split value outside :data:`SPLITS` (named with its row), or no row to train on.
    """
    for row in rows:
        if row.split is not None and row.split not in SPLITS:
            raise InputError(f"{row.where or what}: column 'split' expected one of {', '.join(SPLITS)} or empty, "
                             f"got {row.split!r}")
    train = [r for r in rows if r.split in (None, "train")]
    if not train:
        from collections import Counter

        found = ", ".join(f"{k} {n}" for k, n in sorted(Counter(r.split for r in rows).items()))
        raise InputError(f"{what}: expected rows with split 'train' (or empty) to train on, got none (rows per split: {found})")
    return train, [r for r in rows if r.split in VAL_SPLITS]


def write_manifest(rows: list[ManifestRow], path: str | os.PathLike) -> Path:
    """Write rows atomically as CSV (or JSONL for a ``.jsonl`` path).

    Paths under the manifest's folder are written relative to it (the folder can move).
    """
    from soundedit.fileio import write_text

    p = Path(path)
    base = p.resolve().parent

    def rel(s: str | None) -> str | None:
        if s is None:
            return None
        q = Path(s).resolve()
        return str(q.relative_to(base)) if q.is_relative_to(base) else str(q)

    recs = []
    for r in rows:
        d = asdict(r)
        del d["where"]
        d["audio"], d["image"] = rel(r.audio), rel(r.image)
        recs.append(d)
    if p.suffix.lower() in _JSON_SUFFIXES:  # as read_manifest reads it
        return write_text(p, "".join(json.dumps({k: v for k, v in d.items() if v is not None}) + "\n" for d in recs))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for d in recs:
        writer.writerow({k: "" if v is None else v for k, v in d.items()})
    return write_text(p, buf.getvalue())


def _image_problem(path: str, probe: bool) -> str | None:
    """Why a frame file cannot be used (``"missing"``, a decoder message), or None when fine."""
    if not os.path.isfile(path):
        return "missing"
    if probe:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:  # reads the header only
                im.size
        except (UnidentifiedImageError, OSError) as exc:
            return str(exc).splitlines()[0][:120]
    return None


def check_audio(rows: list[ManifestRow], *, allow_missing: bool = False, what: str = "manifest",
                probe: bool = True) -> tuple[list[ManifestRow], FileReport]:
    """Find missing or unreadable audio files and video frames; fail, or drop those rows only when allowed.

    Args:
        rows: manifest rows.
        allow_missing: drop bad rows (with a warning naming the count) instead of failing.
        what: name used in messages (e.g. ``"--manifest train.csv"``).
        probe: also open each file's header with soundfile (catches corrupt files).

    Returns:
        ``(usable_rows, report)``.

    Raises:
        InputError: some files cannot be used and ``allow_missing`` is false.
    """
    import soundfile as sf

    report = FileReport(total=len(rows))
    keep = []
    checked: dict[str, str | None] = {}  # path -> reason (None: fine); a file can back many rows
    lengths: dict[str, tuple[int, int]] = {}  # probed audio -> (frames, sample rate)
    past_end: str | None = None  # the first row whose window starts after its audio ends
    for row in rows:
        if row.audio not in checked:
            reason = None
            if not os.path.isfile(row.audio):
                reason = "missing"
            elif probe:
                try:
                    info = sf.info(row.audio)
                    if info.frames == 0:
                        reason = "no samples"
                    lengths[row.audio] = (info.frames, info.samplerate)
                except (sf.LibsndfileError, RuntimeError, OSError) as exc:
                    reason = str(exc).splitlines()[0][:120]
            checked[row.audio] = reason
        if checked[row.audio] is None and row.start is not None and row.audio in lengths:
            frames, rate = lengths[row.audio]
            if int(round(row.start * rate)) >= frames and past_end is None:  # load_audio would refuse it, mid-training
                past_end = (f"{row.where or what}: column 'start' expected a time inside the audio, got "
                            f"{row.start:g} s, at/after the end of {row.audio} ({frames / rate:.3f} s)")
        bad_path, reason = row.audio, checked[row.audio]
        if reason is None and row.image:  # the row's video frame, for the a<->v term
            if row.image not in checked:
                checked[row.image] = _image_problem(row.image, probe)
            bad_path, reason = row.image, checked[row.image]
        if reason is None:
            keep.append(row)
        elif reason == "missing":
            report.missing.append(bad_path)
        else:
            report.unreadable.append((bad_path, reason))
    if report.bad:
        if not allow_missing:
            raise InputError(f"{what}: {report.summary()} (pass --allow-missing to skip them)")
        logger.warning("%s: skipping %s", what, report.summary())
    if past_end is not None:  # a mistake in the manifest, not a file to skip: never dropped
        raise InputError(past_end)
    if not keep:
        raise InputError(f"{what}: none of the {len(rows)} audio file(s) can be used")
    return keep, report
