"""``soundedit classify`` and ``soundedit eval``: zero-shot classification and the paper's evaluations."""

from __future__ import annotations

from soundedit.cli._common import not_built
from soundedit.cli.main import app


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def classify() -> None:
    """Classify every clip under a folder zero-shot (ESC-50 / UrbanSound8K layouts recognised).

    Example: soundedit classify esc50/
    """
    not_built("classify", "issue #7")


@app.command(name="eval", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def eval_() -> None:
    """Run an evaluation protocol (zeroshot, probe, edits) and write JSON + Markdown + plots.

    Example: soundedit eval zeroshot --dataset esc50 --root esc50/
    """
    not_built("eval", "issue #7")
