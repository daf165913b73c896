"""The web app (``soundedit serve``): a Gradio page over the public :class:`soundedit.Editor` API.

Gradio is an optional dependency (the ``app`` extra); :func:`require_gradio`
names it when it is missing.  Importing this package is cheap: Gradio is only
imported by :func:`build_app` and :func:`launch`.

    from soundedit.app import AppSettings, serve
    serve(AppSettings(generators=["landscape-256"]), port=7860)
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import threading
from typing import Any

__all__ = ["AppSettings", "build_app", "require_gradio", "serve"]


def require_gradio() -> None:
    """Import Gradio with its telemetry off, or fail naming the missing package.

    Raises:
        InputError: Gradio is not installed (``pip install 'soundedit[app]'``).
    """
    from soundedit.errors import InputError

    # before Gradio is imported: no usage statistics, no version checks, no calls outside this machine
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if importlib.util.find_spec("gradio") is None:
        raise InputError("the web app needs the 'gradio' package, which is not installed; install the app extra: "
                         "pip install 'soundedit[app]'")


def serve(settings: Any, *, host: str = "127.0.0.1", port: int = 7860, share: bool = False, ready: Any = None) -> None:
    """Serve the web app until interrupted; every temp file it made is removed afterwards.

    Args:
        settings: an :class:`AppSettings`.
        host, port: where to listen.
        share: also open a public gradio.live link.
        ready: ``ready(url)`` once the server listens.

    Raises:
        InputError: Gradio missing, ``host:port`` unusable (in use, not this machine's), or a component
            that is neither a weights.lock name nor a file.
    """
    from soundedit.app.jobs import Workspace, check_address

    require_gradio()
    check_address(host, port)
    # the server never downloads on its own (no calls outside this machine): a missing checkpoint is
    # named on the page with how to get it (`soundedit weights fetch NAME`) instead
    os.environ["SOUNDEDIT_OFFLINE"] = "1"
    workspace = Workspace()
    # set before Gradio is imported (it reads it then): uploads and its cache live in our workspace too
    os.environ["GRADIO_TEMP_DIR"] = str(workspace.uploads_dir)
    try:
        from soundedit.app.ui import launch

        with _sigterm_as_interrupt():
            launch(settings, workspace, host=host, port=port, share=share, ready=ready)
    finally:
        workspace.remove()


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Any:
    """SIGTERM (``kill``, systemd, docker stop) stops the server as Ctrl+C does, so the workspace is removed."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def __getattr__(name: str) -> Any:
    if name == "AppSettings":
        from soundedit.app.settings import AppSettings

        return AppSettings
    if name == "build_app":
        require_gradio()
        from soundedit.app import ui

        return getattr(ui, name)
    raise AttributeError(f"module 'soundedit.app' has no attribute {name!r}")
