"""``soundedit weights``: list, fetch, verify, import and pin checkpoints of weights.lock."""

from __future__ import annotations

import typer

from soundedit.cli._common import not_built
from soundedit.cli.main import app

weights_app = typer.Typer(help="Checkpoints listed in weights.lock: list, fetch, path, verify, import, pin, convert.",
                          no_args_is_help=True)
app.add_typer(weights_app, name="weights")


@weights_app.command("list")
def list_() -> None:
    """List every checkpoint in weights.lock and whether it is cached."""
    not_built("weights list", "issue #2")
