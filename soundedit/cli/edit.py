"""``soundedit edit`` and ``soundedit mix``: sound-guided (and text-guided) latent editing."""

from __future__ import annotations

from soundedit.cli._common import not_built
from soundedit.cli.main import app


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def edit() -> None:
    """Edit an image (photo, seed or latent) so it looks like a sound.

    Example: soundedit edit face.png --sound siren.wav
    """
    not_built("edit", "issue #5")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def mix() -> None:
    """Mix a sound-guided and a text-guided edit by StyleGAN layer range.

    Example: soundedit mix --sound giggle.wav --text "blue background"
    """
    not_built("mix", "issue #5")
