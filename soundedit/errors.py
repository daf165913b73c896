"""Exception types shared across soundedit.

Every error a user can cause (bad file, bad flag, missing weights) is a
``SoundeditError``; the CLI turns these into one line on stderr and exit code 2
(bad input) or 1 (failure).  Messages name the input, what was expected and what
was got.
"""

from __future__ import annotations

import math
import operator

#: seeds are 0 .. 2**63 - 1 (torch's generators take 64-bit seeds; a larger int overflows inside torch)
MAX_SEED = 2**63 - 1
#: the evaluation commands' seeds also seed scikit-learn, which takes 0 .. 2**32 - 1
MAX_EVAL_SEED = 2**32 - 1


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


class DivergedError(SoundeditError):
    """An optimisation produced non-finite losses or parameters (usually: the learning rate is too high)."""

    exit_code = 1


def check_number(value: float, what: str, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False) -> float:
    """Return ``value`` if it is a finite number within the bounds, else raise an ``InputError``.

    ``nan`` slips through plain ``<``/``>`` comparisons (every comparison is False), so each
    range check in soundedit goes through here to reject non-finite values too.

    Args:
        value: the number to check.
        what: the input's name as the user typed it (``"--lr"``, ``"lambda_sim"``, ``"row 3 gain"``).
        low, high: inclusive bounds (``low_open=True`` makes the lower bound exclusive).

    Raises:
        InputError: "WHAT: expected a finite number > 0, got nan".
    """
    if low is not None and high is not None:
        expected = f"in ({low}, {high}]" if low_open else f"in [{low}, {high}]"
    elif low is not None:
        expected = f"> {low}" if low_open else f">= {low}"
    else:
        expected = f"<= {high}" if high is not None else ""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = is_number and (isinstance(value, int) or math.isfinite(value))
    ok = ok and (low is None or (value > low if low_open else value >= low)) and (high is None or value <= high)
    if not ok:
        raise InputError(f"{what}: expected a finite number{' ' + expected if expected else ''}, got {value!r}")
    return value


def check_int(value: int, what: str, *, low: int, high: int, hint: str = "") -> int:
    """Return ``value`` if it is an integer in ``[low, high]``, else raise an ``InputError`` naming ``what``.

    Python ints are unbounded but torch's are 64-bit: an out-of-range count or seed would
    otherwise fail deep inside torch (an overflow, or a C++ allocation error).
    """
    try:  # operator.index also takes numpy integers, but no floats or bools-as-flags
        number = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        number = None
    if number is None or not low <= number <= high:
        raise InputError(f"{what}: expected an integer from {low} to {high}{hint}, got {value!r}")
    return number


def check_seed(seed: int, what: str = "--seed") -> int:
    """A seed in the documented range ``0 .. MAX_SEED`` (2**63 - 1)."""
    return check_int(seed, what, low=0, high=MAX_SEED, hint=" (2**63 - 1)")
