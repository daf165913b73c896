"""``soundedit env``: versions, devices, CUDA-op status, cache and weights, for bug reports."""

from __future__ import annotations

from soundedit.cli._common import not_built
from soundedit.cli.main import app


@app.command()
def env() -> None:
    """Print versions, device, CUDA-op build status, cache folder and present weights."""
    not_built("env", "issue #2")
