"""Atomic output files and output folders.

Every file soundedit writes (images, W+ codes, reports, checkpoints, caches)
goes through :func:`atomic_open`: it is written to a temporary file in the same
folder and renamed into place only when complete, so an interrupted run never
leaves a half-written file where a finished one is expected.

A command's outputs (an edit's images, code and report) are one set: :func:`output_set`
writes them into a hidden staging folder and moves them in together, report last, so an
interrupted save leaves the previous run's set as it was rather than a mix of two runs.
:func:`check_folder` finds an unusable ``--out`` before any work is done.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from soundedit.errors import InputError

try:  # POSIX: writers hold flocks that tell their leftovers from live work; Windows has none, sweeps nothing
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


#: ``atomic_open``'s temp files: ``.<target name>.<8 random characters>.soundedit.part``
_PART_SUFFIX = ".soundedit.part"
_PART_NAME = re.compile(r"\..+\.[a-z0-9_]{8}" + re.escape(_PART_SUFFIX))
#: a temp file is an orphan once its writer's lock is free and it is older than this (covers the
#: instant between creating it and locking it)
_PART_GRACE_S = 60.0
_swept_folders: set[str] = set()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open ``path`` for writing through a temp file that is renamed into place on success.

    On an exception the temp file is removed and ``path`` is left untouched. The temp file is
    ``flock``-ed while it is written, so the first write into a folder (once per process) can delete
    the temp files of writers that were killed (SIGKILL, the OOM killer: no cleanup runs then).
    """
    if not any(m in mode for m in "wax"):
        raise ValueError(f"atomic_open: mode must write, got {mode!r}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    _sweep_orphaned_parts(target.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=_PART_SUFFIX, dir=target.parent)
    except OSError as exc:
        raise _about(exc, target) from None
    try:
        if fcntl is not None:
            with contextlib.suppress(OSError):  # a filesystem without locks: the sweep cannot lock it either
                fcntl.flock(fd, fcntl.LOCK_EX)
        # mkstemp creates the file 0600 whatever the umask; give it the mode open() would have
        # (an existing file's own mode, else 0666 & ~umask) so outputs stay readable as usual.
        os.chmod(tmp, _output_mode(target))
        with os.fdopen(fd, mode.replace("x", "w").replace("a", "w")) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
            if fcntl is not None:  # renamed while locked: a sweep never finds this name unlocked
                os.replace(tmp, target)
        if fcntl is None:  # Windows cannot rename an open file (and has no sweep to race)
            os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and (exc.filename == tmp or (exc.filename is None and exc.errno in _WRITE_ERRNOS)):
            raise _about(exc, target) from None
        raise


#: errors of a write with no file named (the disk, not the data): said about the output being written
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS}


def _about(exc: OSError, target: Path) -> OSError:
    """``exc`` (a full disk, a refused rename, a failed write: they name the hidden temp file, or no
    file) as an error about the output the user asked for."""
    return OSError(exc.errno, exc.strerror or str(exc), str(target))  # OSError(errno, ...) picks the subclass


def _sweep_orphaned_parts(folder: Path) -> None:
    """Delete the ``atomic_open`` temp files in ``folder`` that no live writer holds, once per
    folder and process (a folder may hold thousands of outputs: it is not listed on every write)."""
    key = os.path.abspath(folder)
    if fcntl is None or key in _swept_folders:
        return
    _swept_folders.add(key)
    now = time.time()
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            if not _PART_NAME.fullmatch(entry.name) or not entry.is_file(follow_symlinks=False):
                continue
            with contextlib.suppress(OSError):  # vanished, or not ours to open: leave it
                if now - entry.stat(follow_symlinks=False).st_mtime < _PART_GRACE_S:
                    continue
                with open(entry.path, "rb") as fh:
                    if _orphaned(fh):
                        os.unlink(entry.path)


