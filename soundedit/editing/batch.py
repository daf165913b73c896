"""Many edits from a CSV job list: parsing, validation, resuming and sharding.

A job file has a header row and one edit per row.  Columns (all optional except
that each row needs a target — ``sound`` and/or ``text``):

====== =====================================================================
out     output folder of the row, relative to ``--out`` (default ``row-0001`` ...)
sound   sound file(s); several separated by ``;`` are mixed (relative paths: to the job file's folder)
gain    one gain in dB per sound, separated by ``;``
text    a prompt
seed    source seed (default 0 when no other source is given)
latent  a saved W/W+ code (.pt/.pth/.npy)
image   a photo (inverted into W+)
====== =====================================================================

Every row's files are checked up front, before any model loads: sounds are decoded
(as ``edit --sound`` checks them) and photos opened, so a bad cell fails the whole run
with its row named and nothing written.

A row whose folder already holds ``report.json`` (written last) of the same job
(sounds, gains, text, source) made with the same settings and models is finished and
skipped, so rerunning a command resumes it; a row whose job or settings changed since,
or whose sound or source file was modified after it ran, is run again and its outputs
replaced (:func:`rerun_reason` says why). Paths are made absolute when read, and count as the
same when they name the same file (through links).  Under
``torchrun`` each process takes the rows ``i % WORLD_SIZE == RANK``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from soundedit.config import MAX_GAIN_DB
from soundedit.errors import InputError, check_number, check_seed
from soundedit.fileio import check_columns_once, check_csv_row, check_file

COLUMNS = ("out", "sound", "gain", "text", "seed", "latent", "image")


@dataclass
class Job:
    """One row of a job file, validated.

    Attributes:
        index: 0-based row number (without the header).
        out: the row's output folder.
        edit: keyword arguments for :meth:`Editor.edit` (``audio``, ``gains_db``, ``text``, ``source``).
    """

    index: int
    out: Path
    edit: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        """Whether the row's folder holds a finished edit (of this job or not: see :func:`rerun_reason`)."""
        return (self.out / "report.json").is_file()


def _absolute(path: str) -> str:
    return str(Path(path).absolute())


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(";") if v.strip()]


