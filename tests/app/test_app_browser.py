"""``soundedit serve`` driven in a real browser: Debian's Chromium, headless, through Playwright.

One server for the module (seeded tiny weights in their real layouts, a private
SOUNDEDIT_HOME and temp folder), two steps per edit.  The browser may only talk
to 127.0.0.1: every other request is recorded and refused, and the module
checks none was made.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
WAIT_MS = 120_000  # generous: the test machine is shared and slow
CHROME_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
N_LATENT, STYLE_DIM, SIZE = 8, 32, 32  # the tiny generator below: 32 px has 2·log2(32) − 2 = 8 W+ layers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A running ``soundedit serve`` with tiny seeded weights; yields its URL and folders."""
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (Debian package 'chromium')")
    pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed (dev extra)")
    pytest.importorskip("gradio", reason="gradio is not installed (app extra)")
    from soundedit.testing.clip import write_tiny_audio_encoder, write_tiny_openai_clip
    from soundedit.testing.generators import write_tiny_generator

    root = tmp_path_factory.mktemp("serve")
    weights = root / "weights"
    weights.mkdir()
    g = write_tiny_generator(weights / "g.pt", size=SIZE, style_dim=STYLE_DIM, max_channels=16)
    c = write_tiny_openai_clip(weights / "clip.pt", image_size=32, patch_size=16, width=64, layers=1)
    e = write_tiny_audio_encoder(weights / "enc.safetensors", arch="resnet10t")
    home, tmp = root / "home", root / "tmp"
    home.mkdir()
    tmp.mkdir()
    port = _free_port()
    env = {**os.environ, "SOUNDEDIT_HOME": str(home), "SOUNDEDIT_OFFLINE": "1", "TMPDIR": str(tmp),
           "PYTHONUNBUFFERED": "1"}
    log = open(root / "server.log", "w")
    cmd = [sys.executable, "-m", "soundedit", "serve", "--host", "127.0.0.1",
           "--port", str(port), "--device", "cpu", "--generator", str(g), "--audio-encoder", str(e), "--clip", str(c),
           "--steps", "2", "--max-duration", "20", "--max-queue", "4", "--concurrency", "1"]
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while True:
        if proc.poll() is not None:
            pytest.fail(f"soundedit serve exited with {proc.returncode}:\n{(root / 'server.log').read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"soundedit serve did not answer within 180 s:\n{(root / 'server.log').read_text()}")
        time.sleep(0.5)
    info = {"url": url, "root": root, "tmp": tmp, "proc": proc}
    yield info
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


@pytest.fixture(scope="module")
def browser(server, tmp_path_factory):
    """A fresh headless Chromium profile; requests to anything but 127.0.0.1 are refused and recorded."""
    from playwright.sync_api import sync_playwright

    outside: list[str] = []

    def guard(route):
        url = route.request.url
        host = urlparse(url).hostname
        if url.startswith(("data:", "blob:")) or host in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(CHROMIUM), headless=True,
            args=CHROME_ARGS, accept_downloads=True, viewport={"width": 1400, "height": 1800})
        context.route("**/*", guard)
        context.set_default_timeout(WAIT_MS)
        context.outside = outside
        yield context
        context.close()
    assert outside == [], f"the page tried to reach outside this machine: {outside}"


def _open(browser, server):
    page = browser.new_page()
    page.goto(server["url"], wait_until="domcontentloaded")
    page.locator("#run").wait_for(state="visible")
    return page


def _upload_sound(page, path: Path, elem: str = "#sound") -> None:
    page.locator(f"{elem} input[type=file]").set_input_files(str(path))
    # the player appears once the upload reached the server
    page.locator(f"{elem} audio, {elem} .waveform-container, {elem} [data-testid='waveform-controls']").first.wait_for(
        state="attached")


def _status(page):
    return page.locator("#status")


def _wait_status(page, text: str):
    from playwright.sync_api import expect

    expect(_status(page)).to_contain_text(text, timeout=WAIT_MS)


def _image_bytes(page, elem: str) -> bytes:
    src = page.locator(f"{elem} img").first.get_attribute("src")
    assert src, f"{elem} shows no image"
    return page.request.get(src if src.startswith("http") else server_url(page) + src.lstrip("/")).body()


def server_url(page) -> str:
    u = urlparse(page.url)
    return f"{u.scheme}://{u.netloc}/"


