"""Shared pieces of the CLI: consoles, JSON output, common options, file lists.

Conventions (DESIGN.md): results go to stdout (``--json`` for machine output,
rich tables otherwise), logs and progress to stderr; exit codes 0 ok,
1 failure, 2 bad usage or input.  Heavy imports stay inside command bodies so
``soundedit --help`` is fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from soundedit.errors import InputError

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)

EXIT_FAILURE, EXIT_BAD_INPUT = 1, 2

# Reusable option declarations (Annotated so defaults show in --help).
DeviceOpt = Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N | mps")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed (results are reproducible per seed).")]


def emit_json(obj: Any) -> None:
    """Write one JSON document to stdout (the only thing on stdout in --json mode)."""
    from soundedit.fileio import _json_safe

    sys.stdout.write(json.dumps(_json_safe(obj), indent=2) + "\n")
    sys.stdout.flush()


def embedding_cache(cache_dir: Path | None, no_cache: bool) -> Path | None:
    """The embedding cache folder of ``--cache-dir`` / ``--no-cache`` (``None``: no cache).

    Raises:
        InputError: ``--cache-dir`` (or ``$SOUNDEDIT_HOME``) is a file, before any model is loaded.
    """
    from soundedit.evaluation.embeddings import default_cache_dir
    from soundedit.fileio import check_folder

    if no_cache:
        return None
    return check_folder(cache_dir, "--cache-dir") if cache_dir is not None else default_cache_dir()


def interrupted(what: str, out: Path, inversion: Any = None) -> None:
    """Ctrl-C during an edit, mix or eval (before anything is saved): say what was written (a photo's
    ``inversion`` is saved before the optimisation starts, so "nothing" would be wrong then), exit 130."""
    from soundedit.editing.report import INVERSION_FOLDER

    written = (f"only the photo's inversion was written, to {out / INVERSION_FOLDER}" if inversion is not None
               else f"nothing was written to {out}")
    stderr.print(f"[red]interrupted[/red]: the {what} did not finish; {written}")
    raise typer.Exit(130) from None


def save_outputs(result: Any, out: Path, **kwargs: Any) -> dict[str, Path]:
    """``result.save(out, **kwargs)`` (an edit's, mix's or inversion's outputs, one set): a Ctrl-C meanwhile
    leaves ``out`` as it was, or, held off until the set was in place, finds it saved; either is said
    in one line, exit 130."""
    from rich.markup import escape

    from soundedit.fileio import SavedThenInterrupted

    try:
        return result.save(out, **kwargs)
    except SavedThenInterrupted:
        stderr.print(f"[red]interrupted[/red] after saving: the outputs are in {escape(str(out))}")
        raise typer.Exit(130) from None
    except KeyboardInterrupt:
        stderr.print(f"[red]interrupted[/red] while saving: {escape(str(out))} keeps what it had before this run")
        raise typer.Exit(130) from None


def check_weights(*options: tuple[str, str | None]) -> None:
    """Each weights option, ``(flag as typed, value)``, names an existing file or a weights.lock name
    (``None``: not given, or not used by this run); checked before any model loads, neither
    downloading nor reading the cache.

    Here, and not in the loaders, because only the command knows which flag a value came from:
    ``-g nonesuch`` was "'nonesuch' is neither an existing file nor a weights.lock name" without a
    word of ``--generator``.

    Raises:
        InputError: "--lpips: expected an existing checkpoint file or a weights.lock name, got '/missing.pth'".
    """
    from soundedit.weights import check_name

    for flag, value in options:
        if value is not None:
            check_name(value, flag)


def path_arg(value: str) -> Path:
    """Typer ``parser`` for a path option: an empty value is refused (``Path("")`` is ``.``, so
    ``--out ""`` would quietly mean the current folder)."""
    if not str(value).strip():
        raise typer.BadParameter(f"expected a path, got {value!r}")
    return Path(value)


def expand_inputs(items: list[str], *, what: str, suffixes: tuple[str, ...] | None = None) -> list[Path]:
    """Expand CLI file arguments: ``-`` reads one path per line from stdin (each line is taken as an
    argument would be), folders are walked.

    Args:
        items: paths, folders, or ``-``.
        what: the parameter's name for error messages (e.g. ``"SOUNDS"``).
        suffixes: when walking folders, keep files with these suffixes (lower-case, with dot).

    Raises:
        InputError: a path that does not exist, or no files at all.
    """
    named: list[tuple[str, str]] = []  # (path, where it was named), stdin's lines treated as arguments
    for item in items:
        if item == "-":
            named.extend((line.strip(), f"{what} (stdin line {n})") for n, line in enumerate(sys.stdin, 1)
                         if line.strip())
        else:
            named.append((item, what))
    paths: list[Path] = []
    for item, where in named:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and (suffixes is None or f.suffix.lower() in suffixes))
            paths.extend(found)
        elif p.exists():
            paths.append(p)
        else:
            raise InputError(f"{where}: {item!r} does not exist")
    if not paths:
        raise InputError(f"{what}: expected at least one file, got none from {items!r}")
    return paths
