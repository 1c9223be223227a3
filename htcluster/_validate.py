"""Durations and sizes given by users, checked once at the boundary.

Every duration in htcluster's Python API is a float number of seconds
(conventions: "seconds as float in the public Python API"); milliseconds
appear only at the legacy edges (``HYPERTABLE_TIMEOUT_MSECS``, upstream's
``timeout_ms``).  :func:`seconds` is the one check they all go through, so
that NaN, infinities, negatives and bools are refused everywhere alike.
"""
from __future__ import annotations

import math
from typing import Optional

from .errors import ConfigError

__all__ = ["byte_size", "fraction", "optional_seconds", "seconds"]


def seconds(name: str, value: object, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a finite float number of seconds, checking that it is positive.

    :param name: the parameter's name, for the message.
    :param value: the number of seconds given (int or float, not bool).
    :param allow_zero: accept 0 as well.
    :returns: ``value`` as a float.
    :raises ConfigError: ``value`` is not a number, is NaN or infinite, or is
        negative (or zero without ``allow_zero``).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number of seconds, got {value!r}; "
                          "use a large number (e.g. 3600.0) for a long wait")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{name} must be {'>= 0' if allow_zero else '> 0'} seconds, got {value!r}")
    return float(value)


def optional_seconds(name: str, value: object, *, allow_zero: bool = False) -> Optional[float]:
    """Like :func:`seconds`, but ``None`` (no limit / not set) passes through."""
    return None if value is None else seconds(name, value, allow_zero=allow_zero)


def byte_size(name: str, value: object, *, minimum: int = 1, maximum: Optional[int] = None) -> int:
    """Return ``value`` as a number of bytes within ``[minimum, maximum]``.

    :param name: the parameter's name, for the message.
    :param value: an int (not bool).
    :raises ConfigError: another type, or out of range.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be a whole number of bytes, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ConfigError(f"{name} must be {bound} bytes, got {value!r}")
    return value


def fraction(name: str, value: object) -> float:
    """Return ``value`` as a float in [0, 1].

    :raises ConfigError: not a number (or a bool), or outside [0, 1].
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ConfigError(f"{name} must be a fraction between 0 and 1, got {value!r}")
    return float(value)