def parse_gains(text: str | None, what: str = "--gain") -> list[float] | None:
    """``"0,-10"`` (or ``"0;-10"``) -> ``[0.0, -10.0]``; empty -> ``None``."""
    if text is None or not str(text).strip():
        return None
    try:
        gains = [float(v) for v in str(text).replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{what}: expected numbers in dB separated by commas (e.g. 0,-10), got {text!r}") from None
    for g in gains:  # float() takes 'nan' and 'inf'; a non-finite gain would mix silence or noise
        check_number(g, what, low=-MAX_GAIN_DB, high=MAX_GAIN_DB)  # dB
    return gains


def _row_folder(value: str | None, where: str, index: int) -> Path:
    """A row's ``out`` value as a folder inside ``--out``: relative, without ``..`` (a job file
    must not write elsewhere, e.g. over another run or a system folder)."""
    if not value:
        return Path(f"row-{index + 1:04d}")
    p = Path(value)
    if p.is_absolute() or p.anchor or ".." in p.parts or not p.parts:  # not p.parts: '.' is --out itself
        raise InputError(f"{where}: out must be a folder name inside --out (no absolute path, no '..'), got {value!r}")
    return p


def check_row_latents(rows: Iterable[tuple[Any, str]], generator: Any) -> None:
    """``check_one_code`` against the loaded generator for every ``(source, where)`` row whose source is
    a latent file: run once the generator is loaded, before any edit is optimised."""
    from soundedit.editing.sources import check_one_code, is_latent_file

    for source, where in rows:
        if is_latent_file(source):
            check_one_code(source, where, generator)


def _check_sound(path: str, where: str, checked: set[tuple[str, Path]]) -> None:
    """Decode a row's sound as ``edit --sound`` does up front (each file once per job list)."""
    from soundedit.audio.io import check_guide_sound

    key = ("sound", check_file(path, f"{where}: sound").resolve())
    if key not in checked:
        check_guide_sound(path, what=f"{where}: sound")
        checked.add(key)


def _check_image(path: str, where: str, checked: set[tuple[str, Path]]) -> None:
    """Open a row's photo as ``edit IMAGE`` does up front: a suffix the batch inverts, decodable, not tiny."""
    from soundedit.editing.sources import IMAGE_SUFFIXES

    what = f"{where}: image"
    key = ("image", check_file(path, what).resolve())
    if key in checked:
        return
    if Path(path).suffix.lower() not in IMAGE_SUFFIXES:  # the suffix picks photo vs latent when the row runs
        raise InputError(f"{what}: expected a photo ({'/'.join(IMAGE_SUFFIXES)}), got {path!r}")
    from soundedit.inversion.api import check_photo
    from soundedit.inversion.image import load_image

    check_photo(load_image(path, what=what), what=what)
    checked.add(key)


def read_jobs(text: str, *, out_dir: Path, source_name: str = "jobs", base: Path | None = None) -> list[Job]:
    """Parse and validate a CSV job list.

    Every row's sounds are decoded and photos opened here (each file once), so a bad one fails
    before any model loads or any row runs.

    Args:
        text: the CSV content (header row first).
        out_dir: the ``--out`` folder rows' outputs go under.
        source_name: the file's name for error messages.
        base: the folder relative sound/latent/image paths are relative to: the job file's (as for
            training manifests and ``eval edits --jobs``); ``None`` (a list on stdin): the current folder.

    Raises:
        InputError: unknown columns, a row without a target, several sources in one row,
            missing or undecodable files, bad numbers or two rows with the same output folder;
            the message starts with ``--batch NAME row N``.
    """
    from soundedit.editing.sources import check_one_code

    # Excel writes a byte-order mark before the header; as part of the first column's name it makes
    # 'out' unknown (files are read as utf-8-sig, but stdin and library callers may still carry one)
    reader = csv.DictReader(io.StringIO(text.removeprefix("\ufeff")))
    if not reader.fieldnames:
        raise InputError(f"--batch {source_name}: expected a CSV header with some of {', '.join(COLUMNS)}, got an empty file")
    fields = [f.strip() for f in reader.fieldnames]
    unknown = sorted(set(fields) - set(COLUMNS) - {""})  # unnamed: a spreadsheet's trailing commas
    if unknown:
        raise InputError(f"--batch {source_name}: unknown columns {unknown}; expected some of {', '.join(COLUMNS)}")
    check_columns_once(fields, COLUMNS, f"--batch {source_name}")
    # each unnamed column under a key of its own (the reader would file them all under '', keeping the last)
    unnamed = [f"\0unnamed {i}" for i, f in enumerate(fields) if not f]
    reader.fieldnames = [f or f"\0unnamed {i}" for i, f in enumerate(fields)]
    jobs: list[Job] = []
    seen: dict[Path, int] = {}
    checked: set[tuple[str, Path]] = set()  # (column, file) already decoded for an earlier row
    def at(value: str, what: str) -> str:
        """A cell's path as the job file means it (as typed on stdin); a missing one is named as typed
        and as looked for."""
        if Path(value).is_absolute():
            return value
        found = Path(value) if base is None else base / value
        if not found.exists():
            raise InputError(f"{what}: {value!r} does not exist (looked at {str(found.absolute())!r})")
        return str(found)

    for i, raw in enumerate(reader):
        where = f"--batch {source_name} row {i + 1}"
        check_csv_row(raw, len(fields), where)
        stray = next((raw[k] for k in unnamed if (raw[k] or "").strip()), None)
        if stray is not None:  # a cell the user meant for something, which no column reads
            raise InputError(f"{where}: expected nothing in a column without a name in the header, got {stray!r}")
        row = {k: (v or "").strip() for k, v in raw.items()}
        for column in ("latent", "image"):
            if row.get(column):
                row[column] = at(row[column], f"{where}: {column}")
        sounds = [at(s, f"{where}: sound") for s in _split(row.get("sound", ""))]
        for s in sounds:
            _check_sound(s, where, checked)
        gains = parse_gains(row.get("gain"), f"{where} gain")
        if gains is not None and len(gains) != len(sounds):
            raise InputError(f"{where}: expected one gain per sound ({len(sounds)}), got {len(gains)}")
        text_prompt = row.get("text") or None
        if not sounds and not text_prompt:
            raise InputError(f"{where}: expected a sound and/or a text, got neither")
        given = [k for k in ("seed", "latent", "image") if row.get(k)]
        if len(given) > 1:
            raise InputError(f"{where}: expected at most one source (seed, latent or image), got {given}")
        source: Any = 0
        if given == ["seed"]:
            try:
                source = int(row["seed"])
            except ValueError:
                raise InputError(f"{where}: seed must be an integer, got {row['seed']!r}") from None
            check_seed(source, f"{where} seed")
        elif given == ["latent"]:
            source = row["latent"]
            check_file(source, f"{where}: latent")
            check_one_code(source, where)
        elif given == ["image"]:
            source = row["image"]
            _check_image(source, where, checked)
        out = out_dir / _row_folder(row.get("out"), where, i)
        if out in seen:
            raise InputError(f"{where}: output folder {str(out)!r} is also used by row {seen[out] + 1}")
        seen[out] = i
        # absolute from here on, so that a report records the same path from whichever folder the batch
        # runs (see rerun_reason); not normalised: '..' after a link means what the OS makes of it
        sounds = [_absolute(s) for s in sounds]
        source = source if isinstance(source, int) else _absolute(source)
        jobs.append(Job(i, out, {"audio": sounds or None, "gains_db": gains, "text": text_prompt, "source": source}))
    if not jobs:
        raise InputError(f"--batch {source_name}: expected at least one row, got none")
    return jobs


def edit_settings(generator: str, **flags: Any) -> dict[str, Any]:
    """The settings an edit's report records for these flags, as :meth:`Editor.settings` resolves them
    (defaults, then the preset, default from ``generator``'s name, then the flags; ``None`` = unset),
    without loading a model: what a finished row's ``report.json`` is compared with."""
    from soundedit.config import EditConfig
    from soundedit.editing.presets import resolve_config

    return {**dataclasses.asdict(resolve_config(EditConfig(), str(generator), **flags)), "free": False}


def _show(value: Any) -> str:
    return "none" if value is None else repr(value)


def _show_source(info: Any) -> str:
    if not isinstance(info, dict):
        return _show(info)
    if info.get("kind") == "seed":
        return f"seed {info.get('seed')}"
    return f"{info.get('kind')} {_show(info.get('path'))}"


def _source_info(source: Any) -> dict[str, Any]:
    """What the report records of a row's source (``resolve_source``'s info, less the settings in it)."""
    from soundedit.editing.sources import is_latent_file

    if isinstance(source, int):
        return {"kind": "seed", "seed": source}
    return {"kind": "latent" if is_latent_file(source) else "photo", "path": str(source)}


def _same_files(before: Any, now: list[Any] | None) -> bool:
    """Whether the paths a report recorded (``before``) name the files a row names now: equal as
    written, or, both absolute, the same file on disk (reached through a link, or a moved job file's
    folder)."""
    if before == now:
        return True
    if not isinstance(before, list) or not isinstance(now, list) or len(before) != len(now):
        return False
    return all(b == n or _same_file(b, n) for b, n in zip(before, now))


def _same_file(a: Any, b: Any) -> bool:
    if not (isinstance(a, str) and isinstance(b, str) and os.path.isabs(a) and os.path.isabs(b)):
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:  # either is gone: not the same
        return False


def _modified_since(report: Path, paths: list[str]) -> str | None:
    """The first of a row's input files modified after its ``report`` was written (an edit is
    written from its inputs, so a sound or photo changed in place means the outputs are stale), or None."""
    written = report.stat().st_mtime
    for item in paths:
        try:
            if os.stat(item).st_mtime > written:
                return item
        except OSError:  # read_jobs checked them; gone since: the run will say so
            continue
    return None


def rerun_reason(job: Job, settings: dict[str, Any], models: dict[str, str]) -> str | None:
    """Why a finished row (``job.done``) must run again, or ``None`` when its ``report.json`` records
    this job (sounds, gains, text, source), these settings (:func:`edit_settings`) and these models.

    Returns:
        e.g. ``"the job changed: text 'red sky' -> 'blue ocean'"`` or ``"the settings changed: steps 60 -> 300"``.
    """
    path = job.out / "report.json"
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return f"its report.json is unreadable ({type(exc).__name__})"
    if not isinstance(report, dict):
        return "its report.json is not an edit's report"
    target = report.get("target") if isinstance(report.get("target"), dict) else {}
    source = report.get("source")
    sounds = job.edit["audio"]
    changed: list[str] = []
    recorded = [*(target["sounds"] if isinstance(target.get("sounds"), list) else []),
                *([source.get("path")] if isinstance(source, dict) else [])]
    if any(isinstance(p, str) and not os.path.isabs(p) for p in recorded):
        # an earlier version recorded paths as typed, relative to a folder the report does not say
        return ("its report, of an earlier version, names the files relative to the folder that run started in, "
                f"which it does not record: {_show(recorded)}")
    if not _same_files(target.get("sounds"), sounds):
        changed.append(f"sound {_show(target.get('sounds'))} -> {_show(sounds)}")
    elif sounds:
        gains = job.edit["gains_db"] if job.edit["gains_db"] is not None else [0.0] * len(sounds)
        if target.get("gains_db") != gains:
            changed.append(f"gain {_show(target.get('gains_db'))} -> {_show(gains)}")
    if target.get("text") != job.edit["text"]:
        changed.append(f"text {_show(target.get('text'))} -> {_show(job.edit['text'])}")
    now = _source_info(job.edit["source"])
    if (not isinstance(source, dict) or source.get("kind") != now["kind"] or source.get("seed") != now.get("seed")
            or not _same_files([source.get("path")], [now.get("path")])):
        changed.append(f"source {_show_source(source)} -> {_show_source(now)}")
    reasons = [f"the job changed: {', '.join(changed)}"] if changed else []
    newer = _modified_since(path, [*(sounds or []), *([now["path"]] if now["kind"] != "seed" else [])])
    if newer:
        reasons.append(f"{_show(newer)} changed after the row ran")
    moot = set() if now["kind"] == "seed" else {"truncation"}  # it shapes a seed's code only
    for name, now_values, before in (("settings", settings, report.get("settings")),
                                     ("models", models, report.get("models"))):
        before = before if isinstance(before, dict) else {}
        diff = [f"{k} {_show(before.get(k))} -> {_show(v)}" for k, v in now_values.items()
                if k not in moot and before.get(k) != v]
        if diff:
            reasons.append(f"the {name} changed: {', '.join(diff)}")
    return "; ".join(reasons) or None


def shard(jobs: list[Job], rank: int, world: int) -> list[Job]:
    """The rows this process runs: ``index % world == rank``."""
    return [j for j in jobs if j.index % world == rank]
