"""Exception types shared across soundedit.

Every error a user can cause (bad file, bad flag, missing weights) is a
``SoundeditError``; the CLI turns these into one line on stderr and exit code 2
(bad input) or 1 (failure).  Messages name the input, what was expected and what
was got.
"""

from __future__ import annotations


class SoundeditError(Exception):
    """Base class of all errors soundedit raises on purpose."""

    #: CLI exit code: 2 = bad usage or input, 1 = failure.
    exit_code: int = 1


class InputError(SoundeditError, ValueError):
    """A user-supplied value or file is not what was expected."""

    exit_code = 2


class AudioError(InputError):
    """An audio file or waveform cannot be used (unreadable, corrupt, silent...)."""


class CheckpointError(InputError):
    """A checkpoint file has the wrong layout, keys, shapes or is unsafe to load."""


class WeightsError(SoundeditError):
    """A checkpoint could not be found, fetched or verified."""

    exit_code = 1


class WeightsMissingError(WeightsError):
    """A named checkpoint is not in the cache and cannot be downloaded (e.g. offline)."""
