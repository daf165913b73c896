"""Atomic output files.

Every file soundedit writes (images, W+ codes, reports, checkpoints, caches)
goes through :func:`atomic_open`: it is written to a temporary file in the same
folder and renamed into place only when complete, so an interrupted run never
leaves a half-written file where a finished one is expected.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open ``path`` for writing through a temp file that is renamed into place on success.

    On an exception the temp file is removed and ``path`` is left untouched.
    """
    if not any(m in mode for m in "wax"):
        raise ValueError(f"atomic_open: mode must write, got {mode!r}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        # mkstemp creates the file 0600 whatever the umask; give it the mode open() would have
        # (an existing file's own mode, else 0666 & ~umask) so outputs stay readable as usual.
        os.chmod(tmp, _output_mode(target))
        with os.fdopen(fd, mode.replace("x", "w").replace("a", "w")) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _output_mode(target: Path) -> int:
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        pass
    return 0o666 & ~_umask()


def _umask() -> int:
    # Linux shows the umask in /proc; setting it to read it back (the portable way) would, for an
    # instant, apply to files other threads create (the web app writes from several threads).
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o077)  # meanwhile, files other threads create are private rather than open to all
    os.umask(umask)
    return umask


def check_file(path: str | os.PathLike, what: str) -> Path:
    """``path`` as an input file; returns it as a Path.

    Raises:
        InputError: it does not exist, or it is a folder (or another non-file), naming ``what``
            (the argument or flag it came from).
    """
    from soundedit.errors import InputError

    p = Path(path)
    if not p.is_file():
        if p.is_dir():
            raise InputError(f"{what}: expected a file, got the folder {str(p)!r}")
        if p.exists():
            raise InputError(f"{what}: expected a regular file, got {str(p)!r} (a device, pipe or socket)")
        raise InputError(f"{what}: {str(p)!r} does not exist")
    return p


def check_folder(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a folder soundedit may create files under; returns it as a Path.

    Raises:
        InputError: ``path``, or the nearest existing folder above it, is a file (naming ``what``,
            the setting or flag it came from), so the first write does not fail with a bare OSError.
    """
    from soundedit.errors import InputError

    folder = Path(path).expanduser()
    for p in (folder, *folder.parents):
        if p.exists():
            if not p.is_dir():
                got = "a file" if p == folder else f"{str(p)!r} is a file"
                raise InputError(f"{what}: expected a folder, got {str(path)!r} ({got})")
            break
    return folder


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically write ``data`` to ``path``; returns the path."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write UTF-8 ``text`` to ``path``; returns the path."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON (non-finite floats become null)."""
    return write_text(path, json.dumps(_json_safe(obj), indent=2, sort_keys=False) + "\n")


def _json_safe(obj: Any) -> Any:
    import math

    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj
