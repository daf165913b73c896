"""The web app's machinery without a browser: queue, workspace, upload checks, the gradio guard, the page's notices."""

from __future__ import annotations

import importlib.util
import os
import threading
import time

import numpy as np
import pytest

from soundedit.app.jobs import ImageTap, JobQueue, QueueFull, Workspace, check_sound, check_upload
from soundedit.errors import AudioError, InputError


def test_queue_positions_are_first_come_first_served():
    q = JobQueue(concurrency=1, max_queue=2)
    a, b, c = q.enter(), q.enter(), q.enter()
    assert (a.position, b.position, c.position) == (0, 1, 2)
    with pytest.raises(QueueFull, match="busy: 1 edit\\(s\\) running and 2 waiting"):
        q.enter()
    b.leave()  # a waiting job gives up: the one behind moves up
    assert c.position == 1
    a.leave()
    assert c.position == 0 and q.counts() == (1, 0)
    c.leave()
    c.leave()  # idempotent
    assert q.counts() == (0, 0) and c.position == -1


def test_queue_concurrency_and_wait_wakes_up():
    q = JobQueue(concurrency=2, max_queue=1)
    a, b, c = q.enter(), q.enter(), q.enter()
    assert (a.position, b.position, c.position) == (0, 0, 1)
    seen = []
    waiter = threading.Thread(target=lambda: seen.append(c.wait(60.0)))
    waiter.start()
    a.leave()
    waiter.join(60)
    assert seen == [0]  # woken by the free slot, not by the timeout


@pytest.mark.parametrize("kwargs", [{"concurrency": 0}, {"max_queue": -1}])
def test_queue_rejects_bad_settings(kwargs):
    with pytest.raises(InputError):
        JobQueue(**kwargs)


def test_workspace_cleans_old_and_excess_jobs(tmp_path):
    ws = Workspace(tmp_path / "ws", keep_seconds=100, keep_jobs=3)
    jobs = [ws.new_job() for _ in range(3)]
    old = time.time() - 1000
    os.utime(jobs[0], (old, old))
    removed = ws.cleanup()
    assert removed == [jobs[0]] and not jobs[0].exists()
    more = [ws.new_job() for _ in range(3)]  # each new job keeps at most keep_jobs - 1 older ones
    assert len(list(ws.jobs_dir.iterdir())) == 3 and more[-1].exists()
    ws.remove()
    assert not (tmp_path / "ws").exists()


def test_upload_checks_name_file_and_limits(tmp_path):
    import soundfile as sf

    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 3000)
    with pytest.raises(InputError, match=r"W\+ file: 'big.bin' is 3.0 kB; the limit is 1.0 kB"):
        check_upload(big, what="W+ file", max_bytes=1000)
    with pytest.raises(InputError, match="did not arrive"):
        check_upload(tmp_path / "gone.pt", what="W+ file", max_bytes=1000)

    text = tmp_path / "notes.wav"
    text.write_text("not sound\n" * 20)
    with pytest.raises(AudioError) as err:
        check_sound(text, what="sound", max_bytes=10**6, max_duration=10)
    assert "notes.wav: not a readable audio file" in str(err.value) and str(tmp_path) not in str(err.value)

    long = tmp_path / "long.wav"
    sf.write(long, np.zeros(8000 * 12, np.float32), 8000)
    with pytest.raises(AudioError, match="long.wav: the sound is 12.0 s long; this server takes sounds of up to 10 s"):
        check_sound(long, what="sound", max_bytes=10**7, max_duration=10)
    assert check_sound(long, what="sound", max_bytes=10**7, max_duration=20) == pytest.approx(12.0)

    click = tmp_path / "click.wav"  # too short to guide an edit (MIN_GUIDE_DURATION)
    sf.write(click, np.full(400, 0.5, np.float32), 8000)
    with pytest.raises(AudioError) as err:
        check_sound(click, what="sound", max_bytes=10**6, max_duration=10)
    assert str(err.value) == "sound: click.wav: 50.0 ms of audio (400 samples at 8000 Hz); expected at least 0.1 s, 800 samples"


def test_image_tap_keeps_images_per_thread():
    import torch

    class Space:
        embed_dim = 4

        def embed_image(self, image):
            return image.flatten(1)[:, :4]

    tap = ImageTap(Space())
    assert tap.embed_dim == 4
    x = torch.ones(1, 3, 2, 2)
    tap.embed_image(x)
    assert tap.last() is None  # not started: nothing kept
    tap.start()
    assert torch.equal(tap.embed_image(x), x.flatten(1)[:, :4])
    assert tap.last() is not None and torch.equal(tap.last(), x)
    other = []
    t = threading.Thread(target=lambda: other.append(tap.last()))
    t.start()
    t.join()
    assert other == [None]  # another user's thread sees nothing of this one
    tap.stop()
    assert tap.last() is None


def test_missing_gradio_is_named(monkeypatch):
    import soundedit.app as app_pkg
    from soundedit.cli.main import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else real(name, *a))
    with pytest.raises(InputError, match=r"'gradio' package.*soundedit\[app\]"):
        app_pkg.require_gradio()
    assert main(["serve", "--port", "7861"]) == 2


