"""SELECT predicates and options turned into one ``ScanSpec`` (:ref:`hql`).

Bounds arrive as ``(op, value)`` pairs with the subject (ROW, CELL or
TIMESTAMP) on the left: ``"a" < ROW`` is passed as ``(">", "a")``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional, Sequence, TypeVar, Union

from .. import codes
from .._thrift.ttypes import CellInterval, ColumnPredicate, RowInterval, ScanSpec
from ._errors import client_error

__all__ = [
    "CellPredicate", "ColumnMatches", "Predicate", "RowPredicate", "RowRegexp", "ScanOption",
    "TimePredicate", "ValueRegexp", "build_scan_spec", "cell_interval", "mirror", "prefix_end",
    "row_interval", "time_range",
]

T = TypeVar("T")
Bound = tuple[str, T]

_MIRROR = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "=", "=^": "=^"}
_MAX_CODE_POINT = 0x10FFFF
_SURROGATES = range(0xD800, 0xE000)


def mirror(op: str) -> str:
    """Return the operator that keeps ``value op SUBJECT`` true with the subject on the left."""
    return _MIRROR[op]


def prefix_end(prefix: str) -> Optional[str]:
    """Return the smallest string above every string that starts with ``prefix``.

    :ref:`hql` increments the last byte below 0xFF; on ``str`` the same
    order (UTF-8 bytes compare like code points) means incrementing the last
    code point below U+10FFFF: ``"abc"`` -> ``"abd"``.

    :returns: the exclusive end, or ``None`` when there is none (empty prefix).
    """
    chars = list(prefix)
    while chars:
        point = ord(chars.pop()) + 1
        if point <= _MAX_CODE_POINT:
            if point in _SURROGATES:
                point = _SURROGATES.stop
            return "".join(chars) + chr(point)
    return None


def _bad(subject: str, why: str) -> Exception:
    return client_error(codes.HQL_PARSE_ERROR, f"bad {subject} expression: {why}")


def _interval(subject: str, bounds: Sequence[Bound[T]], successor: Callable[[T], Optional[T]]
              ) -> tuple[Optional[T], bool, Optional[T], bool]:
    """Fold bounds into ``(start, start_inclusive, end, end_inclusive)``; ``None`` is open."""
    start: Optional[T] = None
    end: Optional[T] = None
    start_inclusive = end_inclusive = True
    start_set = end_set = False
    exact = ""
    for op, value in bounds:
        if exact or (op in ("=", "=^") and (start_set or end_set)):
            raise _bad(subject, f"'{exact or op}' cannot be combined with another bound")
        if op in ("=", "=^"):
            exact = op
            start, start_set, end_set = value, True, True
            end, end_inclusive = (value, True) if op == "=" else (successor(value), False)
        elif op in ("<", "<="):
            if end_set:
                raise _bad(subject, "the upper bound is given twice")
            end, end_inclusive, end_set = value, op == "<=", True
        else:
            if start_set:
                raise _bad(subject, "the lower bound is given twice")
            start, start_inclusive, start_set = value, op == ">=", True
    return start, start_inclusive, end, end_inclusive


def row_interval(bounds: Sequence[Bound[str]]) -> RowInterval:
    """Return the ``RowInterval`` of one ROW term (``ROW =^ "p"`` gives ``[p, prefix_end(p))``).

    :raises ClientException: HQL_PARSE_ERROR when bounds conflict.
    """
    folded = _interval("ROW", bounds, prefix_end)  # one name first: mypy infers T from the call alone
    start, start_inclusive, end, end_inclusive = folded
    return RowInterval(start_row=start, start_inclusive=start_inclusive,
                       end_row=end, end_inclusive=end_inclusive)


def _cell_successor(cell: tuple[str, str]) -> tuple[str, str]:
    """End of ``CELL =^ row, column``: the qualifier prefix with the top code point appended,
    as upstream appends a 0xFF byte; the family stays a real one."""
    row, column = cell
    family, _, qualifier = column.partition(":")
    return row, f"{family}:{qualifier}{chr(_MAX_CODE_POINT)}"


def cell_interval(bounds: Sequence[Bound[tuple[str, str]]]) -> CellInterval:
    """Return the ``CellInterval`` of one CELL term; values are ``(row, column)``.

    :raises ClientException: HQL_PARSE_ERROR when bounds conflict.
    """
    folded = _interval("CELL", bounds, _cell_successor)
    start, start_inclusive, end, end_inclusive = folded
    start_row, start_column = start if start is not None else (None, None)
    end_row, end_column = end if end is not None else (None, None)
    return CellInterval(start_row=start_row, start_column=start_column,
                        start_inclusive=start_inclusive, end_row=end_row,
                        end_column=end_column, end_inclusive=end_inclusive)


def time_range(bounds: Sequence[Bound[int]]) -> tuple[Optional[int], Optional[int]]:
    """Return ``(start_time, end_time)`` in nanoseconds, the half-open ``[start, end)``.

    ``< t`` ends at t, ``<= t`` at t+1, ``> t`` starts at t+1, ``>= t`` at t,
    ``= t`` is ``[t, t+1)`` (:ref:`hql`).

    :raises ClientException: HQL_PARSE_ERROR for ``=^`` or conflicting bounds.
    """
    if any(op == "=^" for op, _ in bounds):
        raise _bad("TIMESTAMP", "'=^' does not apply to timestamps")
    start, start_inclusive, end, end_inclusive = _interval("TIMESTAMP", bounds, lambda t: t)
    if start is not None and not start_inclusive:
        start += 1
    if end is not None and end_inclusive:
        end += 1
    return start, end


@dataclass(frozen=True)
class RowPredicate:
    """One ROW term, or several joined by OR inside parentheses."""

    intervals: tuple[RowInterval, ...]


@dataclass(frozen=True)
class CellPredicate:
    """One CELL term, or several joined by OR inside parentheses."""

    intervals: tuple[CellInterval, ...]


@dataclass(frozen=True)
class TimePredicate:
    """A TIMESTAMP term as ``[start, end)`` nanoseconds; ``None`` is open."""

    start: Optional[int]
    end: Optional[int]


@dataclass(frozen=True)
class RowRegexp:
    """``ROW REGEXP "re"``."""

    pattern: str


@dataclass(frozen=True)
class ValueRegexp:
    """``VALUE REGEXP "re"``."""

    pattern: str


@dataclass(frozen=True)
class ColumnMatches:
    """Column predicates joined by OR."""

    predicates: tuple[ColumnPredicate, ...]


Predicate = Union[RowPredicate, CellPredicate, TimePredicate, RowRegexp, ValueRegexp, ColumnMatches]


class ScanOption(NamedTuple):
    """A SELECT option: ``key`` is the ``ScanSpec`` attribute it sets."""

    key: str
    value: Union[int, bool]


#: ScanSpec attribute -> how HQL spells the option, for messages.
OPTION_NAMES = {
    "versions": "MAX_VERSIONS", "row_limit": "LIMIT", "cell_limit": "CELL_LIMIT",
    "cell_limit_per_family": "CELL_LIMIT_PER_FAMILY", "row_offset": "OFFSET",
    "cell_offset": "CELL_OFFSET", "keys_only": "KEYS_ONLY", "return_deletes": "RETURN_DELETES",
    "scan_and_filter_rows": "SCAN_AND_FILTER_ROWS", "do_not_cache": "NO_CACHE",
}


def _once(name: str, seen: set[str]) -> None:
    if name in seen:
        raise client_error(codes.HQL_PARSE_ERROR, f"SELECT {name} is given more than once")
    seen.add(name)


def build_scan_spec(columns: Optional[list[str]], predicates: Sequence[Predicate],
                    options: Sequence[ScanOption]) -> ScanSpec:
    """Return the ``ScanSpec`` of a SELECT.

    :param columns: ``None`` for ``*``, else column strings (``cf``, ``cf:q``, ``cf:^p``, ``cf:/re/``).
    :param predicates: the WHERE terms joined by AND, in order.
    :param options: the options after the WHERE clause.
    :raises ClientException: HQL_PARSE_ERROR for an option or a TIMESTAMP, ROW
        REGEXP or VALUE REGEXP term given twice, OFFSET with CELL_OFFSET, or
        column predicates mixing AND and OR; BAD_SCAN_SPEC for ROW and CELL
        terms together (:ref:`hql`).
    """
    spec = ScanSpec(columns=columns)
    seen: set[str] = set()
    groups: list[tuple[ColumnPredicate, ...]] = []
    for predicate in predicates:
        if isinstance(predicate, RowPredicate):
            spec.row_intervals = (spec.row_intervals or []) + list(predicate.intervals)
        elif isinstance(predicate, CellPredicate):
            spec.cell_intervals = (spec.cell_intervals or []) + list(predicate.intervals)
        elif isinstance(predicate, TimePredicate):
            _once("TIMESTAMP predicate", seen)
            spec.start_time, spec.end_time = predicate.start, predicate.end
        elif isinstance(predicate, RowRegexp):
            _once("ROW REGEXP", seen)
            spec.row_regexp = predicate.pattern
        elif isinstance(predicate, ValueRegexp):
            _once("VALUE REGEXP", seen)
            spec.value_regexp = predicate.pattern
        else:
            groups.append(predicate.predicates)
    if spec.row_intervals and spec.cell_intervals:
        raise client_error(codes.BAD_SCAN_SPEC, "ROW and CELL predicates cannot be combined in one SELECT")
    if groups:
        if len(groups) > 1 and any(len(group) > 1 for group in groups):
            raise client_error(codes.HQL_PARSE_ERROR, "column predicates must be joined all by AND "
                               "or all by OR, not a mix of both")
        spec.column_predicates = [p for group in groups for p in group]
        spec.and_column_predicates = len(spec.column_predicates) == 1 or len(groups) > 1
    for key, value in options:
        _once(OPTION_NAMES[key], seen)
        setattr(spec, key, value)
    if "OFFSET" in seen and "CELL_OFFSET" in seen:
        raise client_error(codes.HQL_PARSE_ERROR, "SELECT takes OFFSET or CELL_OFFSET, not both")
    return spec