def test_edit_in_browser(server, browser, formats_dir, tmp_path):
    import torch
    from PIL import Image

    page = _open(browser, server)
    _upload_sound(page, formats_dir / "animals__amphibians__frog.ogg")
    page.locator("#run").click()
    _wait_status(page, "Done: 2 steps")

    after = Image.open(io.BytesIO(_image_bytes(page, "#after")))
    after.load()
    assert after.size == (SIZE, SIZE)
    before = Image.open(io.BytesIO(_image_bytes(page, "#before")))
    assert before.size == (SIZE, SIZE)
    assert np.asarray(after).std() > 0  # a rendered image, not a blank one

    with page.expect_download(timeout=WAIT_MS) as dl:
        page.locator("#download-wplus").click()
    wfile = tmp_path / "w_plus.pt"
    dl.value.save_as(wfile)
    saved = torch.load(wfile, map_location="cpu", weights_only=True)
    assert saved["w_plus"].shape == (1, N_LATENT, STYLE_DIM)
    assert torch.isfinite(saved["w_plus"]).all()
    assert not torch.equal(saved["w_plus"], saved["w_source"])  # the edit moved the code

    with page.expect_download(timeout=WAIT_MS) as dl:
        page.locator("#download-report").click()
    report = (tmp_path / "report.json")
    dl.value.save_as(report)
    assert '"steps": 2' in report.read_text()

    # the edit appears in this session's history
    assert page.locator("#history img").count() >= 1
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "app-edit.png"), full_page=True)

    # continue from the downloaded code, sound + text mixed by layer range
    page.get_by_label("W+ file").check()
    page.locator("#wplus-upload input[type=file]").set_input_files(str(wfile))
    page.get_by_text("Text (optional)").click()
    page.locator("#text textarea").fill("a red sky")
    page.locator("#run").click()
    _wait_status(page, "edit 2 of this session")
    with page.expect_download(timeout=WAIT_MS) as dl:
        page.locator("#download-report").click()
    dl.value.save_as(report)
    mixed = json.loads(report.read_text())
    assert mixed["layers"] == ["sound"] * (N_LATENT - 1) + ["text"]  # the split (9) clipped to this generator
    assert mixed["source"]["kind"] == "latent"
    assert page.locator("#history img").count() >= 2
    page.close()


def test_bad_inputs_show_errors_and_app_keeps_serving(server, browser, formats_dir, tmp_path):
    import soundfile as sf

    page = _open(browser, server)
    page.locator("#run").click()  # nothing given
    _wait_status(page, "Error: nothing to edit towards")

    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("these are words, not sound\n" * 50)
    page.locator("#sound input[type=file]").set_input_files(str(not_audio))
    page.locator("#run").click()
    _wait_status(page, "not a readable audio file")
    assert str(tmp_path) not in _status(page).inner_text()  # names the file, not server paths

    page.reload(wait_until="domcontentloaded")
    long = tmp_path / "long.wav"
    rng = np.random.default_rng(0)
    sf.write(long, (0.1 * rng.standard_normal(8000 * 40)).astype(np.float32), 8000)  # 40 s > --max-duration 20
    _upload_sound(page, long)
    page.locator("#run").click()
    _wait_status(page, "40.0 s long")

    page.reload(wait_until="domcontentloaded")
    _upload_sound(page, formats_dir / "cat.mp3")
    bad_code = tmp_path / "bad.pt"
    bad_code.write_bytes(b"not a tensor")
    page.get_by_label("W+ file").check()
    page.locator("#wplus-upload input[type=file]").set_input_files(str(bad_code))
    page.locator("#run").click()
    _wait_status(page, "W+ file: expected a W/W+ code saved by soundedit (.pt/.pth via torch.save, or .npy via "
                       "numpy.save), got 'bad.pt' (not a torch file: ")
    assert "soundedit-app" not in _status(page).inner_text()  # no server paths on the page

    page.get_by_label("Random seed").check()  # the same page goes on working
    page.locator("#run").click()
    _wait_status(page, "Done: 2 steps")
    page.close()


def test_two_clients_queue(server, browser, formats_dir):
    """Client A runs a longer edit; B, started meanwhile, waits with its position shown, then both finish."""
    a, b = _open(browser, server), _open(browser, server)
    steps = a.locator("#steps input[type=number]")
    steps.fill("300")
    steps.press("Enter")
    for page in (a, b):
        _upload_sound(page, formats_dir / "animals__amphibians__frog.ogg")
    # record every text B's status shows, however briefly
    b.evaluate("""() => { window.seen = [];
        const el = document.querySelector('#status');
        new MutationObserver(() => window.seen.push(el.innerText)).observe(el, {subtree: true, childList: true,
                                                                              characterData: true}); }""")
    a.locator("#run").click()
    _wait_status(a, "Step")
    b.locator("#run").click()
    _wait_status(a, "Done: 300 steps")
    _wait_status(b, "Done: 2 steps (waited in the queue from position 1)")
    seen = b.evaluate("() => window.seen")
    assert any("Busy" in t and "position 1" in t for t in seen), seen
    a.close()
    b.close()


def test_serves_only_its_own_files(server):
    for path in ("/etc/passwd", str(REPO / "pyproject.toml"), str(server["root"] / "weights" / "g.pt")):
        try:
            with urllib.request.urlopen(f"{server['url']}gradio_api/file={path}", timeout=30) as r:
                status = r.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        assert status in (403, 404), f"{path} was served (HTTP {status})"


def test_cancel_stops_an_edit(server, browser):
    page = _open(browser, server)
    steps = page.locator("#steps input[type=number]")
    steps.fill("1000")
    steps.press("Enter")
    page.get_by_text("siren.wav").click()  # an example sound this time
    page.locator("#sound audio, #sound [data-testid='waveform-controls']").first.wait_for(state="attached")
    page.locator("#run").click()
    _wait_status(page, "Step")
    page.locator("#cancel").click()
    _wait_status(page, "Cancelled")
    # the slot is free again: a normal edit runs at once
    steps.fill("2")
    steps.press("Enter")
    page.locator("#run").click()
    _wait_status(page, "Done: 2 steps")
    page.close()


def test_temp_files_removed_at_shutdown(server):
    """Runs last in this module: stop the server and check its temp folder is empty."""
    proc = server["proc"]
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    leftover = sorted(p.name for p in server["tmp"].iterdir())
    assert leftover == [], f"temp files left behind: {leftover}"
    shutil.rmtree(server["tmp"], ignore_errors=True)
