"""The content-addressed weights cache under ``$SOUNDEDIT_HOME`` (default ``~/.cache/soundedit``).

Layout (no symlinks, so it works on every file system)::

    $SOUNDEDIT_HOME/weights/
        blobs/<sha256>/<file name>   verified files, addressed by their sha256; the file
                                     keeps its own name so loaders can read its suffix
        refs/<name>                  sha256 of the file cached for a weights.lock name
                                     (the only way to find entries whose hash is not pinned)
        partial/<name>.part          downloads in progress (resumed with HTTP Range)
        incoming/<file name>         drop a manually downloaded file here: it is verified
                                     and moved into blobs/ the next time it is needed

A file only ever appears under ``blobs/`` after its sha256 was computed (and
compared with weights.lock when pinned), through an atomic rename.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
from pathlib import Path

from soundedit.errors import InputError
from soundedit.weights.lock import WeightsEntry

logger = logging.getLogger("soundedit.weights")

HOME_ENV = "SOUNDEDIT_HOME"
_CHUNK = 1 << 20


def home_dir() -> Path:
    """``$SOUNDEDIT_HOME``, default ``~/.cache/soundedit`` (read on every call, never at import).

    Raises:
        InputError: ``$SOUNDEDIT_HOME`` names a file (or a path under one).
    """
    from soundedit.fileio import check_folder

    value = os.environ.get(HOME_ENV, "").strip()
    return check_folder(value, HOME_ENV) if value else Path.home() / ".cache" / "soundedit"


def weights_dir() -> Path:
    """The weights cache folder (``$SOUNDEDIT_HOME/weights``)."""
    return home_dir() / "weights"


def blob_path(sha256: str, file: str) -> Path:
    """Where a verified file with this digest and name lives."""
    return weights_dir() / "blobs" / sha256 / file


def incoming_path(entry: WeightsEntry) -> Path:
    """Where a user may drop a manually downloaded file for ``entry``."""
    return weights_dir() / "incoming" / entry.file


def partial_path(entry: WeightsEntry) -> Path:
    """The ``.part`` file an interrupted download of ``entry`` resumes from."""
    return weights_dir() / "partial" / f"{entry.name}.part"


def _ref_path(name: str) -> Path:
    return weights_dir() / "refs" / name


def sha256_file(path: str | os.PathLike) -> tuple[str, int]:
    """``(hex sha256, size in bytes)`` of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def read_ref(name: str) -> str | None:
    """The sha256 recorded for ``name`` in ``refs/``, or ``None``."""
    try:
        value = _ref_path(name).read_text(encoding="ascii").strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    return value if len(value) == 64 else None


def write_ref(name: str, sha256: str) -> None:
    """Record that ``name`` is cached as ``sha256`` (atomic)."""
    from soundedit.fileio import write_text

    write_text(_ref_path(name), sha256 + "\n")


def cached_path(entry: WeightsEntry) -> Path | None:
    """The cached file for ``entry`` if present (cheap: existence and size, no re-hash).

    A pinned entry is looked up by its sha256; an unpinned one through ``refs/``.
    A cached file whose size disagrees with weights.lock is treated as absent.
    """
    sha = entry.sha256 or read_ref(entry.name)
    if sha is None:
        return None
    path = blob_path(sha, entry.file)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    if entry.size is not None and size != entry.size:
        logger.warning("cached %s has %d bytes, weights.lock says %d; ignoring it (run `soundedit weights verify %s`)",
                       path, size, entry.size, entry.name)
        return None
    return path


def add_file(entry: WeightsEntry, src: Path, *, move: bool, sha256: str | None = None,
             size: int | None = None) -> Path:
    """Put ``src`` into the cache as ``entry``'s file after checking it; returns the cached path.

    Args:
        entry: the weights.lock entry the file is for.
        src: the file (a finished download, or a user's file).
        move: rename ``src`` into place (same file system) instead of copying it.
        sha256, size: the file's digest and size when already computed.

    Raises:
        InputError: the file's sha256 or size differ from the pinned ones, or (unpinned entry)
            it does not load as the entry's layout; nothing is added.
    """
    if sha256 is None or size is None:
        sha256, size = sha256_file(src)
    check_matches(entry, sha256, size, what=str(src))
    if not entry.pinned:  # no hash to prove it: at least it must be the slot's kind of file
        from soundedit.weights.layouts import check_layout

        check_layout(entry.name, entry.layout, src)
    target = blob_path(sha256, entry.file)
    target.parent.mkdir(parents=True, exist_ok=True)
    if move:
        os.replace(src, target)
    else:
        from soundedit.fileio import atomic_open

        with atomic_open(target, "wb") as out, open(src, "rb") as inp:
            shutil.copyfileobj(inp, out, _CHUNK)
    write_ref(entry.name, sha256)
    if not entry.pinned:
        logger.warning("weights %r has no pinned sha256 in weights.lock; cached file has sha256 %s (%d bytes). "
                       "If you trust it, record it with `soundedit weights pin %s`", entry.name, sha256, size, entry.name)
    return target


def check_matches(entry: WeightsEntry, sha256: str, size: int, *, what: str) -> None:
    """Raise ``InputError`` when a file's digest or size differs from ``entry``'s pinned values."""
    if entry.size is not None and size != entry.size:
        raise InputError(f"{what} is not weights {entry.name!r}: expected {entry.size} bytes, got {size} bytes")
    if entry.sha256 is not None and sha256 != entry.sha256:
        raise InputError(f"{what} is not weights {entry.name!r}: expected sha256 {entry.sha256}, got {sha256}")


def take_incoming(entry: WeightsEntry) -> Path | None:
    """Import a file the user dropped at :func:`incoming_path`; ``None`` when there is none.

    Raises:
        InputError: the dropped file does not match weights.lock (it is left where it is).
    """
    src = incoming_path(entry)
    if not src.is_file():
        return None
    logger.info("importing %s for %r", src, entry.name)
    return add_file(entry, src, move=True)


def verify_cached(entry: WeightsEntry) -> tuple[str, Path | None, str]:
    """Re-hash the cached file of ``entry``.

    Returns:
        ``(status, path, detail)``; status is ``"ok"``, ``"missing"`` or ``"bad"``.
        A bad file (digest differs from its address or from weights.lock) is deleted,
        since a content-addressed cache must never serve it again.
    """
    sha = entry.sha256 or read_ref(entry.name)
    path = blob_path(sha, entry.file) if sha else None
    if path is None or not path.is_file():
        return "missing", None, "not in the cache"
    got, size = sha256_file(path)
    problems = []
    if got != sha:
        problems.append(f"sha256 {got} differs from its cache address {sha}")
    if entry.sha256 is not None and got != entry.sha256:
        problems.append(f"expected sha256 {entry.sha256}, got {got}")
    if entry.size is not None and size != entry.size:
        problems.append(f"expected {entry.size} bytes, got {size}")
    if problems:
        path.unlink()
        with contextlib.suppress(OSError):
            path.parent.rmdir()
        return "bad", path, "; ".join(dict.fromkeys(problems)) + " (deleted; fetch it again)"
    detail = f"sha256 {got}, {size} bytes" + ("" if entry.pinned else " (not pinned in weights.lock)")
    return "ok", path, detail
