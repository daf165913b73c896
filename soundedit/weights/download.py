"""Streaming, resumable, verified downloads (stdlib ``urllib``; no extra dependency).

One mirror at a time: the file is streamed into ``partial/<name>.part`` with a
progress bar; an interrupted transfer resumes with an HTTP ``Range`` request
(guarded by ``If-Range`` so a file that changed on the server restarts from 0);
the caller hashes the finished file before it is renamed into the cache.
Connection failures and HTTP errors give up on a mirror at once (so an
unreachable host fails in seconds); only transfers that were making progress
are retried.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

from soundedit.weights.lock import WeightsEntry

logger = logging.getLogger("soundedit.weights")

_CHUNK = 1 << 20
_USER_AGENT = "soundedit-weights/1 (+https://github.com/; python-urllib)"
_CONTENT_RANGE = re.compile(r"^bytes\s+(\d+)-(\d+)/(\d+|\*)$")


class _Restart(Exception):
    """The partial file was unusable and was discarded; start the transfer again."""


class MirrorFailed(Exception):
    """One URL could not deliver the file; ``reason`` is a short phrase for the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def transfer(url: str, part: Path, entry: WeightsEntry, *, timeout: float, retries: int,
             backoff: float = 0.5) -> bool:
    """Download ``url`` into ``part``, resuming what is already there.

    Args:
        url: one mirror.
        part: the ``.part`` file (kept on failure so the next call resumes).
        entry: the weights.lock entry (its size, when known, is checked up front).
        timeout: seconds for connecting and for each read.
        retries: how many times an interrupted transfer is resumed within this call.
        backoff: seconds to wait before the first resume (grows linearly).

    Returns:
        Whether any part of the file came from an earlier, resumed transfer (then a
        hash mismatch may be the old partial's fault rather than the server's).

    Raises:
        MirrorFailed: the URL failed (HTTP error, unreachable, wrong content, or
            interrupted more than ``retries`` times).
    """
    meta_path = part.with_name(part.name + ".json")
    if part.exists() and _read_meta(meta_path).get("url") != url and not entry.pinned:
        # An unpinned partial file from another mirror may be a different file: start again.
        part.unlink()
    attempt = 0
    resumed = False
    while True:
        offset = part.stat().st_size if part.exists() else 0
        try:
            resumed |= _one_request(url, part, meta_path, _read_meta(meta_path), entry, offset=offset, timeout=timeout)
            return resumed
        except _Restart as exc:
            attempt += 1
            if attempt > retries:
                raise MirrorFailed(str(exc)) from None
            logger.warning("download of %s: %s; starting again", entry.name, exc)
            continue
        except (OSError, http.client.HTTPException) as exc:  # timeouts, resets, IncompleteRead
            now = part.stat().st_size if part.exists() else 0
            reason = _describe(exc)
            if now <= offset:  # nothing arrived: the host is unreachable or refusing; do not wait on it
                raise MirrorFailed(reason) from None
            attempt += 1
            if attempt > retries:
                raise MirrorFailed(f"interrupted after {now} bytes ({reason}); run the fetch again to resume") from None
            logger.warning("download of %s interrupted after %d bytes (%s); resuming (%d/%d)",
                           entry.name, now, reason, attempt, retries)
            time.sleep(backoff * attempt)


def _one_request(url: str, part: Path, meta_path: Path, meta: dict, entry: WeightsEntry, *,
                 offset: int, timeout: float) -> bool:
    """One GET (ranged when ``offset``); returns whether it continued an existing partial file."""
    from soundedit.runtime import progress

    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        validator = meta.get("etag") or meta.get("last_modified")
        if validator and meta.get("url") == url:
            headers["If-Range"] = validator
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            # Range not satisfiable: our partial file is complete, or longer than the file now is.
            if entry.size is not None and offset == entry.size:
                return True
            length = _total_from_range(exc.headers.get("Content-Range", ""))
            if length is not None and offset == length:
                return True
            discard_partial(part)
            raise _Restart("the partial file did not fit the file on the server and was discarded") from None
        raise MirrorFailed(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise MirrorFailed(_describe(exc.reason if isinstance(exc.reason, BaseException) else exc)) from None
    with resp:
        ctype = resp.headers.get("Content-Type", "")
        if ctype.split(";")[0].strip().lower() == "text/html":
            raise MirrorFailed("served an HTML page instead of the file (the host may require a browser or a login)")
        if resp.status == 206 and offset:
            m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", "").strip())
            if not m or int(m.group(1)) != offset:
                discard_partial(part)
                raise _Restart(f"server resumed at the wrong place ({resp.headers.get('Content-Range')!r})")
            total = None if m.group(3) == "*" else int(m.group(3))
            mode = "ab"
        elif resp.status == 200:
            if offset:
                logger.info("server ignored the Range request for %s; downloading from the start", entry.name)
            offset = 0
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            mode = "wb"
        else:
            raise MirrorFailed(f"unexpected HTTP status {resp.status}")
        if entry.size is not None and total is not None and total != entry.size:
            raise MirrorFailed(f"server offers {total} bytes, weights.lock expects {entry.size}")
        meta = {"url": url, "etag": resp.headers.get("ETag"), "last_modified": resp.headers.get("Last-Modified")}
        _write_meta(meta_path, meta)
        with open(part, mode) as fh, progress(f"fetching {entry.name}", total=total) as bar:
            bar.update(completed=offset)
            done = offset
            while chunk := resp.read(_CHUNK):
                fh.write(chunk)
                done += len(chunk)
                bar.advance(len(chunk))
                bar.update(postfix=f"{done / 1e6:.1f} MB")
            fh.flush()
            os.fsync(fh.fileno())
        if total is not None and done < total:
            raise ConnectionResetError(f"connection closed after {done} of {total} bytes")
        return mode == "ab"


def discard_partial(part: Path) -> None:
    """Remove a ``.part`` file and its resume metadata."""
    for p in (part, part.with_name(part.name + ".json")):
        p.unlink(missing_ok=True)


def _total_from_range(value: str) -> int | None:
    m = re.match(r"^bytes\s+\*/(\d+)$", value.strip())
    return int(m.group(1)) if m else None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, OSError) and exc.strerror:
        return str(exc.strerror)
    return str(exc) or type(exc).__name__


def _read_meta(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_meta(path: Path, meta: dict) -> None:
    from soundedit.fileio import write_json

    write_json(path, meta)
