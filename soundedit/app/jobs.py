"""What the web app needs besides its page: a fair job queue, shared models, limits and temp files.

Nothing here imports Gradio, so it is tested without a browser:

- :class:`JobQueue`: first come, first served, ``concurrency`` jobs at a time and at
  most ``max_queue`` waiting; a waiting job knows its position ("busy, position N").
- :class:`EditorCache`: one :class:`~soundedit.editing.Editor` per set of components,
  loaded once and shared by every user.
- :class:`ImageTap`: the per-step image an edit shows CLIP, kept for live previews.
- :class:`Workspace`: one private temp folder for everything the app writes
  (uploads, outputs), old job folders removed as new jobs come, all of it at exit.
- :func:`check_sound`, :func:`check_upload`: upload size and audio duration limits
  with messages that say what was expected and what was got.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from soundedit.errors import InputError, SoundeditError

logger = logging.getLogger("soundedit")


class QueueFull(SoundeditError):
    """Every running slot and every waiting place is taken."""


class JobCancelled(Exception):
    """Raised inside an edit's step callback to stop it when the user pressed Cancel."""


class JobQueue:
    """A first-come-first-served queue with ``concurrency`` running slots and ``max_queue`` waiting places.

    Args:
        concurrency: jobs that run at the same time (1 on a GPU: edits use all of it).
        max_queue: jobs that may wait; one more is refused with :class:`QueueFull`.
    """

    def __init__(self, *, concurrency: int = 1, max_queue: int = 8) -> None:
        if concurrency < 1:
            raise InputError(f"--concurrency: expected >= 1, got {concurrency}")
        if max_queue < 0:
            raise InputError(f"--max-queue: expected >= 0, got {max_queue}")
        self.concurrency, self.max_queue = concurrency, max_queue
        self._cond = threading.Condition()
        self._waiting: deque[int] = deque()
        self._running: set[int] = set()
        self._ids = itertools.count(1)

    def enter(self) -> "Ticket":
        """Join the queue (a job starts at once when a slot is free).

        Raises:
            QueueFull: ``max_queue`` jobs are already waiting.
        """
        with self._cond:
            if len(self._running) >= self.concurrency and len(self._waiting) >= self.max_queue:
                raise QueueFull(f"the server is busy: {len(self._running)} edit(s) running and {len(self._waiting)} "
                                f"waiting (the queue holds {self.max_queue}); please try again in a minute")
            ticket = Ticket(self, next(self._ids))
            self._waiting.append(ticket.id)
            self._promote()
            return ticket

    def _promote(self) -> None:
        # callers hold the lock: move the head of the line into free slots
        while self._waiting and len(self._running) < self.concurrency:
            self._running.add(self._waiting.popleft())
            self._cond.notify_all()

    def position(self, ticket_id: int) -> int:
        """0 while running, N >= 1 while N-1 jobs wait ahead of it, -1 once it left."""
        with self._cond:
            if ticket_id in self._running:
                return 0
            try:
                return self._waiting.index(ticket_id) + 1
            except ValueError:
                return -1

    def wait(self, ticket_id: int, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for the job to start (or its position to change); returns the position."""
        with self._cond:
            start = self.position(ticket_id)
            if start > 0:
                self._cond.wait_for(lambda: self.position(ticket_id) != start, timeout=timeout)
            return self.position(ticket_id)

    def leave(self, ticket_id: int) -> None:
        """Free the job's slot or waiting place (idempotent)."""
        with self._cond:
            self._running.discard(ticket_id)
            if ticket_id in self._waiting:
                self._waiting.remove(ticket_id)
            self._promote()
            self._cond.notify_all()

    def counts(self) -> tuple[int, int]:
        """``(running, waiting)``."""
        with self._cond:
            return len(self._running), len(self._waiting)


class Ticket:
    """One job's place in a :class:`JobQueue` (a context manager that always leaves)."""

    def __init__(self, queue: JobQueue, ticket_id: int) -> None:
        self.queue, self.id = queue, ticket_id

    @property
    def position(self) -> int:
        return self.queue.position(self.id)

    def wait(self, timeout: float) -> int:
        return self.queue.wait(self.id, timeout)

    def leave(self) -> None:
        self.queue.leave(self.id)

    def __enter__(self) -> "Ticket":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.leave()


class ImageTap:
    """A stand-in for a ``ClipSpace`` that keeps the last image each thread's edit showed CLIP.

    The optimisation embeds the current ``G(w)`` at every step, so this is the
    image of the step just taken; the app reads it in the step callback to show
    a live preview.  Everything else is the wrapped object's.  Taps are per
    thread, so users sharing one Editor never see each other's images.
    """

    def __init__(self, clip_space: Any) -> None:
        self._inner = clip_space
        self._local = threading.local()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def embed_image(self, image: Any) -> Any:
        if getattr(self._local, "active", False):
            self._local.last = image.detach()
        return self._inner.embed_image(image)

    def start(self) -> None:
        """Keep images from this thread (until :meth:`stop`)."""
        self._local.active, self._local.last = True, None

    def stop(self) -> None:
        self._local.active, self._local.last = False, None

    def last(self) -> Any:
        """The last ``(N, 3, H, W)`` image embedded by this thread, or ``None``."""
        return getattr(self._local, "last", None)


class EditorCache:
    """Editors by component set, loaded once and shared across users and jobs.

    Args:
        device: where models go (``auto``/``cpu``/``cuda``...).
        identity: IR-SE50 name or path (loaded lazily by the Editor when an edit uses it).
    """

    def __init__(self, *, device: str = "auto", identity: str | None = "ir-se50") -> None:
        self.device, self.identity = device, identity
        self._editors: dict[tuple[str, str, str], Any] = {}
        self._lock = threading.Lock()

    def get(self, generator: str, audio_encoder: str, clip: str) -> Any:
        """The Editor for these components (a name or path each), loading it on first use.

        Its ``clip_space`` is wrapped in an :class:`ImageTap` for live previews.

        Raises:
            WeightsMissingError, InputError, CheckpointError: as ``Editor.from_pretrained``.
        """
        key = (str(generator), str(audio_encoder), str(clip))
        with self._lock:  # one load at a time: two users asking for the same model load it once
            editor = self._editors.get(key)
            if editor is None:
                from soundedit.editing import Editor

                logger.info("loading models %s", key)
                editor = Editor.from_pretrained(generator=key[0], audio_encoder=key[1], clip=key[2],
                                                identity=self.identity, device=self.device)
                editor.clip_space = ImageTap(editor.clip_space)
                self._editors[key] = editor
            return editor

    def __len__(self) -> int:
        return len(self._editors)


class Workspace:
    """The app's private temp folder: uploads (Gradio's cache) and one folder per job.

    Args:
        root: the folder to use (created); default a fresh ``soundedit-app-*`` temp folder.
        keep_seconds: job folders older than this are removed when a new job starts.
        keep_jobs: at most this many job folders are kept (oldest removed first).
    """

    def __init__(self, root: str | os.PathLike | None = None, *, keep_seconds: float = 3600.0,
                 keep_jobs: int = 200) -> None:
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="soundedit-app-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.jobs_dir = self.root / "jobs"
        self.uploads_dir = self.root / "uploads"
        self.jobs_dir.mkdir(exist_ok=True)
        self.uploads_dir.mkdir(exist_ok=True)
        self.keep_seconds, self.keep_jobs = keep_seconds, keep_jobs
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def new_job(self) -> Path:
        """A fresh empty folder for one job's outputs (old ones are cleaned up first)."""
        self.cleanup()
        with self._lock:
            path = Path(tempfile.mkdtemp(prefix=f"job-{next(self._ids):05d}-", dir=self.jobs_dir))
        return path

    def cleanup(self, now: float | None = None) -> list[Path]:
        """Remove job folders past ``keep_seconds`` or beyond ``keep_jobs``; returns what was removed."""
        now = time.time() if now is None else now
        with self._lock:
            folders = sorted((p for p in self.jobs_dir.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
            old = [p for p in folders if now - p.stat().st_mtime > self.keep_seconds]
            excess = folders[:max(0, len(folders) - self.keep_jobs + 1)]
            removed = list(dict.fromkeys(old + excess))
            for p in removed:
                shutil.rmtree(p, ignore_errors=True)
        return removed

    def remove(self) -> None:
        """Delete the whole workspace (at shutdown)."""
        shutil.rmtree(self.root, ignore_errors=True)


def check_address(host: str, port: int) -> None:
    """Whether the server can listen on ``host:port``, tried with a socket before anything starts.

    Raises:
        InputError: naming ``--host`` (not an address of this machine, or not resolvable) or
            ``--port`` (in use, or not allowed).
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise InputError(f"--host: expected an address or host name of this machine, got {host!r} "
                         f"({getattr(exc, 'strerror', None) or exc})") from None
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does: TIME_WAIT is no conflict
        try:
            s.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise InputError(f"--port: expected a free port, got {port}, which is already in use on {host} "
                                 "(another server?); pick another --port") from None
            if exc.errno == errno.EACCES:
                raise InputError(f"--port: expected a port this user may open, got {port} ({exc.strerror}; "
                                 "ports below 1024 need root)") from None
            raise InputError(f"--host: expected an address of this machine to listen on, got {host!r} "
                             f"({exc.strerror or exc})") from None


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def check_upload(path: str | os.PathLike, *, what: str, max_bytes: int) -> Path:
    """An uploaded file that exists and is not over the size limit.

    Raises:
        InputError: missing or too large (the message gives both sizes).
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what}: the upload {p.name!r} did not arrive; please upload it again")
    size = p.stat().st_size
    if size > max_bytes:
        raise InputError(f"{what}: {p.name!r} is {_size(size)}; the limit is {_size(max_bytes)}")
    return p


def check_sound(path: str | os.PathLike, *, what: str, max_bytes: int, max_duration: float) -> float:
    """Check an uploaded sound: readable audio, within the size and duration limits.

    Messages name the file by its own name, never by the server's temp path.

    Returns:
        its duration in seconds.

    Raises:
        InputError / AudioError: not audio (the decoder's reason), too large, or longer
            than ``max_duration`` seconds.
    """
    from soundedit.audio import load_audio
    from soundedit.audio.io import MIN_GUIDE_DURATION, audio_info
    from soundedit.errors import AudioError

    p = check_upload(path, what=what, max_bytes=max_bytes)
    try:
        duration = float(audio_info(p)["duration"])
        if duration > max_duration:
            raise AudioError(f"{p.name}: the sound is {duration:.1f} s long; this server takes sounds of up to "
                             f"{max_duration:g} s (trim it, or ask the admin to raise --max-duration)")
        # decodes it all: catches files with a header but broken data, and sounds too short to guide an edit
        load_audio(p, max_duration=max_duration, min_duration=MIN_GUIDE_DURATION)
    except InputError as exc:
        raise type(exc)(f"{what}: {str(exc).replace(str(p), p.name)}") from None
    return duration
