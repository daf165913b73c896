"""Audio embeddings of many files, with per-file failures and an on-disk cache.

A clip's embedding is cached under the sha256 of the file's bytes and a
fingerprint of the encoder (its config and every weight), so a re-run over the
same data with the same encoder does no audio decoding or inference, while a
changed file or a different checkpoint can never hit a stale entry.  Files
that fail to decode are returned with their reason, never dropped silently.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from soundedit.errors import InputError, SoundeditError
from soundedit.fileio import write_bytes
from soundedit.runtime import progress

logger = logging.getLogger("soundedit")


def default_cache_dir() -> Path:
    """``$SOUNDEDIT_HOME/cache/embeddings`` (default home ``~/.cache/soundedit``, read on every call)."""
    from soundedit.weights.store import home_dir

    return home_dir() / "cache" / "embeddings"


#: The revision of what a file becomes before the encoder sees it (decoding, front end, which files are
#: refused), for the cache key beside ``soundedit.__version__``: bump it when that changes while the version
#: stays, so embeddings cached under the old rules become misses. 2: files shorter than one STFT window are
#: refused (they were embedded as padding).
INPUT_REVISION = 2


def encoder_fingerprint(encoder) -> str:
    """sha256 over an encoder's config and all its weights (hex, 64 chars).

    Args:
        encoder: an :class:`~soundedit.models.AudioEncoder` (anything with
            ``state_dict()``; ``config`` is included when present).
    """
    import torch

    from soundedit.config import to_dict

    import soundedit

    h = hashlib.sha256()
    # the version and the input revision stand for the audio front end's code, which shapes the model input too
    h.update(f"soundedit {soundedit.__version__} input {INPUT_REVISION}\n".encode())
    config = getattr(encoder, "config", None)
    h.update(json.dumps(to_dict(config) if config is not None else {}, sort_keys=True).encode())
    for key, tensor in sorted(encoder.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{key}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class EmbeddingCache:
    """``(file sha256, encoder fingerprint) -> (D,) float32`` as small ``.npy`` files.

    An entry is only trusted when it is what :meth:`put` writes: a finite 1-D float array of
    ``dim`` values.  Anything else (damaged, edited, written by another tool) is a miss, so the
    embedding is recomputed and the entry rewritten; a non-finite embedding is never written.

    Args:
        root: cache folder (created on first write); ``None`` disables caching.
        encoder_id: the encoder's fingerprint (see :func:`encoder_fingerprint`).
        dim: the encoder's ``embed_dim``; ``None`` when unknown (any length is then accepted).
    """

    def __init__(self, root: str | Path | None, encoder_id: str, dim: int | None = None) -> None:
        self.root = None if root is None else Path(root) / encoder_id[:24]
        self.dim = dim
        self.hits = 0

    def _problem(self, value: np.ndarray) -> str | None:
        """Why ``value`` is not a usable embedding (``None`` when it is)."""
        if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
            return f"expected a float array, got dtype {getattr(value, 'dtype', type(value).__name__)}"
        expected = "(D,)" if self.dim is None else f"({self.dim},)"
        if value.ndim != 1 or value.size == 0 or (self.dim is not None and value.shape[0] != self.dim):
            return f"expected shape {expected}, got {value.shape}"
        if not np.isfinite(value).all():
            return f"expected finite numbers, got {int((~np.isfinite(value)).sum())} NaN/inf value(s)"
        return None

    def _path(self, digest: str) -> Path:
        assert self.root is not None
        return self.root / digest[:2] / f"{digest}.npy"

    def get(self, digest: str) -> np.ndarray | None:
        if self.root is None:
            return None
        path = self._path(digest)
        if not path.is_file():
            return None
        try:
            value = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:  # a damaged entry is recomputed, not trusted
            logger.warning("embedding cache: ignoring unreadable %s (%s)", path, exc)
            return None
        problem = self._problem(value)
        if problem is not None:  # a stale or foreign entry is recomputed (and rewritten), not trusted
            logger.warning("embedding cache: ignoring %s (%s); recomputing it", path, problem)
            return None
        self.hits += 1
        return value.astype(np.float32, copy=False)

    def put(self, digest: str, value: np.ndarray) -> None:
        if self.root is None:
            return
        value = np.asarray(value, dtype=np.float32)
        problem = self._problem(value)
        if problem is not None:  # e.g. a NaN embedding: never stored, so a later run does not trust it
            logger.warning("embedding cache: not storing the embedding of %s (%s)", digest[:12], problem)
            return
        buf = io.BytesIO()
        np.save(buf, value, allow_pickle=False)
        write_bytes(self._path(digest), buf.getvalue())


@dataclass
class EmbeddedFiles:
    """Embeddings of the files that worked, and why the others failed.

    Attributes:
        embeddings: (M, D) float32, raw encoder outputs (not normalised), one row per ``ok`` index.
        ok: indices (into the input list) of the files that were embedded, in order.
        failures: ``{index: reason}`` for files that could not be read or decoded.
        digests: sha256 of every embedded file, aligned with ``ok``.
        cache_hits: how many rows came from the cache.
    """

    embeddings: np.ndarray
    ok: list[int]
    failures: dict[int, str] = field(default_factory=dict)
    digests: list[str] = field(default_factory=list)
    cache_hits: int = 0


def embed_files(
    encoder,
    paths: Sequence[str | Path],
    *,
    batch_size: int = 16,
    cache_dir: str | Path | None = None,
    encoder_id: str | None = None,
    device=None,
    description: str = "embedding",
) -> EmbeddedFiles:
    """Embed audio files with an audio encoder, batch by batch.

    Each file is read once: its bytes are hashed for the cache and handed to
    ``encoder.prepare`` (which picks the clean log-mel or the authors' compat
    transform), so a file that changes between runs is re-embedded.

    Args:
        encoder: :class:`~soundedit.models.AudioEncoder` (``prepare`` and ``forward``).
        paths: audio files.
        batch_size: clips per forward pass.
        cache_dir: embedding cache folder, or ``None`` for no cache.
        encoder_id: cache key of the encoder (computed with :func:`encoder_fingerprint` if omitted).
        device: device of the model input (default: the encoder's).
        description: progress-bar label.

    Returns:
        :class:`EmbeddedFiles`.
    """
    import torch

    if batch_size < 1:
        raise InputError(f"--batch-size: expected a positive integer, got {batch_size}")
    if cache_dir is not None and encoder_id is None:
        encoder_id = encoder_fingerprint(encoder)
    embed_dim = int(getattr(encoder, "embed_dim", 0) or 0) or None  # None: a stand-in encoder without one
    cache = EmbeddingCache(cache_dir, encoder_id or "", dim=embed_dim)
    rows: dict[int, np.ndarray] = {}
    digests: dict[int, str] = {}
    failures: dict[int, str] = {}
    pending: list[tuple[int, torch.Tensor]] = []

    def flush() -> None:
        if not pending:
            return
        with torch.no_grad():
            out = encoder(torch.cat([x for _, x in pending])).float().cpu().numpy()
        for (i, _), row in zip(pending, out):
            rows[i] = row
            cache.put(digests[i], row)
        pending.clear()

    was_training = getattr(encoder, "training", False)
    encoder.eval()
    try:
        with progress(description, total=len(paths)) as bar:
            for i, path in enumerate(paths):
                bar.advance()
                try:
                    if not stat.S_ISREG(os.stat(path).st_mode):  # /dev/zero would be read forever, a FIFO block
                        failures[i] = "not a regular file (a folder, device, pipe or socket)"
                        continue
                    data = Path(path).read_bytes()
                except OSError as exc:
                    failures[i] = f"cannot read: {exc.strerror or exc}"
                    continue
                if not data:
                    failures[i] = "empty file (0 bytes)"
                    continue
                digests[i] = hashlib.sha256(data).hexdigest()
                cached = cache.get(digests[i])
                if cached is not None:
                    rows[i] = cached
                    continue
                try:
                    from soundedit.audio.io import NamedBytes

                    # named, so a decoding error names the file rather than "<bytes>"
                    x = encoder.prepare(NamedBytes(data, str(path)), device=device)
                except SoundeditError as exc:  # undecodable/corrupt/unsupported audio: recorded, run goes on
                    # the reason alone: every caller pairs it with the file, which the message starts with
                    failures[i] = str(exc).removeprefix(f"{path}: ")
                    continue
                pending.append((i, x))
                if len(pending) >= batch_size:
                    flush()
            flush()
    finally:
        encoder.train(was_training)
    ok = sorted(rows)
    dim = embed_dim or (next(iter(rows.values())).shape[0] if rows else 0)
    emb = np.stack([rows[i] for i in ok]).astype(np.float32) if ok else np.zeros((0, dim), np.float32)
    if cache.root is not None:
        logger.info("embedding cache %s: %d hits, %d computed", cache.root, cache.hits, len(ok) - cache.hits)
    return EmbeddedFiles(embeddings=emb, ok=ok, failures=failures, digests=[digests[i] for i in ok],
                         cache_hits=cache.hits)
