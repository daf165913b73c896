"""Downloads against a real HTTP server on 127.0.0.1: verify, resume, fail clearly, cache."""

from __future__ import annotations

import hashlib
import logging

import pytest

from soundedit import weights
from soundedit.errors import InputError, WeightsError, WeightsMissingError


def _blobs(home):
    return sorted(p for p in (home / "weights" / "blobs").rglob("*") if p.is_file()) if (home / "weights" / "blobs").exists() else []


def _partials(home):
    d = home / "weights" / "partial"
    return sorted(p.name for p in d.iterdir() if p.suffix in (".part", ".json")) if d.exists() else []


def test_fetch_verifies_and_second_fetch_is_a_cache_hit(test_lock, soundedit_home):
    _, server, payload = test_lock
    sha = hashlib.sha256(payload).hexdigest()
    path = weights.fetch("good")
    assert path == soundedit_home / "weights" / "blobs" / sha / "good.bin"
    assert path.read_bytes() == payload
    assert _partials(soundedit_home) == []
    n = len(server.requests)
    assert weights.fetch("good") == path
    assert weights.resolve("good") == path
    assert len(server.requests) == n  # no request: served from the cache


def test_sha256_mismatch_leaves_nothing_usable(test_lock, soundedit_home, monkeypatch):
    _, _, payload = test_lock
    with pytest.raises(WeightsError) as info:
        weights.fetch("bad")
    msg = str(info.value)
    assert "expected sha256 " + "0" * 64 in msg and hashlib.sha256(payload).hexdigest() in msg
    assert "deleted" in msg and "soundedit weights import bad" in msg
    assert not isinstance(info.value, WeightsMissingError)
    assert _blobs(soundedit_home) == [] and _partials(soundedit_home) == []
    monkeypatch.setenv("SOUNDEDIT_OFFLINE", "1")
    with pytest.raises(WeightsMissingError):
        weights.resolve("bad")


def test_size_disagreement_is_refused_before_downloading(test_lock, soundedit_home):
    with pytest.raises(WeightsMissingError, match=r"server offers 3000000 bytes, weights.lock expects 3000001"):
        weights.fetch("wrong-size")
    assert _blobs(soundedit_home) == []


def test_interrupted_transfer_resumes_with_range(test_lock, soundedit_home):
    _, server, payload = test_lock
    server.cuts["/cut.bin"] = 1
    path = weights.fetch("cut", retries=2)
    assert path.read_bytes() == payload
    gets = [r for r in server.requests if r[0] == "/cut.bin"]
    assert len(gets) == 2
    assert gets[0][1] is None
    assert gets[1][1] == f"bytes={len(payload) // 3}-" and gets[1][2] == '"v1"'  # resumed where it broke


def test_interrupted_download_resumes_on_the_next_call(test_lock, soundedit_home):
    _, server, payload = test_lock
    server.cuts["/cut2.bin"] = 1
    with pytest.raises(WeightsMissingError, match="interrupted after 1000000 bytes"):
        weights.fetch("cut2", retries=0)
    part = soundedit_home / "weights" / "partial" / "cut2.part"
    assert part.stat().st_size == len(payload) // 3
    assert _blobs(soundedit_home) == []  # a partial file is never visible as the weights
    path = weights.fetch("cut2", retries=0)
    assert path.read_bytes() == payload
    assert server.requests[-1][1] == f"bytes={len(payload) // 3}-"
    assert not part.exists()


def test_server_ignoring_range_restarts_from_zero(test_lock, soundedit_home):
    _, server, payload = test_lock
    server.cuts["/norange.bin"] = 1
    path = weights.fetch("norange", retries=1)
    assert path.read_bytes() == payload


@pytest.mark.parametrize(("name", "status"), [("gone", "HTTP 404"), ("broken", "HTTP 500")])
def test_http_errors_fail_with_instructions(test_lock, soundedit_home, name, status):
    _, server, _ = test_lock
    with pytest.raises(WeightsMissingError) as info:
        weights.fetch(name)
    msg = str(info.value)
    assert status in msg
    assert str(soundedit_home / "weights" / "incoming" / f"{name}.bin") in msg
    assert f"soundedit weights import {name}" in msg
    assert len(server.requests) == 1  # an HTTP error is not retried
    assert _blobs(soundedit_home) == []


def test_mirrors_are_tried_in_order(test_lock, soundedit_home):
    _, server, payload = test_lock
    path = weights.fetch("mirrored")
    assert path.read_bytes() == payload
    assert [r[0] for r in server.requests] == ["/404.bin", "/good.bin"]


def test_unreachable_host_fails_with_put_it_here_message(test_lock, soundedit_home):
    with pytest.raises(WeightsMissingError) as info:
        weights.resolve("unreachable")
    msg = str(info.value)
    assert "connection refused" in msg.lower()
    assert "/good.bin" in msg  # the URL to get it from
    assert f"put it at {soundedit_home / 'weights' / 'incoming' / 'unreachable.bin'}" in msg
    assert info.value.target == soundedit_home / "weights" / "incoming" / "unreachable.bin"