@contextlib.contextmanager
def exclusive_lock(path: Path, *, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the lock file ``path`` (created if missing) for the block,
    waiting while another process holds it (``on_wait`` is called first, e.g. to log the wait).
    The kernel drops the lock when its holder dies, however it dies. Where there is no ``flock``
    (Windows) the block runs unguarded."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        if fcntl is None:  # pragma: no cover - Windows
            yield
            return
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


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
    p = Path(path)
    if not p.is_file():
        if p.is_dir():
            raise InputError(f"{what}: expected a file, got the folder {str(p)!r}")
        if p.exists():
            raise InputError(f"{what}: expected a regular file, got {str(p)!r} (a device, pipe or socket)")
        raise InputError(f"{what}: {str(p)!r} does not exist")
    return p


def read_text_file(path: str | os.PathLike, what: str, kind: str = "text") -> str:
    """The UTF-8 text of an input file (job lists, manifests, label lists), without a leading
    byte-order mark (Excel and Notepad write one; it would stick to the first column's name).

    Raises:
        InputError: it is missing or a folder, or it is not UTF-8 (named as ``what``, a ``kind`` file).
    """
    p = check_file(path, what)
    try:
        return p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{what}: expected a UTF-8 {kind} file, got {str(p)!r} with a non-UTF-8 byte "
                         f"at offset {exc.start}") from None


def check_csv_row(record: dict, n_fields: int, where: str) -> None:
    """Refuse a ``csv.DictReader`` record with more fields than the header's ``n_fields`` (the reader
    files the extras under ``None``: usually an unquoted comma inside a text), naming ``where``."""
    if None in record:
        raise InputError(f"{where}: {n_fields + len(record[None])} fields, header has {n_fields} "
                         "(quote values that contain commas: \"red, blue sky\")")


def check_columns_once(header: list[str], columns: Iterable[str], where: str) -> None:
    """Refuse a CSV header naming one of the ``columns`` read more than once: ``csv.DictReader`` would
    keep the last column of that name, silently dropping the others (columns not read may repeat)."""
    twice = next((c for c in columns if header.count(c) > 1), None)
    if twice is not None:
        raise InputError(f"{where}: expected each column once in the header, got {twice!r} {header.count(twice)} times")


def check_folder(path: str | os.PathLike, what: str, *, writable: bool = False) -> Path:
    """``path`` as a folder soundedit may create files under; returns it as a Path (not created).

    Checked before any work is done (an output folder), so the first write does not fail with a
    bare OSError after minutes of optimisation.

    Args:
        writable: also check that the nearest existing folder can be written to.

    Raises:
        InputError: ``path``, or the nearest existing folder above it, is a file, or (``writable``)
            cannot be written to; the message names ``what``, the setting or flag it came from.
    """
    if not str(path).strip():  # Path("") is the current folder: an empty --out would write there
        raise InputError(f"{what}: expected a folder path, got {str(path)!r}")
    folder = Path(path).expanduser()
    for p in (folder, *folder.parents):
        if p.exists():
            if not p.is_dir():
                got = "a file" if p == folder else f"{str(p)!r} is a file"
                raise InputError(f"{what}: expected a folder, got {str(path)!r} ({got})")
            if writable:
                _check_writable(p, what, path)
            break
    return folder


