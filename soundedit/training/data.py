"""Datasets for alignment training: clips -> log-mel, an optional memory-mapped mel cache, a resumable sampler.

Log-mels are the clean layout of :class:`soundedit.audio.features.LogMel` for the
encoder's :class:`~soundedit.config.AudioConfig`: mono, resampled, cut/padded to
``duration`` by the config's deterministic crop/pad policy.  The cache stores
exactly these arrays (float16) in one ``.npy`` opened with ``mmap_mode="r"``, so
DataLoader workers share the pages instead of decoding audio every epoch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from soundedit.config import AudioConfig, to_dict
from soundedit.errors import InputError
from soundedit.training.manifest import ManifestRow

logger = logging.getLogger("soundedit")

_CACHE_VERSION = 1


def clip_waveform(row: ManifestRow, cfg: AudioConfig) -> torch.Tensor:
    """One manifest row -> mono ``(n,)`` float32 at ``cfg.sample_rate``, exactly ``cfg.duration`` seconds.

    Raises:
        AudioError: the file cannot be decoded (from :func:`soundedit.audio.load_audio`).
    """
    from soundedit.audio import features, load_audio

    # mono before resampling: one channel to resample instead of C (both are linear)
    wave = load_audio(row.audio, sample_rate=cfg.sample_rate, start=row.start, duration=row.duration, mono=True)
    return features.fix_length(wave.samples[0].float(), round(cfg.duration * cfg.sample_rate), crop=cfg.crop,
                               pad=cfg.pad)


class _MelFrontEnd:
    """A CPU :class:`LogMel` built on first use (so each DataLoader worker makes its own)."""

    def __init__(self, cfg: AudioConfig) -> None:
        self.cfg = cfg
        self._module = None

    def __call__(self, waves: torch.Tensor) -> torch.Tensor:
        """``(N, n)`` waveforms -> ``(N, n_mels, frames)`` log-mel."""
        if self._module is None:
            from soundedit.audio.features import LogMel

            self._module = LogMel(self.cfg).eval()
        with torch.no_grad():
            return self._module(waves)


def _fingerprint(rows: Sequence[ManifestRow], cfg: AudioConfig) -> str:
    # Audio settings + each file's identity (path, window, size, mtime): a changed file or
    # setting gives a new cache instead of stale features.
    h = hashlib.sha256(json.dumps({"v": _CACHE_VERSION, "audio": to_dict(cfg)}, sort_keys=True).encode())
    for r in rows:
        st = os.stat(r.audio)
        h.update(f"{r.audio}|{r.start}|{r.duration}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


class MelCache:
    """Pre-computed log-mels of a list of rows, memory-mapped: ``cache[i] -> (n_mels, frames)`` float32.

    Build or reuse one with :meth:`for_rows`.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._array: np.ndarray | None = None

    @property
    def array(self) -> np.ndarray:
        if self._array is None:  # opened lazily so the object pickles cheaply into workers
            self._array = np.load(self.path, mmap_mode="r")
        return self._array

    def __len__(self) -> int:
        return self.array.shape[0]

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.array[i], dtype=np.float32))

    def __getstate__(self) -> dict:
        return {"path": self.path, "_array": None}

    @classmethod
    def for_rows(cls, rows: Sequence[ManifestRow], cfg: AudioConfig, cache_dir: str | os.PathLike, *,
                 batch_size: int = 16) -> "MelCache":
        """Open the cache of exactly these rows and settings in ``cache_dir``, building it if absent.

        The file is named by a fingerprint of the settings and files, written
        atomically (an interrupted build leaves nothing to trust), with a JSON
        sidecar listing the rows.

        Args:
            rows: manifest rows (their audio must be readable: run ``check_audio`` first).
            cfg: the encoder's audio settings.
            cache_dir: folder for cache files.
            batch_size: clips per LogMel call while building.
        """
        from soundedit.fileio import atomic_open, write_json
        from soundedit.runtime import progress

        key = _fingerprint(rows, cfg)[:20]
        path = Path(cache_dir) / f"mels-{key}.npy"
        if path.is_file():
            logger.info("mel cache: reusing %s", path)
            return cls(path)
        front = _MelFrontEnd(cfg)
        # LogMel's shape for clip_waveform's fixed length: (n_mels, 1 + n // hop_length)
        shape = (len(rows), cfg.n_mels, 1 + round(cfg.duration * cfg.sample_rate) // cfg.hop_length)
        logger.info("mel cache: computing %d log-mels %s into %s", len(rows), shape[1:], path)
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        with atomic_open(path, "wb") as fh:
            np.lib.format.write_array_header_1_0(fh, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float16)),
                                                      "fortran_order": False, "shape": shape})
            with progress("mel cache", total=len(rows)) as bar:
                for s in range(0, len(rows), batch_size):
                    chunk = rows[s:s + batch_size]
                    mels = front(torch.stack([clip_waveform(r, cfg) for r in chunk]))
                    assert mels.shape[1:] == shape[1:], (tuple(mels.shape), shape)  # the header promised this
                    fh.write(mels.to(torch.float16).numpy().tobytes())
                    bar.advance(len(chunk))
        write_json(path.with_suffix(".json"), {"version": _CACHE_VERSION, "audio": to_dict(cfg), "shape": list(shape),
                                               "rows": [r.audio for r in rows]})
        return cls(path)


