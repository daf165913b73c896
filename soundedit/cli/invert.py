"""``soundedit invert``: put a real photo into the generator's W+ space."""

from __future__ import annotations

from soundedit.cli._common import not_built
from soundedit.cli.main import app


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def invert() -> None:
    """Align and invert a photo into W+.

    Example: soundedit invert --image photo.jpg --generator ffhq-1024 --out inv/
    """
    not_built("invert", "issue #9")
