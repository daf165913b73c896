"""``soundedit serve``: the web app."""

from __future__ import annotations

from soundedit.cli._common import not_built
from soundedit.cli.main import app


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def serve() -> None:
    """Serve the web app (Gradio) on localhost.

    Example: soundedit serve --port 7860
    """
    not_built("serve", "issue #8")
