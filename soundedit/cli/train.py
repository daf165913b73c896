"""``soundedit train`` and ``soundedit embed``: alignment training and CLIP-space embeddings."""

from __future__ import annotations

from soundedit.cli._common import not_built
from soundedit.cli.main import app


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train() -> None:
    """Train an audio encoder into CLIP space (contrastive alignment).

    Example: soundedit train --manifest train.csv --val val.csv --out runs/x
    """
    not_built("train", "issue #6")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def embed() -> None:
    """Embed sounds, texts or images into CLIP space.

    Example: soundedit embed sounds/*.wav --out emb.npy
    """
    not_built("embed", "issue #6")
