"""Atomic output files: content, and the permissions a plain open() would have given."""

from __future__ import annotations

import os
import stat

import pytest

from soundedit.fileio import write_bytes, write_json


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_new_output_gets_0666_minus_umask(tmp_path, umask_022):
    path = write_json(tmp_path / "report.json", {"a": 1})
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert path.read_text() == '{\n  "a": 1\n}\n'
    os.umask(0o077)
    assert stat.S_IMODE(write_bytes(tmp_path / "private.png", b"x").stat().st_mode) == 0o600


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_replaced_output_keeps_its_mode(tmp_path, umask_022):
    path = tmp_path / "weights.lock"
    path.write_text("old")
    path.chmod(0o664)
    write_bytes(path, b"new")
    assert path.read_bytes() == b"new" and stat.S_IMODE(path.stat().st_mode) == 0o664


def test_umask_is_read_without_changing_it(umask_022, monkeypatch):
    from soundedit import fileio

    assert fileio._umask() == 0o022
    calls = []
    monkeypatch.setattr(os, "umask", lambda m: calls.append(m) or 0o022)
    if os.path.exists("/proc/self/status"):
        assert fileio._umask() == 0o022 and calls == []  # read from /proc: never set, even for an instant
