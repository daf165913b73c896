"""Checkpoints by name: weights.lock, a hash-addressed cache, verified resumable downloads.

Every loader in soundedit takes a weights.lock name or a local path and calls
:func:`resolve`::

    from soundedit.weights import resolve
    path = resolve("landscape-256")      # cached file (downloaded and verified on first use)
    path = resolve("my/own/model.pt")    # an existing local path comes back unchanged

Environment (read on every call, never at import):

- ``SOUNDEDIT_HOME``: cache root (default ``~/.cache/soundedit``); files live under ``weights/``.
- ``SOUNDEDIT_OFFLINE=1``: never use the network; a missing file fails at once with instructions.
- ``SOUNDEDIT_WEIGHTS_LOCK``: read this weights.lock instead of the checkout's / packaged one.
- ``SOUNDEDIT_TIMEOUT``: seconds to wait for a server to connect or send data (default 20).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from soundedit.errors import InputError, WeightsError, WeightsMissingError
from soundedit.fileio import exclusive_lock
from soundedit.weights.lock import UNKNOWN, Lock, WeightsEntry, load_lock, lock_path
from soundedit.weights.store import cached_path, home_dir, incoming_path, sha256_file, weights_dir

__all__ = [
    "UNKNOWN", "Lock", "WeightsEntry", "load_lock", "lock_path", "home_dir", "weights_dir",
    "offline", "get_entry", "check_name", "resolve", "locate", "fetch", "cached_path", "import_file", "pin", "verify",
    "sha256_file", "missing_message",
]

logger = logging.getLogger("soundedit.weights")

OFFLINE_ENV = "SOUNDEDIT_OFFLINE"
TIMEOUT_ENV = "SOUNDEDIT_TIMEOUT"


def offline() -> bool:
    """Whether downloads are switched off (``SOUNDEDIT_OFFLINE`` set to 1/true/yes/on).

    Raises:
        InputError: any value other than 0/1/false/true/no/yes/off/on (a typo must not mean "online").
    """
    from soundedit.runtime import switch_setting

    return switch_setting(OFFLINE_ENV, choices=("0", "1", "false", "true", "no", "yes", "off", "on")) in (
        "1", "true", "yes", "on")


def _timeout() -> float:
    import math

    value = os.environ.get(TIMEOUT_ENV, "").strip()
    try:
        seconds = float(value) if value else 20.0
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise InputError(f"{TIMEOUT_ENV}: expected a positive number of seconds, got {value!r}")
    return seconds


def get_entry(name: str) -> WeightsEntry:
    """The weights.lock entry ``name`` (``InputError`` with close matches when unknown)."""
    return load_lock().get(name)


def check_name(name_or_path: str | os.PathLike, what: str = "weights") -> Path | WeightsEntry:
    """The file or the weights.lock entry ``name_or_path`` names, neither downloading nor reading the cache.

    Commands check their weights options with this before any model loads, so that the error
    names the option (the loaders, which call :func:`resolve`, only see the value).

    Args:
        name_or_path: an existing file (``~`` expanded) or a weights.lock name.
        what: where the value came from, as the user typed it (``"--clip"``); errors start with it.

    Returns:
        The file's path, or the entry of the name.

    Raises:
        InputError: "--lpips: expected an existing checkpoint file or a weights.lock name, got
            '/missing.pth'" (close names listed), or the value names a folder, device, pipe or socket.
    """
    given = os.fspath(name_or_path)
    expected = f"{what}: expected an existing checkpoint file or a weights.lock name, got {given!r}"
    try:
        path = Path(name_or_path).expanduser()
        exists = path.exists()
    except (OSError, RuntimeError):  # too long for a path, '~nosuchuser/...': not a file, so maybe a name
        path, exists = Path(name_or_path), False
    if exists and path.is_file():
        return path
    lock = load_lock()
    if given in lock:  # a folder of that name in the current one (`--out landscape-256`) does not hide it
        return lock.get(given)
    if exists:
        raise InputError(f"{expected} ({'a folder' if path.is_dir() else 'a device, pipe or socket'})")
    raise InputError(f"{expected}{lock.suggest(given)}; `soundedit weights list` shows the names")


def resolve(name_or_path: str | os.PathLike, *, download: bool = True) -> Path:
    """A local file for a weights.lock name or a path.

    Args:
        name_or_path: an existing file (returned unchanged; ``~`` expanded) or a weights.lock name.
        download: fetch a missing named file (unless ``SOUNDEDIT_OFFLINE=1``).

    Returns:
        The path of the file.

    Raises:
        InputError: a directory, or neither an existing file nor a weights.lock name (close names
            listed; see :func:`check_name`).
        WeightsMissingError: a named file is not cached and cannot be fetched (offline,
            ``download=False`` or no mirror reachable); the message says where to get it
            and the exact path to put it at.
        WeightsError: a download did not match its pinned sha256.
    """
    entry = check_name(name_or_path)
    if isinstance(entry, Path):
        return entry
    offline(), _timeout()  # a bad setting is an error even when the file is cached and they are not needed
    found = _local(entry)
    if found is not None:
        return found
    if not download:
        raise _missing(entry, "downloading was not requested")
    return fetch(entry.name)


def locate(name: str) -> Path:
    """The cached file of weights ``name``, never downloading.

    Raises:
        InputError: unknown name.
        WeightsMissingError: not in the cache (the message says how to get it).
    """
    entry = get_entry(name)
    found = _local(entry)
    if found is None:
        raise _missing(entry, "this command does not download (use `soundedit weights fetch`)")
    return found


def _local(entry: WeightsEntry) -> Path | None:
    from soundedit.weights.store import take_incoming

    return cached_path(entry) or take_incoming(entry)


def fetch(name: str, *, force: bool = False, retries: int = 3, timeout: float | None = None) -> Path:
    """Make sure weights ``name`` is in the cache, downloading it if needed; returns its path.

    Mirrors are tried in order.  The download streams into a ``.part`` file with a
    progress bar, resumes after an interruption (HTTP Range), and is renamed into
    the cache only after its sha256 matched weights.lock.  An entry without a pinned
    hash is kept with a warning that tells how to pin it.

    Args:
        name: a weights.lock name.
        force: download again even when cached.
        retries: resumes allowed per mirror after an interrupted transfer.
        timeout: seconds for connecting / each read (default ``$SOUNDEDIT_TIMEOUT`` or 20).

    Raises:
        InputError: unknown name.
        WeightsMissingError: offline, or every mirror unreachable / failing.
        WeightsError: a download did not match its pinned sha256 or size (it was deleted).
    """
    from soundedit.weights import download, store

    entry = get_entry(name)
    is_offline = offline()  # read first: a bad value is an error even when the file is cached
    timeout = _timeout() if timeout is None else timeout
    if not force and (found := _local(entry)) is not None:
        return found
    if is_offline:
        if force and _local(entry) is not None:
            raise WeightsError(f"cannot download weights {entry.name!r} again: downloads are switched off ({OFFLINE_ENV}=1)")
        raise _missing(entry, f"downloads are switched off ({OFFLINE_ENV}=1)")
    part = store.partial_path(entry)
    with exclusive_lock(part.with_name(part.name + ".lock")):  # one writer per .part file
        if not force and (found := cached_path(entry)) is not None:  # another process finished it meanwhile
            return found
        failures: list[str] = []
        mismatch = False
        for url in entry.urls:
            try:
                resumed = download.transfer(url, part, entry, timeout=timeout, retries=retries)
                sha, size = sha256_file(part)
                if resumed and entry.sha256 is not None and sha != entry.sha256:
                    # The partial file may predate a change on the server: try once more from byte 0.
                    logger.warning("resumed download of %s did not verify; downloading it again from the start", entry.name)
                    download.discard_partial(part)
                    download.transfer(url, part, entry, timeout=timeout, retries=retries)
                    sha, size = sha256_file(part)
            except download.MirrorFailed as exc:
                failures.append(f"{url}: {exc.reason}")
                logger.info("could not fetch %s from %s: %s", entry.name, url, exc.reason)
                continue
            try:
                store.check_matches(entry, sha, size, what=f"the download from {url}")
            except InputError as exc:
                download.discard_partial(part)
                mismatch = True
                failures.append(f"{exc} (deleted)")
                logger.warning("%s (deleted)", exc)
                continue
            try:
                target = store.add_file(entry, part, move=True, sha256=sha, size=size)
            except InputError:  # an unpinned download that is not the slot's kind: never resume it
                download.discard_partial(part)
                raise
            download.discard_partial(part)
            logger.info("fetched %s -> %s", entry.name, target)
            return target
    reason = "; ".join(failures)
    if mismatch:
        raise WeightsError(f"could not fetch weights {entry.name!r}: {reason}. {_instructions(entry)}")
    raise _missing(entry, f"no mirror could deliver it ({reason})")


def import_file(name: str, file: str | os.PathLike) -> Path:
    """Copy a file the user obtained into the cache as weights ``name``, after verifying it.

    Raises:
        InputError: unknown name, ``file`` missing, or its sha256/size differ from weights.lock
            (nothing is added).
    """
    from soundedit.weights import store

    entry = get_entry(name)
    src = Path(file)
    if not src.is_file():
        raise InputError(f"FILE: expected an existing file to import as {name!r}, got {os.fspath(file)!r}")
    return store.add_file(entry, src, move=False)


def pin(name: str, *, file: str | os.PathLike | None = None, force: bool = False) -> dict:
    """Record the sha256 and size of a trusted file for ``name`` in weights.lock.

    Args:
        name: a weights.lock name.
        file: the trusted file (it is also imported into the cache); default the cached file.
        force: replace a different, already pinned hash.

    Returns:
        ``{"name", "sha256", "size", "lock"}``.

    Raises:
        InputError: unknown name, no file to pin, or a different hash already pinned without ``force``.
    """
    from soundedit.weights import store
    from soundedit.weights.lock import pin_entry

    entry = get_entry(name)
    if file is not None:
        src = Path(file)
        if not src.is_file():
            raise InputError(f"--file: expected an existing file, got {os.fspath(file)!r}")
    else:
        src = cached_path(entry)
        if src is None:
            raise InputError(f"weights {name!r} is not in the cache; fetch or import it first, or pass --file")
    sha, size = sha256_file(src)
    if entry.sha256 is not None and entry.sha256 != sha and not force:
        raise InputError(f"weights {name!r} is already pinned to sha256 {entry.sha256}, but {src} has {sha}; "
                         "pass --force to replace the pinned hash")
    if entry.sha256 != sha:  # what gets pinned must at least be the slot's kind of file
        from soundedit.weights.layouts import check_layout

        check_layout(name, entry.layout, src)
    path = pin_entry(name, sha, size)
    if file is not None:
        store.add_file(get_entry(name), src, move=False, sha256=sha, size=size)
    else:
        store.write_ref(name, sha)
    return {"name": name, "sha256": sha, "size": size, "lock": str(path)}


def verify(names: list[str] | None = None) -> list[dict]:
    """Re-hash cached files (all entries, or ``names``); bad files are deleted.

    Returns:
        One ``{"name", "status", "path", "detail"}`` per entry; status ``ok`` / ``missing`` / ``bad``.
    """
    from soundedit.weights import store

    lock = load_lock()
    entries = [lock.get(n) for n in names] if names else list(lock)
    report = []
    for entry in entries:
        status, path, detail = store.verify_cached(entry)
        report.append({"name": entry.name, "status": status, "path": path, "detail": detail})
    return report


def missing_message(entry: WeightsEntry, reason: str) -> str:
    """The one-line message for a file that is absent: why, where to get it, where to put it."""
    size = f"{entry.size / 1e6:.1f} MB" if entry.size else "size unknown"
    return f"weights {entry.name!r} ({entry.file}, {size}) is not in the cache and {reason}. {_instructions(entry)}"


def _instructions(entry: WeightsEntry) -> str:
    mirrors = " or ".join(entry.urls)
    check = f" (sha256 {entry.sha256})" if entry.sha256 else ""
    return (f"Download it from {mirrors}{check} and put it at {incoming_path(entry)}, "
            f"or run `soundedit weights import {entry.name} /path/to/{entry.file}`")


def _missing(entry: WeightsEntry, reason: str) -> WeightsMissingError:
    err = WeightsMissingError(missing_message(entry, reason))
    err.entry = entry  # for programs (the web app) that want the fields rather than the sentence
    err.target = incoming_path(entry)
    return err
