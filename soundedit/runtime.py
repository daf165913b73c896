"""Process-level helpers: device choice, seeding, logging and progress bars.

The library never prints: it logs to the ``soundedit`` logger and reports
progress through :func:`progress`, which the CLI can silence (``--quiet``) and
which is off automatically when stderr is not a terminal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from soundedit.errors import InputError

if TYPE_CHECKING:  # torch is imported lazily so the CLI starts fast
    import torch

logger = logging.getLogger("soundedit")

_DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
_progress_enabled: bool | None = None  # None: decide from stderr being a TTY


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn a user's device choice into a ``torch.device``.

    Args:
        device: ``"auto"`` (CUDA if present, else MPS, else CPU), ``"cpu"``,
            ``"cuda"``, ``"cuda:N"``, ``"mps"`` or a ``torch.device``.

    Raises:
        InputError: unknown name, or the requested device is not available.
    """
    import torch

    if isinstance(device, torch.device):
        return device
    name = (device or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    base = name.split(":", 1)[0]
    if base not in _DEVICE_CHOICES:
        raise InputError(f"--device: expected one of {', '.join(_DEVICE_CHOICES)} (or cuda:N), got {device!r}")
    if base == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device: {device!r} was requested but no CUDA GPU is available (torch {torch.__version__})")
    if base == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError(f"--device: {device!r} was requested but MPS is not available on this machine")
    return torch.device(name)


def switch_setting(env_var: str, value: str | None = None, *, label: str = "",
                   choices: tuple[str, ...] = ("auto", "on", "off")) -> str:
    """An ``auto``/``on``/``off`` switch: ``value`` when given (an argument, named ``label`` in errors),
    else the environment variable ``env_var``, else the first choice. Case and spaces are ignored.

    Raises:
        InputError: any other value, naming the argument or the variable it came from.
    """
    source = label if value is not None else env_var
    raw = value if value is not None else os.environ.get(env_var, "")
    setting = str(raw).strip().lower() or choices[0]
    if setting not in choices:
        raise InputError(f"{source}: expected one of {', '.join(choices)}, got {raw!r}")
    return setting


def distributed_rank() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's environment; ``(0, 1, 0)`` outside it.

    Raises:
        InputError: a variable that is not an integer, or a rank outside ``0..WORLD_SIZE-1``.
    """
    def env_int(name: str, default: int) -> int:
        value = os.environ.get(name, "")
        try:
            return int(value) if value else default
        except ValueError:
            raise InputError(f"environment variable {name}: expected an integer, got {value!r}") from None

    rank, world, local = env_int("RANK", 0), env_int("WORLD_SIZE", 1), env_int("LOCAL_RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise InputError(f"RANK/WORLD_SIZE: expected 0 <= RANK < WORLD_SIZE, got {rank}/{world}")
    return rank, world, local


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU ``torch.Generator`` seeded the same.

    Library functions take explicit generators; this is for entry points (CLI, scripts).
    """
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def configure_logging(verbosity: int = 0, quiet: bool = False) -> None:
    """Route the ``soundedit`` logger to stderr (CLI entry points only).

    Args:
        verbosity: 0 = warnings, 1 = info, 2+ = debug.
        quiet: only errors; also turns progress bars off.
    """
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbosity, 2)]
    from rich.console import Console
    from rich.logging import RichHandler

    handler = RichHandler(console=Console(stderr=True), show_time=False, show_path=False)
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
    if quiet:
        set_progress_enabled(False)


def set_progress_enabled(enabled: bool | None) -> None:
    """Force progress bars on/off; ``None`` restores the default (on when stderr is a TTY)."""
    global _progress_enabled
    _progress_enabled = enabled


def progress_enabled() -> bool:
    """Whether progress bars should be drawn (``SOUNDEDIT_PROGRESS=0`` turns them off)."""
    if os.environ.get("SOUNDEDIT_PROGRESS", "").strip() == "0":
        return False
    if _progress_enabled is not None:
        return _progress_enabled
    return sys.stderr.isatty()


@contextlib.contextmanager
def progress(description: str, total: float | None = None) -> Iterator["ProgressHandle"]:
    """A rich progress bar on stderr, or a silent stand-in when progress is off.

    Usage::

        with progress("fetching", total=n_bytes) as bar:
            bar.advance(len(chunk))
            bar.update(postfix="loss 0.31")
    """
    if not progress_enabled():
        yield ProgressHandle(None, None)
        return
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[postfix]}")]
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(description, total=total, postfix="")
        yield ProgressHandle(bar, task)


class ProgressHandle:
    """What :func:`progress` yields; every method is a no-op when progress is off."""

    def __init__(self, bar, task) -> None:
        self._bar, self._task = bar, task

    def advance(self, amount: float = 1.0) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, amount)

    def update(self, *, completed: float | None = None, total: float | None = None, postfix: str | None = None) -> None:
        if self._bar is None:
            return
        fields = {} if postfix is None else {"postfix": postfix}
        self._bar.update(self._task, completed=completed, total=total, **fields)
