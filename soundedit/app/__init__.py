"""The web app (``soundedit serve``): a Gradio page over the public :class:`soundedit.Editor` API.

Gradio is an optional dependency (the ``app`` extra); :func:`require_gradio`
names it when it is missing.  Importing this package is cheap: Gradio is only
imported by :func:`build_app` and :func:`launch`.

    from soundedit.app import AppSettings, launch
    launch(AppSettings(generators=["landscape-256"]), port=7860)
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["AppSettings", "build_app", "launch", "require_gradio"]


def require_gradio() -> None:
    """Import Gradio with its telemetry off, or fail naming the missing package.

    Raises:
        InputError: Gradio is not installed (``pip install 'soundedit[app]'``).
    """
    from soundedit.errors import InputError

    # before Gradio is imported: no usage statistics, no version checks, no calls outside this machine
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gradio  # noqa: F401
    except ImportError as exc:
        raise InputError("the web app needs the 'gradio' package, which is not installed; install the app extra: "
                         f"pip install 'soundedit[app]' ({exc})") from None


def __getattr__(name: str) -> Any:
    if name in ("AppSettings", "build_app", "launch"):
        require_gradio()
        from soundedit.app import ui

        return getattr(ui, name)
    raise AttributeError(f"module 'soundedit.app' has no attribute {name!r}")
