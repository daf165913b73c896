"""A real HTTP server on 127.0.0.1 (with Range support and scripted failures) and a lock file pointing at it."""

from __future__ import annotations

import hashlib
import random
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        srv: FileServer = self.server.owner
        rng = self.headers.get("Range")
        srv.requests.append((self.path, rng, self.headers.get("If-Range")))
        mode = srv.modes.get(self.path, "")
        if mode.startswith("status:"):
            self.send_error(int(mode.split(":")[1]))
            return
        data = srv.files[self.path]
        start = 0
        if rng and mode != "norange":
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Type", "text/html; charset=utf-8" if mode == "html" else "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", '"v1"')
        self.end_headers()
        cuts_left = srv.cuts.get(self.path, 0)
        if cuts_left:
            # Promise the whole body, send part of it, then drop the connection.
            srv.cuts[self.path] = cuts_left - 1
            self.wfile.write(body[: len(body) // 3])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up early on purpose (e.g. HTML refused)
            pass

    def log_message(self, *args) -> None:
        pass


class FileServer:
    """Serves ``files`` (path -> bytes); ``modes`` / ``cuts`` script failures; ``requests`` records each GET."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.modes: dict[str, str] = {}
        self.cuts: dict[str, int] = {}
        self.requests: list[tuple[str, str | None, str | None]] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = FileServer()
    yield srv
    srv.close()


@pytest.fixture
def payload() -> bytes:
    """3 MB of seeded random bytes (several 1 MiB read chunks)."""
    return random.Random(0).randbytes(3_000_000)


def closed_port() -> int:
    """A localhost port with nothing listening (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lock_entry(name: str, *, urls: list[str], sha256: str = "unknown", size: int | str = "unknown",
               file: str | None = None) -> str:
    """One [weights.NAME] table in weights.lock syntax."""
    url_list = ", ".join(f'"{u}"' for u in urls)
    size_text = str(size) if isinstance(size, int) else f'"{size}"'
    return (f"\n# entry {name}\n[weights.{name}]\nfile = \"{file or name + '.bin'}\"\nurls = [{url_list}]\n"
            f"sha256 = \"{sha256}\"  # pinned\nsize = {size_text}\nlayout = \"test-blob\"\n"
            f"licence = \"CC0\"\ndescription = \"test file {name}\"\n")


@pytest.fixture
def test_lock(tmp_path, monkeypatch, soundedit_home, server, payload):
    """A weights.lock whose entries point at the loopback server; returns ``(lock_path, server, payload)``."""
    sha = hashlib.sha256(payload).hexdigest()
    for path in ("/good.bin", "/cut.bin", "/cut2.bin", "/norange.bin", "/html.bin", "/unpinned.bin",
                 "/404.bin", "/500.bin"):
        server.files[path] = payload
    server.modes.update({"/404.bin": "status:404", "/500.bin": "status:500", "/html.bin": "html",
                         "/norange.bin": "norange"})
    dead = f"http://127.0.0.1:{closed_port()}/good.bin"
    u = server.url
    text = "# test lock\nversion = 1\n"
    text += lock_entry("good", urls=[f"{u}/good.bin"], sha256=sha, size=len(payload))
    text += lock_entry("bad", urls=[f"{u}/good.bin"], sha256="0" * 64, size=len(payload))
    text += lock_entry("wrong-size", urls=[f"{u}/good.bin"], sha256=sha, size=len(payload) + 1)
    text += lock_entry("cut", urls=[f"{u}/cut.bin"], sha256=sha, size=len(payload))
    text += lock_entry("cut2", urls=[f"{u}/cut2.bin"], sha256=sha, size=len(payload))
    text += lock_entry("norange", urls=[f"{u}/norange.bin"], sha256=sha, size=len(payload))
    text += lock_entry("html", urls=[f"{u}/html.bin"])
    text += lock_entry("unpinned", urls=[f"{u}/unpinned.bin"], file="unpinned.pt")
    text += lock_entry("gone", urls=[f"{u}/404.bin"], sha256=sha)
    text += lock_entry("broken", urls=[f"{u}/500.bin"], sha256=sha)
    text += lock_entry("mirrored", urls=[f"{u}/404.bin", dead, f"{u}/good.bin"], sha256=sha)
    text += lock_entry("unreachable", urls=[dead], sha256=sha, size=len(payload))
    path = tmp_path / "weights.lock"
    path.write_text(text)
    monkeypatch.setenv("SOUNDEDIT_WEIGHTS_LOCK", str(path))
    monkeypatch.delenv("SOUNDEDIT_OFFLINE", raising=False)
    return path, server, payload
