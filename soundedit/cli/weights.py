"""``soundedit weights``: list, fetch, path, verify, import and pin checkpoints of weights.lock.

``weights_app`` is shared: other modules add commands to it (``convert`` lives with
the StyleGAN2 converters).
"""

from __future__ import annotations

from typing import Annotated

import typer

from soundedit.cli._common import EXIT_FAILURE, JsonOpt, emit_json, stdout
from soundedit.cli.main import app

weights_app = typer.Typer(
    help="Checkpoints listed in weights.lock: list, fetch, path, verify, import, pin, convert.\n\n"
    "Files are cached by sha256 under $SOUNDEDIT_HOME/weights (default ~/.cache/soundedit); "
    "SOUNDEDIT_OFFLINE=1 turns downloads off.\n\n"
    "Examples:\n\n"
    "  soundedit weights list\n\n"
    "  soundedit weights fetch landscape-256 authors-resnet18\n\n"
    "  soundedit weights import ffhq-1024 ~/Downloads/stylegan2-ffhq-config-f.pt",
    no_args_is_help=True,
    rich_markup_mode="rich",
)
app.add_typer(weights_app, name="weights")

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="A weights.lock name (see `soundedit weights list`).",
                                        show_default=False)]


def _size(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e6:,.1f} MB"


@weights_app.command("list")
def list_(json_out: JsonOpt = False) -> None:
    """List every checkpoint in weights.lock and whether it is cached.

    Example: soundedit weights list --json
    """
    from soundedit.weights import cached_path, load_lock

    lock = load_lock()
    rows = []
    for entry in lock:
        path = cached_path(entry)
        rows.append({**entry.to_dict(), "pinned": entry.pinned, "cached": path is not None, "path": path})
    if json_out:
        emit_json({"lock": lock.path, "entries": rows})
        return
    from rich.table import Table

    table = Table(title=f"weights.lock ({lock.path})", title_justify="left")
    width = max(len(r["name"]) for r in rows)
    table.add_column("name", no_wrap=True, min_width=width)
    table.add_column("layout", overflow="ellipsis", no_wrap=True, max_width=24)
    table.add_column("size", no_wrap=True, min_width=8)
    table.add_column("pinned", no_wrap=True, min_width=6)
    table.add_column("cached", no_wrap=True, min_width=6)
    table.add_column("licence", overflow="ellipsis", no_wrap=True, max_width=30)
    for row in rows:
        table.add_row(row["name"], row["layout"], _size(row["size"]),
                      "yes" if row["pinned"] else "[yellow]no[/yellow]",
                      "[green]yes[/green]" if row["cached"] else "no", row["licence"])
    stdout.print(table)


@weights_app.command("fetch")
def fetch(
    names: Annotated[list[str], typer.Argument(metavar="NAME...", help="weights.lock names to download.",
                                               show_default=False)],
    force: Annotated[bool, typer.Option("--force", help="Download again even if cached.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Download checkpoints into the cache (resumable, verified by sha256); print their paths.

    Example: soundedit weights fetch landscape-256 authors-resnet18
    """
    from soundedit import weights

    entries = [weights.get_entry(n) for n in names]  # every name checked before any download starts
    results = {e.name: weights.fetch(e.name, force=force) for e in entries}
    if json_out:
        emit_json({name: str(path) for name, path in results.items()})
    else:
        for path in results.values():
            stdout.print(str(path), highlight=False)


@weights_app.command("path")
def path(name: NameArg, json_out: JsonOpt = False) -> None:
    """Print the cached file of NAME (never downloads; fails with instructions if absent).

    Example: soundedit weights path clip-vit-b-32
    """
    from soundedit import weights

    found = weights.locate(name)
    if json_out:
        emit_json({"name": name, "path": str(found)})
    else:
        stdout.print(str(found), highlight=False)


@weights_app.command("verify")
def verify(
    names: Annotated[list[str] | None, typer.Argument(metavar="[NAME]...", help="Names to check (default: all).",
                                                      show_default=False)] = None,
    json_out: JsonOpt = False,
) -> None:
    """Re-hash cached files against weights.lock; a corrupt file is deleted. Exit 1 if any was bad.

    Example: soundedit weights verify ffhq-1024
    """
    from soundedit import weights

    report = weights.verify(names or None)
    bad = [r for r in report if r["status"] == "bad"]
    if json_out:
        emit_json(report)
    else:
        from rich.table import Table

        colour = {"ok": "green", "bad": "red", "missing": "dim"}
        table = Table(title="cached weights", title_justify="left")
        for col in ("name", "status", "detail"):
            table.add_column(col, overflow="fold")
        for r in report:
            table.add_row(r["name"], f"[{colour[r['status']]}]{r['status']}[/]", r["detail"])
        stdout.print(table)
    if bad:
        raise typer.Exit(EXIT_FAILURE)


@weights_app.command("import")
def import_(
    name: NameArg,
    file: Annotated[str, typer.Argument(metavar="FILE", help="The file you downloaded.", show_default=False)],
    json_out: JsonOpt = False,
) -> None:
    """Copy a manually downloaded FILE into the cache as NAME, after checking its sha256 and size.

    Example: soundedit weights import ffhq-1024 ~/Downloads/stylegan2-ffhq-config-f.pt
    """
    from soundedit import weights

    target = weights.import_file(name, file)
    if json_out:
        emit_json({"name": name, "path": str(target)})
    else:
        stdout.print(str(target), highlight=False)


@weights_app.command("pin")
def pin(
    name: NameArg,
    file: Annotated[str | None, typer.Option("--file", "-f", help="Pin this trusted file (default: the cached one).",
                                             show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a different hash that is already pinned.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Record the sha256 and size of a trusted file for NAME in weights.lock.

    Example: soundedit weights pin landscape-256
    """
    from soundedit import weights

    result = weights.pin(name, file=file, force=force)
    if json_out:
        emit_json(result)
    else:
        stdout.print(f"{result['name']}: sha256 {result['sha256']}, {result['size']} bytes -> {result['lock']}",
                     highlight=False)


from soundedit.cli import convert as _convert  # noqa: E402,F401  (registers `weights convert`)
