"""Timestamps and durations as HQL writes them (:ref:`hql`).

A timestamp literal is a quoted ``'YYYY-MM-DD[ HH:MM[:SS[.fraction|:nanoseconds]]]'``
read in the broker's local time zone; the wire wants nanoseconds since the
epoch.  Durations (``TTL 3 DAYS``) become whole seconds, a month being 30 days.
"""
from __future__ import annotations

import re
from datetime import datetime

from .. import codes
from ._errors import client_error

__all__ = ["SECONDS_PER_UNIT", "duration_seconds", "parse_timestamp"]

NANOS_PER_SECOND = 1_000_000_000

#: Seconds in each duration unit HQL accepts; singular and plural spellings.
SECONDS_PER_UNIT: dict[str, int] = {
    "second": 1,
    "minute": 60,
    "hour": 3_600,
    "day": 86_400,
    "week": 7 * 86_400,
    "month": 30 * 86_400,
}

_TIMESTAMP = re.compile(
    r"(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})"
    r"(?:\s+(?P<hour>\d{2}):(?P<minute>\d{2})"
    r"(?::(?P<second>\d{2})(?:\.(?P<fraction>\d{1,9})|:(?P<nanos>\d{1,9}))?)?)?"
)

_FORMAT = "'YYYY-MM-DD[ HH:MM[:SS[.fraction|:nanoseconds]]]'"


def parse_timestamp(text: str) -> int:
    """Return the nanoseconds since the epoch that an HQL timestamp literal names.

    :param text: the literal without its quotes, e.g. ``"2015-01-02 03:04:05.25"``;
        read in the local time zone of this process.
    :returns: nanoseconds since 1970-01-01 UTC (``int``).
    :raises ClientException: HQL_PARSE_ERROR when the text is not in that form
        (raw integer nanoseconds included, as on the real broker) or names no
        valid date or time.
    """
    match = _TIMESTAMP.fullmatch(text.strip())
    if match is None:
        raise client_error(codes.HQL_PARSE_ERROR,
                           f"bad timestamp {text!r}: write it as {_FORMAT} in the broker's "
                           "local time (integer nanoseconds are not accepted in HQL)")
    part = {key: int(value) for key, value in match.groupdict().items()
            if value is not None and key != "fraction"}
    try:
        moment = datetime(part["year"], part["month"], part["day"], part.get("hour", 0),
                          part.get("minute", 0), part.get("second", 0))
        seconds = int(moment.timestamp())  # a naive datetime is local time
    except (ValueError, OverflowError, OSError) as exc:
        raise client_error(codes.HQL_PARSE_ERROR, f"bad timestamp {text!r}: {exc}") from None
    nanos = part.get("nanos", 0)
    if match.group("fraction"):
        nanos = int(match.group("fraction").ljust(9, "0"))
    return seconds * NANOS_PER_SECOND + nanos


def duration_seconds(amount: str, unit: "str | None") -> int:
    """Return a TTL given as ``amount [unit]`` in whole seconds.

    :param amount: a decimal number as written, e.g. ``"1.5"``.
    :param unit: ``"day"``, ``"DAYS"``, ... (case-insensitive, plural allowed);
        ``None`` means seconds.
    :returns: seconds, rounded to the nearest whole second.
    :raises ClientException: HQL_PARSE_ERROR for an unknown unit.
    """
    key = (unit or "second").lower()
    key = key[:-1] if key.endswith("s") else key
    try:
        factor = SECONDS_PER_UNIT[key]
    except KeyError:
        raise client_error(codes.HQL_PARSE_ERROR, f"unknown duration unit {unit!r}; "
                           f"use one of {', '.join(SECONDS_PER_UNIT).upper()}") from None
    return round(float(amount) * factor)
