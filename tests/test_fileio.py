"""soundedit.fileio: atomic files (content, and the permissions a plain open() would have given), output
sets that replace an earlier set whole, and folder checks."""

from __future__ import annotations

import os
import re
import signal
import stat
import time

import pytest

from soundedit.errors import InputError
from soundedit.fileio import (SavedThenInterrupted, atomic_open, check_folder, output_set, write_bytes, write_json,
                              write_text)

OURS = {"a.txt", "b.txt", "report.json"}


def _save(folder, files: dict[str, str], *, fail_after: int | None = None) -> None:
    with output_set(folder, replaces=lambda name: name in OURS) as stage:
        for i, (name, text) in enumerate(files.items()):
            if i == fail_after:
                raise KeyboardInterrupt  # Ctrl-C in the middle of writing the set
            write_text(stage / name, text)


def _contents(folder) -> dict[str, str]:
    return {p.name: p.read_text() for p in folder.iterdir()}


def test_a_set_replaces_the_earlier_set_and_leaves_other_files(tmp_path):
    _save(tmp_path, {"a.txt": "1", "b.txt": "1", "report.json": "1"})
    (tmp_path / "notes.txt").write_text("mine")
    _save(tmp_path, {"a.txt": "2", "report.json": "2"})  # this run makes no b.txt: the old one must go
    assert _contents(tmp_path) == {"a.txt": "2", "report.json": "2", "notes.txt": "mine"}


def test_an_interrupted_save_leaves_the_earlier_set_untouched(tmp_path):
    _save(tmp_path, {"a.txt": "1", "b.txt": "1", "report.json": "1"})
    with pytest.raises(KeyboardInterrupt):
        _save(tmp_path, {"a.txt": "2", "b.txt": "2", "report.json": "2"}, fail_after=2)
    assert _contents(tmp_path) == {"a.txt": "1", "b.txt": "1", "report.json": "1"}  # no staging folder left


def test_a_folder_of_the_users_bearing_an_output_name_is_never_deleted(tmp_path):
    """A folder named like an output file (w_plus.pt/, report.json/) was removed with its contents."""
    (tmp_path / "w_plus.pt").mkdir()
    (tmp_path / "w_plus.pt" / "keep").write_text("mine")
    with pytest.raises(InputError, match=r"w_plus.pt': a folder where soundedit writes its output 'w_plus.pt'"):
        _save(tmp_path, {"w_plus.pt": "code", "report.json": "1"})
    assert (tmp_path / "w_plus.pt" / "keep").read_text() == "mine" and not (tmp_path / "report.json").exists()
    (tmp_path / "item-001").mkdir()  # claimed by name, but not an earlier set's folder (no report in it)
    (tmp_path / "item-001" / "keep").write_text("mine")
    with output_set(tmp_path, replaces=lambda name: name.startswith("item-")) as stage:
        write_text(stage / "item-000" / "report.json", "new")
    assert (tmp_path / "item-001" / "keep").is_file() and (tmp_path / "item-000" / "report.json").is_file()


def test_a_failed_first_save_leaves_no_empty_folder_but_keeps_an_existing_one(tmp_path):
    """A full disk on the first save into a new --out left an empty folder behind."""
    with pytest.raises(KeyboardInterrupt):
        _save(tmp_path / "new" / "out", {"a.txt": "1", "report.json": "1"}, fail_after=1)
    assert not (tmp_path / "new" / "out").exists()
    (tmp_path / "kept").mkdir()
    with pytest.raises(KeyboardInterrupt):
        _save(tmp_path / "kept", {"a.txt": "1", "report.json": "1"}, fail_after=1)
    assert (tmp_path / "kept").is_dir() and not list((tmp_path / "kept").iterdir())