def test_offline_never_touches_the_network(test_lock, soundedit_home, monkeypatch):
    _, server, _ = test_lock
    monkeypatch.setenv("SOUNDEDIT_OFFLINE", "1")
    with pytest.raises(WeightsMissingError, match="SOUNDEDIT_OFFLINE=1"):
        weights.resolve("good")
    assert server.requests == []


def test_html_page_is_not_taken_for_the_file(test_lock, soundedit_home):
    with pytest.raises(WeightsMissingError, match="HTML page"):
        weights.fetch("html")
    assert _blobs(soundedit_home) == []


def test_unpinned_entry_downloads_with_a_warning_then_pin_records_it(test_lock, soundedit_home, caplog):
    lock_file, _, payload = test_lock
    before = lock_file.read_text()
    with caplog.at_level(logging.WARNING, logger="soundedit.weights"):
        path = weights.fetch("unpinned")
    assert path.name == "unpinned.pt" and path.read_bytes() == payload
    assert "soundedit weights pin unpinned" in caplog.text
    assert weights.resolve("unpinned") == path  # found again through refs/ without a hash in the lock

    result = weights.pin("unpinned")
    sha = hashlib.sha256(payload).hexdigest()
    assert result["sha256"] == sha and result["size"] == len(payload)
    entry = weights.load_lock().get("unpinned")
    assert entry.sha256 == sha and entry.size == len(payload)
    after = lock_file.read_text()
    # only the two lines changed; comments and the rest are kept
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines()) if a != b]
    assert len(changed) == 2 and len(before.splitlines()) == len(after.splitlines())
    assert changed[0][1] == f'sha256 = "{sha}"  # pinned'
    assert changed[1][1] == f"size = {len(payload)}"
    assert weights.resolve("unpinned") == path


def test_pin_refuses_to_replace_a_different_hash(test_lock, soundedit_home, tmp_path):
    other = tmp_path / "other.bin"
    other.write_bytes(b"not the file")
    with pytest.raises(InputError, match="already pinned"):
        weights.pin("good", file=other)
    assert weights.load_lock().get("good").size == 3_000_000


def test_import_verifies_the_file(test_lock, soundedit_home, tmp_path, monkeypatch):
    _, server, payload = test_lock
    monkeypatch.setenv("SOUNDEDIT_OFFLINE", "1")
    wrong = tmp_path / "wrong.bin"
    wrong.write_bytes(payload[:-1] + b"x")
    with pytest.raises(InputError, match="expected sha256"):
        weights.import_file("good", wrong)
    assert _blobs(soundedit_home) == []
    right = tmp_path / "right.bin"
    right.write_bytes(payload)
    path = weights.import_file("good", right)
    assert path.read_bytes() == payload and right.exists()  # copied, not moved
    assert weights.resolve("good") == path
    assert server.requests == []


def test_file_dropped_in_incoming_is_verified_and_used(test_lock, soundedit_home, monkeypatch):
    _, _, payload = test_lock
    monkeypatch.setenv("SOUNDEDIT_OFFLINE", "1")
    with pytest.raises(WeightsMissingError) as info:
        weights.resolve("good")
    target = info.value.target
    target.parent.mkdir(parents=True)
    target.write_bytes(payload)
    path = weights.resolve("good")
    assert path.read_bytes() == payload and not target.exists()
    assert path.parent.name == hashlib.sha256(payload).hexdigest()


def test_resolve_local_paths_and_unknown_names(test_lock, soundedit_home, tmp_path):
    local = tmp_path / "model.pt"
    local.write_bytes(b"x")
    assert weights.resolve(local) == local
    assert weights.resolve(str(local)) == local
    with pytest.raises(InputError, match=r"did you mean: good"):
        weights.resolve("goood")
    with pytest.raises(InputError) as err:  # a loader does not know the flag: "weights" stands for it
        weights.resolve(tmp_path / "missing.pt")
    assert str(err.value) == (f"weights: expected an existing checkpoint file or a weights.lock name, got "
                              f"{str(tmp_path / 'missing.pt')!r}; `soundedit weights list` shows the names")


def test_check_name_names_the_option_and_never_touches_the_cache(test_lock, soundedit_home, tmp_path):
    """The commands check their weights options with it, so the error says which option was wrong."""
    local = tmp_path / "model.pt"
    local.write_bytes(b"x")
    assert weights.check_name(str(local), "--clip") == local
    assert weights.check_name("good", "--clip") == weights.get_entry("good")
    assert not (soundedit_home / "weights").exists()  # neither downloaded nor looked up in the cache
    expected = "expected an existing checkpoint file or a weights.lock name, got"
    for value, what, message in (
            ("goood", "-g/--generator", f"-g/--generator: {expected} 'goood' (did you mean: good?); "
                                        "`soundedit weights list` shows the names"),
            ("/missing.pth", "--lpips", f"--lpips: {expected} '/missing.pth'; `soundedit weights list` shows the names"),
            (str(tmp_path), "--encoder", f"--encoder: {expected} {str(tmp_path)!r} (a folder)"),
            ("/dev/null", "IN", f"IN: {expected} '/dev/null' (a device, pipe or socket)")):
        with pytest.raises(InputError) as err:
            weights.check_name(value, what)
        assert str(err.value) == message