def _check_writable(folder: Path, what: str, given: str | os.PathLike) -> None:
    """Create and remove a folder in ``folder``, as the command will: mode bits do not tell (root passes
    ``os.access`` everywhere, and /proc or /sys refuse new entries whatever their bits say), so
    ``--out /proc/x`` got as far as the first write, and a bare "No such file or directory"."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".soundedit-write-check-", dir=folder))
    except OSError as exc:
        raise InputError(f"{what}: expected a folder soundedit can write to, got {str(given)!r} "
                         f"({str(folder)!r} refuses new entries: {exc.strerror or exc})") from None


def check_output_file(path: str | os.PathLike, what: str, expected: str) -> Path:
    """``path`` as a file soundedit will write (a manifest, an embeddings array), checked before any work.

    Raises:
        InputError: ``path`` is a folder or a device, or its folder is unusable (see :func:`check_folder`);
            the message names ``what`` and says what was expected (``expected``, e.g. "a .npy file path").
    """
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{what}: expected {expected}, got the folder {str(p)!r}")
    if p.exists() and not p.is_file():
        raise InputError(f"{what}: expected {expected}, got {str(p)!r} (a device, pipe or socket)")
    check_folder(p.parent, f"{what} {str(p)!r}", writable=True)
    return p


class SavedThenInterrupted(KeyboardInterrupt):
    """Ctrl-C arrived while :func:`output_set` moved a complete set in: it was held off until the set was
    in place, so a command saying "nothing was written" would be wrong. ``out``: the output folder."""

    def __init__(self, out: Path) -> None:
        super().__init__(str(out))
        self.out = out


#: staging folders of output sets inside the output folder, and the lock file each holds (see _lock_stage)
_STAGE_PREFIX = ".staging-"
_STAGE_LOCK = ".lock"


@contextlib.contextmanager
def output_set(out_dir: str | os.PathLike, *, replaces: Callable[[str], bool], last: str = "report.json"
               ) -> Iterator[Path]:
    """Write a set of outputs into ``out_dir`` as one.

    Yields a hidden staging folder inside ``out_dir`` to write the set into. When the block ends,
    the entries of ``out_dir`` that ``replaces(name)`` claims as an earlier set's are removed and the
    staged entries moved in (``last``, the report that marks a complete set, at the end) with
    Ctrl-C held off for those few renames. If the block raises (an interrupt included) the
    staging folder is deleted and ``out_dir`` keeps what it had.
    """
    out = Path(out_dir)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    _sweep_orphaned_stages(out)
    stage = Path(tempfile.mkdtemp(prefix=_STAGE_PREFIX, dir=out))
    lock = None
    saved = False
    try:
        lock = _lock_stage(stage)  # in the try: a Ctrl-C while it is taken still removes the stage
        yield stage
        staged = sorted((p for p in stage.iterdir() if p.name != _STAGE_LOCK), key=lambda p: (p.name == last, p.name))
        # before anything moves: out keeps what it had
        check_set_entries(out, [new.name for new in staged], replaces=replaces, last=last)
        try:
            with _interrupts_deferred():
                for old in [out / last, *sorted(p for p in out.iterdir() if replaces(p.name) and p.name != last)]:
                    if old.exists() and _earlier(old, replaces, last):
                        _remove(old)
                for new in staged:
                    if (out / new.name).is_dir():  # a folder is not replaced by a rename
                        _remove(out / new.name)
                    os.replace(new, out / new.name)
        except KeyboardInterrupt:  # held off until the last rename: the set is in place
            saved = True
            raise SavedThenInterrupted(out) from None
        saved = True
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if lock is not None:
            lock.close()
        if created and not saved:  # a failed first save (a full disk) leaves no empty folder behind
            with contextlib.suppress(OSError):
                out.rmdir()


def check_set_entries(out_dir: str | os.PathLike, names: Iterable[str], *, replaces: Callable[[str], bool],
                      last: str = "report.json", what: str = "") -> None:
    """Refuse an entry of ``out_dir`` named like an output of the set that no earlier set wrote (a folder of
    the user's bearing an output's name): :func:`output_set` would have to delete it.

    :func:`output_set` checks its staged names before anything moves; a command also calls this before
    any work with the names it knows then, so a clash is not found only after minutes of computing.

    Raises:
        InputError: naming ``what`` (the flag, e.g. ``"--out"``), the entry and the output it blocks.
    """
    out = Path(out_dir)
    for name in names:
        entry = out / name
        if entry.exists() and not _earlier(entry, replaces, last):
            raise InputError(f"{what + ': ' if what else ''}{str(entry)!r}: a folder where soundedit writes its "
                             f"output {name!r}; expected no folder there (move it, or choose another output folder)")


#: the file that marks a folder of outputs holding no report of its own (eval edits' images/) as a set's
OWNED_MARKER = ".soundedit-output"


def owned_folder(path: str | os.PathLike) -> Path:
    """Create the folder ``path`` for outputs, marked (:data:`OWNED_MARKER`) as the set's own, so that
    the next set replaces it whatever else (a .DS_Store) appeared in it since."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / OWNED_MARKER).touch()
    return folder