@pytest.mark.skipif(os.name != "posix", reason="the sweep needs flock")
def test_staging_folders_of_killed_processes_are_swept_by_the_next_set(tmp_path):
    """A SIGKILL during a save leaves its staging folder (no cleanup runs); the next set in that folder
    removes it, but not one whose writer is alive (its lock is held), nor a fresh one without a lock file."""
    import fcntl
    import subprocess
    import sys

    killed = ("import os, signal, sys\n"
              "from soundedit.fileio import output_set, write_text\n"
              "with output_set(sys.argv[1], replaces=lambda name: False) as stage:\n"
              "    write_text(stage / 'edited.png', 'half-written')\n"
              "    os.kill(os.getpid(), signal.SIGKILL)\n")
    child = subprocess.run([sys.executable, "-c", killed, str(tmp_path)], capture_output=True)
    assert child.returncode == -signal.SIGKILL
    (dead,) = [p.name for p in tmp_path.iterdir()]
    assert (tmp_path / dead / "edited.png").exists()  # what a killed save leaves
    live, unlocked = tmp_path / ".staging-live", tmp_path / ".staging-nolock"
    write_text(live / ".lock", "")
    write_text(unlocked / "edited.png", "")
    with open(live / ".lock", "r+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # a writer still at work (another open file: flock conflicts)
        _save(tmp_path, {"a.txt": "1", "report.json": "1"})
    assert {p.name for p in tmp_path.iterdir()} == {"a.txt", "report.json", live.name, unlocked.name}
    # a folder without a lock file is being set up, or its writer died before taking the lock (a
    # SIGKILL in that instant): swept once older than the grace period
    old = time.time() - 120
    os.utime(unlocked, (old, old))
    _save(tmp_path, {"a.txt": "2", "report.json": "2"})  # (the "live" writer's lock is free by now too)
    assert {p.name for p in tmp_path.iterdir()} == {"a.txt", "report.json"}


@pytest.mark.skipif(os.name != "posix", reason="the sweep needs flock")
def test_a_live_set_holds_its_lock_from_the_start_and_does_not_ship_it(tmp_path):
    import fcntl

    with output_set(tmp_path, replaces=lambda name: False) as stage:
        assert sorted(p.name for p in stage.iterdir()) == [".lock"]  # renamed into place already locked
        with open(stage / ".lock", "rb") as probe, pytest.raises(BlockingIOError):
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        write_text(stage / "report.json", "1")
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


@pytest.mark.skipif(os.name != "posix", reason="the sweep needs flock")
def test_temp_files_of_killed_writers_are_swept_by_the_next_write_into_the_folder(tmp_path):
    """A SIGKILL mid-write leaves atomic_open's temp file; the first write into that folder (per process)
    deletes it once it is past the grace period, but not a live writer's (locked), a fresh one (it may
    not be locked yet) or a file that only looks similar."""
    import fcntl
    import subprocess
    import sys
    import time

    killed = ("import os, signal, sys\n"
              "from soundedit.fileio import atomic_open\n"
              "with atomic_open(sys.argv[1]) as fh:\n"
              "    fh.write(b'half a checkpoint')\n"
              "    fh.flush()\n"
              "    os.kill(os.getpid(), signal.SIGKILL)\n")
    child = subprocess.run([sys.executable, "-c", killed, str(tmp_path / "ckpt.pt")], capture_output=True)
    assert child.returncode == -signal.SIGKILL
    (dead,) = tmp_path.iterdir()
    assert dead.name.startswith(".ckpt.pt.") and dead.name.endswith(".soundedit.part")
    assert dead.read_bytes() == b"half a checkpoint"  # what a killed write leaves
    live, fresh = tmp_path / ".w.pt.abcd1234.soundedit.part", tmp_path / ".w.pt.efgh5678.soundedit.part"
    lookalike = tmp_path / ".notes.part"
    for p in (live, fresh, lookalike):
        p.write_bytes(b"x")
    old = time.time() - 3600
    for p in (dead, live, lookalike):
        os.utime(p, (old, old))
    with open(live, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # a writer still at work
        write_text(tmp_path / "report.json", "1")
    assert {p.name for p in tmp_path.iterdir()} == {"report.json", live.name, fresh.name, lookalike.name}
    os.utime(fresh, (old, old))
    write_text(tmp_path / "report.json", "2")  # once per folder and process: not listed again
    assert fresh.exists()


@pytest.mark.skipif(os.name != "posix", reason="needs flock")
def test_a_write_holds_its_temp_file_locked_until_renamed(tmp_path):
    import fcntl

    with atomic_open(tmp_path / "a.bin") as fh:
        fh.write(b"1")
        (part,) = tmp_path.iterdir()
        with open(part, "rb") as probe, pytest.raises(BlockingIOError):
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_folders_in_a_set_replace_earlier_folders(tmp_path):
    with output_set(tmp_path, replaces=lambda name: name.startswith("item-")) as stage:
        for i in range(3):
            write_text(stage / f"item-{i}" / "report.json", "old")
    with output_set(tmp_path, replaces=lambda name: name.startswith("item-")) as stage:
        write_text(stage / "item-0" / "report.json", "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["item-0"]
    assert (tmp_path / "item-0" / "report.json").read_text() == "new"


def test_ctrl_c_while_the_set_is_moved_in_waits_for_the_moves(tmp_path, monkeypatch):
    moved = []
    real_replace = os.replace

    def replace(src, dst):
        if os.path.dirname(dst) == str(tmp_path):  # moving the staged set in (not writing a staged file)
            if not moved:
                signal.raise_signal(signal.SIGINT)  # arrives during the first rename
            moved.append(os.path.basename(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(SavedThenInterrupted) as interrupted:  # a KeyboardInterrupt that says the set is in
        _save(tmp_path, {"a.txt": "1", "b.txt": "1", "report.json": "1"})
    assert isinstance(interrupted.value, KeyboardInterrupt) and interrupted.value.out == tmp_path
    assert moved == ["a.txt", "b.txt", "report.json"]  # report last, and the set complete
    assert _contents(tmp_path) == {"a.txt": "1", "b.txt": "1", "report.json": "1"}


def test_output_folder_checks(tmp_path):
    a_file = tmp_path / "f"
    a_file.write_text("x")
    with pytest.raises(InputError, match=r"--out: expected a folder, got '.*f' \(a file\)"):
        check_folder(a_file, "--out", writable=True)
    with pytest.raises(InputError, match=r"--out: expected a folder, got '.*f/sub/dir' \('.*f' is a file\)"):
        check_folder(a_file / "sub" / "dir", "--out", writable=True)
    assert check_folder(tmp_path / "new" / "deep", "--out", writable=True) == tmp_path / "new" / "deep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]  # checked, not created; the write check left nothing
    with pytest.raises(InputError, match=r"--out: expected a folder path, got ''"):  # not the current folder
        check_folder("", "--out", writable=True)
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(InputError, match="refuses new entries: Permission denied"):
            check_folder(locked / "out", "--out", writable=True)


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


def test_a_marked_output_folder_is_an_earlier_sets_and_a_users_folder_never_is(tmp_path):
    """An output folder of images (eval edits' images/) holds no report: marked by owned_folder, it is
    replaced on a re-run whatever appeared in it since (a .DS_Store). A folder of the user's is never
    removed, even when everything in it bears names the set claims (a photo item-003/source.png beside
    an edit's outputs): refused before anything moves, or left alone when the set does not write it."""
    from soundedit.fileio import OWNED_MARKER, check_set_entries, owned_folder

    def claims(name):
        return name in ("images", "report.json", "source.png") or name.startswith(("edit_", "item-"))

    for run in ("1", "2"):
        with output_set(tmp_path, replaces=claims) as stage:
            write_text(owned_folder(stage / "images") / f"edit_{run}.png", run)
            write_text(stage / "report.json", run)
        (tmp_path / "images" / ".DS_Store").write_text("finder")
    assert _contents(tmp_path / "images") == {"edit_2.png": "2", ".DS_Store": "finder", OWNED_MARKER: ""}
    # files of the user's put into a marked output folder: refused, not deleted with it
    (tmp_path / "images" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="expected no folder there"):
        check_set_entries(tmp_path, ["images"], replaces=claims, what="--out")
    (tmp_path / "images" / "notes.txt").unlink()
    (tmp_path / "images" / "edit_keep").mkdir()  # a claimed name, but a folder: not an output of the set
    with pytest.raises(InputError, match="expected no folder there"):
        with output_set(tmp_path, replaces=claims) as stage:
            write_text(owned_folder(stage / "images") / "edit_3.png", "3")
    assert (tmp_path / "images" / "edit_keep").is_dir() and (tmp_path / "images" / "edit_2.png").exists()

    users = tmp_path / "mine"
    for folder in (users / "images", users / "item-003", users / "item-004" / "item-000"):
        folder.mkdir(parents=True)
    (users / "images" / "edit_1.png").write_text("my picture")
    (users / "item-003" / "source.png").write_text("my photo")
    (users / "item-004" / "item-000" / "notes.txt").write_text("my notes")
    message = f"--out: {str(users / 'images')!r}: a folder where soundedit writes its output 'images'"
    with pytest.raises(InputError, match=re.escape(message)):
        check_set_entries(users, ["images", "report.json"], replaces=claims, what="--out")
    with pytest.raises(InputError, match="expected no folder there"):
        with output_set(users, replaces=claims) as stage:
            write_text(owned_folder(stage / "images") / "edit_3.png", "3")
    with output_set(users, replaces=claims) as stage:  # claimed names it does not write: left alone
        write_text(stage / "report.json", "new")
    assert _contents(users / "images") == {"edit_1.png": "my picture"}
    assert _contents(users / "item-003") == {"source.png": "my photo"}
    assert (users / "item-004" / "item-000" / "notes.txt").read_text() == "my notes"

