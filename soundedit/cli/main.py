"""Entry point of the ``soundedit`` command: the Typer app and its error handling.

Each subcommand lives in its own module and registers itself on import;
``main()`` turns soundedit's errors into one line on stderr and an exit code.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from soundedit.cli._common import EXIT_BAD_INPUT, EXIT_FAILURE, stderr

app = typer.Typer(
    name="soundedit",
    help="Edit images with sound: sound-guided StyleGAN2 manipulation in CLIP space.\n\n"
    "Examples:\n\n"
    "  soundedit edit face.png --sound siren.wav\n\n"
    "  soundedit mix --sound giggle.wav --text \"blue background\"\n\n"
    "  soundedit classify esc50/",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="rich",
)

_debug = False


@app.callback()
def _root(
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logging (-vv for debug).")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Errors only; no progress bars.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
) -> None:
    """Global options (before the subcommand)."""
    global _debug
    from soundedit.runtime import configure_logging

    _debug = debug or os.environ.get("SOUNDEDIT_DEBUG") == "1"
    configure_logging(verbose, quiet)


def _register() -> None:
    # Imported here so each module can use `app` without a circular import at top level.
    from soundedit.cli import classify, edit, env, invert, serve, train, weights  # noqa: F401


_register()


def _command_path(args: list[str]) -> str:
    """The command ``args`` name (``"soundedit weights fetch"``): the subcommands among them, in order.

    For the help hint of a usage error that click raises without its context. The value of a group's
    option (``train --out prepare``) is skipped, not taken for a subcommand's name.
    """
    from typer.main import get_command

    command, path = get_command(app), ["soundedit"]
    tokens = iter(args)
    for token in tokens:
        subcommands = getattr(command, "commands", None)
        if not subcommands:  # a command, not a group: the rest are its options and arguments
            break
        if token in subcommands:
            command = subcommands[token]
            path.append(token)
            continue
        option = next((p for p in command.params if token in getattr(p, "opts", ())), None)
        if option is not None and not getattr(option, "is_flag", False) and not getattr(option, "count", False):
            next(tokens, None)  # its value
    return " ".join(path)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns (and exits with) 0 ok, 1 failure, 2 bad usage or input."""
    from rich.markup import escape

    from soundedit.errors import SoundeditError

    args = sys.argv[1:] if argv is None else argv
    try:
        # Not standalone: click's usage errors reach us, to be one line like every other bad input
        # (click's own form is a usage line, a hint and a boxed message); typer.Exit(n) returns n.
        returned = app(args=args, prog_name="soundedit", standalone_mode=False)
        code = returned if isinstance(returned, int) and not isinstance(returned, bool) else 0
    except typer.Abort:  # Ctrl-C (or end of input) outside a command's own handling
        stderr.print("[red]interrupted[/red]", highlight=False)
        code = 130
    except typer.TyperException as exc:  # click's (Typer vendors it): a bad option value, a missing argument
        if type(exc).__name__ == "NoArgsIsHelpError":
            # `soundedit` or a group alone asks what there is, as --help does: the help, and success.
            # Typer's rich help prints itself while this error is built (its message is then empty);
            # plain help is the message. Printing ctx.get_help() again showed the help twice.
            if exc.format_message():
                typer.echo(exc.format_message())
            code = 0
        else:
            ctx = getattr(exc, "ctx", None)
            # click raises some usage errors without their context ("Option '--steps' requires an argument.")
            where = ctx.command_path if ctx is not None else _command_path(args)
            stderr.print(f"[red]error:[/red] {escape(exc.format_message())} (see '{where} --help')", highlight=False)
            code = exc.exit_code
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_FAILURE)
    except SoundeditError as exc:
        if _debug:
            stderr.print_exception()
        stderr.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        code = exc.exit_code
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, FileExistsError, PermissionError) as exc:
        # a path the user gave (or a folder of theirs) that the OS refused: their input, not a bug
        message = str(exc)
        if isinstance(exc, (NotADirectoryError, FileExistsError)) and exc.filename is not None:
            # mkdir or open met a file where a folder is needed (e.g. --out naming a file)
            message = (f"{str(exc.filename)!r}: expected a folder (or a path inside one), but it or a folder above "
                       f"it is a file ({exc.strerror})")
        stderr.print(f"[red]error:[/red] {escape(message)}", highlight=False)
        code = EXIT_BAD_INPUT
    except OSError as exc:  # the machine refused (a full disk, a read-only or failing device): not a bug
        where = f" ({str(exc.filename)!r})" if exc.filename is not None else ""
        stderr.print(f"[red]error:[/red] {escape((exc.strerror or str(exc)) + where)}", highlight=False)
        code = EXIT_FAILURE
    except Exception as exc:  # a bug: one line, the traceback only with --debug
        if _debug:
            stderr.print_exception()
        stderr.print(f"[red]internal error:[/red] {type(exc).__name__}: {escape(str(exc))} (run with --debug for the traceback, "
                     "and please report it with the output of `soundedit env`)", highlight=False)
        code = EXIT_FAILURE
    sys.exit(code) if argv is None else None
    return code