def test_serve_checks_flags_before_starting(capsys):
    from soundedit.cli.main import main

    assert main(["serve", "--port", "0"]) == 2
    assert main(["serve", "--steps", "5", "--max-steps", "2"]) == 2
    assert "--steps: expected 1 to --max-steps (2), got 5" in capsys.readouterr().err
    assert main(["serve", "--max-steps", "0"]) == 2
    assert "--max-steps: expected an integer >= 1, got 0" in capsys.readouterr().err  # was "got None/0"
    assert main(["serve", "--max-duration", "0"]) == 2
    assert main(["serve", "--max-duration", "inf"]) == 2  # no limit is not a limit


def test_editor_cache_shares_models_and_taps_previews(tmp_path, formats_dir):
    from soundedit.app.jobs import EditorCache
    from soundedit.testing.clip import write_tiny_audio_encoder, write_tiny_openai_clip
    from soundedit.testing.generators import write_tiny_generator

    g = write_tiny_generator(tmp_path / "g.pt", size=32, style_dim=32, max_channels=16)
    g2 = write_tiny_generator(tmp_path / "g2.pt", size=32, style_dim=32, max_channels=16, seed=1)
    c = write_tiny_openai_clip(tmp_path / "clip.pt", image_size=32, patch_size=16, width=64, layers=1)
    e = write_tiny_audio_encoder(tmp_path / "enc.safetensors", arch="resnet10t")
    cache = EditorCache(device="cpu", identity=None)
    editor = cache.get(str(g), str(e), str(c))
    assert cache.get(str(g), str(e), str(c)) is editor and len(cache) == 1  # loaded once, shared
    assert cache.get(str(g2), str(e), str(c)) is not editor and len(cache) == 2

    previews = []

    def callback(step, losses):
        previews.append(editor.clip_space.last())

    editor.clip_space.start()
    try:
        result = editor.edit(audio=str(formats_dir / "cat.mp3"), source=0, steps=2, callback=callback)
    finally:
        editor.clip_space.stop()
    assert len(previews) == 2 and all(p is not None and p.shape == (1, 3, 32, 32) for p in previews)
    assert result.image.shape == (1, 3, 32, 32)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_names_a_port_in_use_and_a_bad_host():
    import socket

    from soundedit.app.jobs import check_address
    from soundedit.cli.main import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(InputError, match=f"--port: expected a free port, got {port}, which is already in use"):
            check_address("127.0.0.1", port)
        assert main(["serve", "--port", str(port)]) == 2  # refused before Gradio starts (it said "internal error")
    with pytest.raises(InputError, match="--host: expected an address or host name of this machine, got '999.1.1.1'"):
        check_address("999.1.1.1", _free_port())
    with pytest.raises(InputError, match="--host: expected an address of this machine to listen on, got '192.0.2.1'"):
        check_address("192.0.2.1", _free_port())  # TEST-NET-1: never this machine's
    assert main(["serve", "--host", "999.1.1.1"]) == 2
    check_address("127.0.0.1", _free_port())


@pytest.mark.skipif(importlib.util.find_spec("gradio") is None, reason="gradio is not installed (app extra)")
def test_serve_names_a_port_taken_while_the_page_was_built(monkeypatch, capsys, soundedit_home):
    """Another server takes the port between serve's check and Gradio's launch: still exit 2 naming
    --port (it was "internal error: OSError")."""
    import socket

    import soundedit.app.jobs
    from soundedit.cli.main import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        real_check = soundedit.app.jobs.check_address
        checks = []
        # the up-front check passes (the port was free then); the one after Gradio's failure sees it taken
        monkeypatch.setattr(soundedit.app.jobs, "check_address",
                            lambda host, p: checks.append(p) if not checks else real_check(host, p))
        monkeypatch.setattr("soundedit.app.ui.check_address", soundedit.app.jobs.check_address)
        assert main(["serve", "--port", str(port), "--device", "cpu"]) == 2
    assert checks == [port]
    assert f"--port: expected a free port, got {port}, which is already in use" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("gradio") is None, reason="gradio is not installed (app extra)")
def test_serve_removes_its_temp_folder_on_sigterm(tmp_path):
    import signal
    import socket
    import subprocess
    import sys

    tmp, home = tmp_path / "tmp", tmp_path / "home"
    tmp.mkdir()
    home.mkdir()
    port = _free_port()
    env = {**os.environ, "TMPDIR": str(tmp), "SOUNDEDIT_HOME": str(home), "SOUNDEDIT_OFFLINE": "1"}
    with open(tmp_path / "server.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "soundedit", "serve", "--port", str(port), "--device", "cpu"],
                                env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while True:  # no weights in this SOUNDEDIT_HOME: the page names them, the server still listens
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.5)
        assert len(list(tmp.glob("soundedit-app-*"))) == 1
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not list(tmp.glob("soundedit-app-*")), (tmp_path / "server.log").read_text()