def _earlier(entry: Path, replaces: Callable[[str], bool], last: str) -> bool:
    """Whether ``entry`` is one an earlier set wrote: a file, an empty folder, a folder holding that set's
    report, or one bearing its :data:`OWNED_MARKER` that holds nothing else but files the set claims
    (``replaces``) and hidden files (a .DS_Store). Never a folder of the user's that happens to bear an
    output's name, whatever its contents are named (a user's ``item-003/source.png`` is not an edit's),
    nor an output folder the user put files of their own into (they would be deleted with it)."""
    if entry.is_symlink() or not entry.is_dir() or (entry / last).is_file() or not any(entry.iterdir()):
        return True
    return (entry / OWNED_MARKER).is_file() and holds_only(entry, replaces)


def holds_only(folder: Path, claims: Callable[[str], bool]) -> bool:
    """Whether ``folder`` holds nothing but plain files whose names ``claims`` and hidden files (a
    .DS_Store, :data:`OWNED_MARKER`): an output folder no one else has put anything into."""
    return all(c.name.startswith(".") or (claims(c.name) and c.is_file() and not c.is_symlink())
               for c in folder.iterdir())


def _lock_stage(stage: Path) -> IO | None:
    """An exclusive ``flock`` on ``stage/.lock``, held while the set is written. The kernel drops it
    when the process ends however it ends (SIGKILL and the OOM killer included: no ``finally`` runs
    then), so a later set can tell a dead writer's staging folder from a live one's, whatever host
    or pid namespace it runs in. ``None`` where there is no ``flock`` (Windows): no sweeping there."""
    if fcntl is None:
        return None
    fresh = stage / f"{_STAGE_LOCK}.new"
    fh = open(fresh, "w")
    fcntl.flock(fh, fcntl.LOCK_EX)
    os.replace(fresh, stage / _STAGE_LOCK)  # born locked: no sweep can find ".lock" free while we live
    return fh


def _sweep_orphaned_stages(out: Path) -> None:
    """Delete the staging folders in ``out`` whose lock no live process holds (left by a killed
    save). A folder without a lock file is being set up (its lock comes within microseconds), or was
    left by a writer killed before it took the lock: deleted once it is older than the temp files'
    grace period."""
    if fcntl is None:
        return
    for entry in out.iterdir():
        if not entry.name.startswith(_STAGE_PREFIX) or entry.is_symlink() or not entry.is_dir():
            continue
        try:
            fh = open(entry / _STAGE_LOCK, "rb")  # read-only: never creates a lock in another writer's folder
        except FileNotFoundError:
            with contextlib.suppress(OSError):
                if time.time() - entry.stat().st_mtime > _PART_GRACE_S:
                    shutil.rmtree(entry, ignore_errors=True)
            continue
        except OSError:
            continue
        with fh:
            if _orphaned(fh):
                shutil.rmtree(entry, ignore_errors=True)


def _orphaned(fh: IO) -> bool:
    """Whether the lock on the open file ``fh`` is free, i.e. its writer died (taken if so, and held
    until ``fh`` is closed, so the leftover is deleted before any new writer could lock it)."""
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # a live writer holds it (or the filesystem has no locks: nothing is known)
        return False
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold off SIGINT (Ctrl-C) for the block, then raise the KeyboardInterrupt it would have raised.
    Only the main thread can set signal handlers; elsewhere the block runs as is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received and callable(previous):
        previous(signal.SIGINT, received[0])  # Python's default handler raises KeyboardInterrupt


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
