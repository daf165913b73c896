"""Embedding cache: keyed by file content and encoder weights; failures kept with reasons."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from soundedit.errors import AudioError
from soundedit.evaluation.embeddings import embed_files, encoder_fingerprint


class _ByteEncoder(torch.nn.Module):
    """Stand-in encoder: the model input is a byte histogram; 'bad' files fail to decode."""

    embed_dim = 4

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(256, 4)
        torch.nn.init.normal_(self.proj.weight, generator=torch.Generator().manual_seed(seed))
        self.prepared = 0

    def prepare(self, data: bytes, *, device=None) -> torch.Tensor:
        if data.startswith(b"bad"):
            raise AudioError("audio: cannot decode (not a sound file)")
        self.prepared += 1
        return torch.bincount(torch.tensor(list(data)), minlength=256).float()[None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


def test_cache_hits_misses_and_failures(tmp_path):
    files = []
    for name, data in [("a.wav", b"hello"), ("b.wav", b"world!"), ("bad.wav", b"bad bytes"), ("empty.wav", b"")]:
        files.append(tmp_path / name)
        files[-1].write_bytes(data)
    files.append(tmp_path / "absent.wav")
    enc = _ByteEncoder()
    first = embed_files(enc, files, cache_dir=tmp_path / "cache", batch_size=1)
    assert first.ok == [0, 1] and first.cache_hits == 0 and enc.prepared == 2
    assert set(first.failures) == {2, 3, 4}
    assert "cannot decode" in first.failures[2] and "empty" in first.failures[3] and "cannot read" in first.failures[4]

    second = embed_files(enc, files, cache_dir=tmp_path / "cache")
    assert second.cache_hits == 2 and enc.prepared == 2  # nothing decoded again
    torch.testing.assert_close(torch.from_numpy(second.embeddings), torch.from_numpy(first.embeddings))

    files[0].write_bytes(b"changed")  # new content -> new key
    third = embed_files(enc, files[:2], cache_dir=tmp_path / "cache")
    assert third.cache_hits == 1 and enc.prepared == 3

    other = _ByteEncoder(seed=1)  # other weights -> other fingerprint -> no stale hits
    assert encoder_fingerprint(other) != encoder_fingerprint(enc)
    fourth = embed_files(other, files[:2], cache_dir=tmp_path / "cache")
    assert fourth.cache_hits == 0 and not torch.allclose(torch.from_numpy(fourth.embeddings),
                                                         torch.from_numpy(third.embeddings))


def test_decoding_failures_come_from_the_named_file(tmp_path):
    from soundedit.audio import load_audio

    class _Decoding(_ByteEncoder):
        def prepare(self, data, *, device=None):
            load_audio(data)  # raises: not audio

    path = tmp_path / "notes.wav"
    path.write_bytes(b"hello, these are notes, not audio")
    got = embed_files(_Decoding(), [path], cache_dir=None)
    # the reason is about the file (paired with it by every caller), never about "<bytes>"
    assert got.failures == {0: "not a readable audio file (Format not recognised); expected WAV, FLAC, Ogg "
                                "Vorbis or MP3 with a valid header"}


def test_devices_and_pipes_are_failures_not_endless_reads(tmp_path):
    """/dev/zero was read until memory ran out, and a FIFO without a writer blocked forever."""
    import os

    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    good = tmp_path / "a.wav"
    good.write_bytes(b"hello")
    got = embed_files(_ByteEncoder(), ["/dev/zero", fifo, tmp_path, good], cache_dir=None)
    assert got.ok == [3]
    assert got.failures == {i: "not a regular file (a folder, device, pipe or socket)" for i in (0, 1, 2)}


def _one_cached_file(tmp_path, data: bytes = b"hello"):
    """A file embedded once into a fresh cache: (encoder, file, cache dir, its single .npy entry, first result)."""
    path = tmp_path / "a.wav"
    path.write_bytes(data)
    cache = tmp_path / "cache"
    enc = _ByteEncoder()
    first = embed_files(enc, [path], cache_dir=cache)
    (entry,) = cache.rglob("*.npy")
    assert enc.prepared == 1
    return enc, path, cache, entry, first


@pytest.mark.parametrize("bad", [
    np.zeros(3, np.float32),                       # another length than the encoder's embed_dim (4)
    np.zeros((1, 4), np.float32),                  # 2-D
    np.array([0.5, np.nan, 0.1, 0.2], np.float32),  # not finite
    np.array([1, 2, 3, 4], np.int64),              # not float
    np.zeros(4, np.complex64),                     # not real
], ids=["length3", "2d", "nan", "int", "complex"])
def test_a_cache_entry_of_the_wrong_shape_dtype_or_values_is_a_miss_and_rewritten(bad, tmp_path, caplog):
    enc, path, cache, entry, first = _one_cached_file(tmp_path)
    np.save(entry, bad, allow_pickle=False)
    with caplog.at_level(logging.WARNING, logger="soundedit"):
        again = embed_files(enc, [path], cache_dir=cache)
    assert again.cache_hits == 0 and enc.prepared == 2  # recomputed, not trusted
    assert again.embeddings.shape == (1, 4)
    torch.testing.assert_close(torch.from_numpy(again.embeddings), torch.from_numpy(first.embeddings))
    assert any("ignoring" in r.getMessage() and str(entry) in r.getMessage() for r in caplog.records), caplog.text
    rewritten = np.load(entry)  # the entry is good again: the next run hits it
    assert rewritten.shape == (4,) and rewritten.dtype == np.float32
    third = embed_files(enc, [path], cache_dir=cache)
    assert third.cache_hits == 1 and enc.prepared == 2


def test_a_non_finite_embedding_is_never_cached(tmp_path, caplog):
    class _NaNEncoder(_ByteEncoder):
        def forward(self, x):
            out = super().forward(x)
            out[:, 1] = float("nan")
            return out

    path = tmp_path / "a.wav"
    path.write_bytes(b"hello")
    with caplog.at_level(logging.WARNING, logger="soundedit"):
        embed_files(_NaNEncoder(), [path], cache_dir=tmp_path / "cache")
    assert not list((tmp_path / "cache").rglob("*.npy"))
    assert any("not storing" in r.getMessage() for r in caplog.records), caplog.text