class ClipDataset(Dataset):
    """``dataset[i] -> (mel (n_mels, frames) float32, i)`` for manifest rows.

    Args:
        rows: manifest rows.
        cfg: the encoder's audio settings.
        cache: a :class:`MelCache` of exactly ``rows`` (else clips are decoded on the fly).
    """

    def __init__(self, rows: Sequence[ManifestRow], cfg: AudioConfig, *, cache: MelCache | None = None) -> None:
        if cache is not None and len(cache) != len(rows):
            raise InputError(f"mel cache {cache.path}: holds {len(cache)} clips, the manifest has {len(rows)}")
        self.rows, self.cfg, self.cache = list(rows), cfg, cache
        self._front = _MelFrontEnd(cfg)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if self.cache is not None:
            return self.cache[i], i
        return self._front(clip_waveform(self.rows[i], self.cfg)[None])[0], i


class EpochSampler(Sampler[list[int]]):
    """Batches of this rank's indices: a seeded permutation per epoch, resumable at any step.

    Epoch ``e`` shuffles all ``n`` rows with seed ``seed + e`` and cuts the permutation
    into global batches of ``batch_size`` (the last incomplete one is dropped so every
    InfoNCE batch has the same size).  Each global batch is cut into ``grad_accum``
    micro-batches and each micro-batch into ``world_size`` equal shards; this rank
    gets shard ``rank``.  So a global micro-batch is the same set of clips whatever
    the number of ranks.

    Args:
        n: number of rows.
        batch_size: global batch (divisible by ``grad_accum * world_size``).
        grad_accum: micro-batches per optimizer step.
        rank, world_size: this process's place.
        seed: base seed of the shuffles.
    """

    def __init__(self, n: int, *, batch_size: int, grad_accum: int = 1, rank: int = 0, world_size: int = 1,
                 seed: int = 0) -> None:
        if batch_size % (grad_accum * world_size):
            raise InputError(f"--batch-size: expected a multiple of --grad-accum x world size = {grad_accum * world_size}, "
                             f"got {batch_size}")
        if n < batch_size:
            raise InputError(f"--batch-size: the training set has only {n} clips, fewer than one batch of {batch_size}; "
                             "lower --batch-size")
        self.n, self.batch_size, self.grad_accum = n, batch_size, grad_accum
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.micro = batch_size // grad_accum
        self.shard = self.micro // world_size
        self.epoch, self.start_step = 0, 0

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch."""
        return self.n // self.batch_size

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        """Select the epoch's permutation and skip its first ``start_step`` optimizer steps (resume)."""
        self.epoch, self.start_step = epoch, start_step

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.start_step) * self.grad_accum

    def __iter__(self) -> Iterator[list[int]]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        perm = torch.randperm(self.n, generator=g).tolist()
        for step in range(self.start_step, self.steps_per_epoch):
            for m in range(self.grad_accum):
                lo = step * self.batch_size + m * self.micro + self.rank * self.shard
                yield perm[lo:lo + self.shard]


def eval_batches(n: int, batch_size: int) -> list[list[int]]:
    """Consecutive index batches covering ``range(n)`` (validation; the last may be short)."""
    return [list(range(s, min(s + batch_size, n))) for s in range(0, n, batch_size)]