def test_a_folder_bearing_a_weights_name_does_not_hide_the_name(test_lock, soundedit_home, tmp_path, monkeypatch):
    """`edit -g landscape-256 --out landscape-256` failed on its second run: the output folder in the
    current one was taken for the -g value ("(a folder)"). A name too long for a path is a name too."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "good").mkdir()
    assert weights.check_name("good", "-g") == weights.get_entry("good")
    for odd in ("g" * 300, "~nosuchuser-soundedit/g.pt"):  # too long for a path; a home that is nowhere
        with pytest.raises(InputError) as err:
            weights.check_name(odd, "-g")
        assert str(err.value) == (f"-g: expected an existing checkpoint file or a weights.lock name, got {odd!r}; "
                                  "`soundedit weights list` shows the names")


def test_verify_finds_and_removes_a_corrupted_file(test_lock, soundedit_home):
    path = weights.fetch("good")
    assert weights.verify(["good"])[0]["status"] == "ok"
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))
    report = weights.verify(["good"])[0]
    assert report["status"] == "bad" and "differs" in report["detail"]
    assert not path.exists()
    assert weights.verify(["good"])[0]["status"] == "missing"


def test_complete_partial_file_is_verified_without_downloading_again(test_lock, soundedit_home):
    _, server, payload = test_lock
    part = soundedit_home / "weights" / "partial" / "good.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(payload)  # e.g. a process died between download and rename
    path = weights.fetch("good")
    assert path.read_bytes() == payload
    assert server.requests == [("/good.bin", f"bytes={len(payload)}-", None)]  # answered 416, nothing re-sent


def test_stale_partial_file_is_discarded_and_fetched_again(test_lock, soundedit_home):
    _, server, payload = test_lock
    part = soundedit_home / "weights" / "partial" / "good.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\0" * 1000)  # left over from an older, different file
    path = weights.fetch("good")
    assert path.read_bytes() == payload
    assert [r[1] for r in server.requests] == ["bytes=1000-", None]  # resumed, failed to verify, started over


@pytest.fixture
def generator_slot(tmp_path, monkeypatch, soundedit_home):
    """A weights.lock with one unpinned generator slot; returns its path."""
    text = ('version = 1\n[weights.gen]\nfile = "gen.pt"\nurls = ["http://127.0.0.1:9/gen.pt"]\n'
            'sha256 = "unknown"\nsize = "unknown"\nlayout = "rosinality-stylegan2-pt"\nlicence = "CC0"\n'
            'description = "test generator slot"\n')
    path = tmp_path / "weights.lock"
    path.write_text(text)
    monkeypatch.setenv("SOUNDEDIT_WEIGHTS_LOCK", str(path))
    monkeypatch.setenv("SOUNDEDIT_OFFLINE", "1")
    return path


def test_unpinned_import_and_pin_check_the_slots_kind(generator_slot, soundedit_home, tmp_path):
    from soundedit.testing.generators import write_tiny_generator

    text = tmp_path / "text.wav"
    text.write_text("hello, this is no generator\n")
    before = generator_slot.read_text()
    with pytest.raises(InputError, match=rf"{text} is not weights 'gen' \(layout rosinality-stylegan2-pt\): "
                                         r"not a StyleGAN2 generator: .* got text"):
        weights.import_file("gen", text)
    with pytest.raises(InputError, match="is not weights 'gen'"):
        weights.pin("gen", file=text)
    assert _blobs(soundedit_home) == [] and generator_slot.read_text() == before  # nothing cached, nothing pinned
    good = write_tiny_generator(tmp_path / "g.pt", size=8, style_dim=16, max_channels=16)
    assert weights.import_file("gen", good).read_bytes() == good.read_bytes()
    assert weights.pin("gen")["sha256"] == hashlib.sha256(good.read_bytes()).hexdigest()


@pytest.mark.parametrize("var, value, message", [
    ("SOUNDEDIT_OFFLINE", "maybe", "SOUNDEDIT_OFFLINE: expected one of 0, 1, false, true, no, yes, off, on, got 'maybe'"),
    ("SOUNDEDIT_TIMEOUT", "-1", "SOUNDEDIT_TIMEOUT: expected a positive number of seconds, got '-1'"),
    ("SOUNDEDIT_TIMEOUT", "soon", "SOUNDEDIT_TIMEOUT: expected a positive number of seconds, got 'soon'"),
])
def test_bad_network_settings_are_errors(test_lock, soundedit_home, monkeypatch, var, value, message):
    monkeypatch.setenv(var, value)
    for call in (lambda: weights.fetch("good"), lambda: weights.resolve("good")):
        with pytest.raises(InputError) as err:
            call()
        assert str(err.value) == message
    _, server, _ = test_lock
    assert server.requests == []
