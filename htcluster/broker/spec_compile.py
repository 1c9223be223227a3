"""A ``ScanSpec`` checked against a table schema and compiled into a :class:`Plan` (:ref:`broker-types`).

:func:`check` raises the ScanSpec errors the broker reports at once
(``scanner_open``); :func:`compile_spec` raises those it reports with the
first fetch (an unknown column family, an interval whose start is after its
end, a bad regular expression) and precomputes what ``cell_filter.py`` filters with:
the intervals in the order given; per selected family a :class:`FamilyPlan`
(qualifier tests, versions as the min of ``ScanSpec.versions`` and
MAX_VERSIONS with 0 meaning unlimited, the TTL cutoff, column predicates);
the time window ``[start_time, end_time)``, compiled regexps, limits and
offsets.  Every regexp is compiled here, once per scan, with RE2.

One engine, RE2, for every regexp (row, value, qualifier in ``columns``,
column predicates), as Hypertable itself evaluates them with RE2: matching
is linear in the subject, so no pattern can stall the broker, and RE2's
syntax is the syntax accepted (no backreferences, no lookaround).  A match
is a search anywhere in the subject (upstream's ``RE2::PartialMatch``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, AnyStr, Callable, Optional

import re2

from .. import codes
from .._thrift.ttypes import CellInterval, RowInterval, ScanSpec
from .._thrift.ttypes import ColumnPredicateOperation as Op
from ._errors import client_error
from .table_schema import Family, TableSchema

__all__ = ["MAX_PREDICATES", "FamilyPlan", "Interval", "Plan", "Predicate", "Test", "check", "compile_spec",
           "in_bounds"]

#: Upstream refuses more column predicates than this (:ref:`error-codes`).
MAX_PREDICATES = 32
NANOS_PER_SECOND = 1_000_000_000


@dataclass
class Interval:
    """One interval: an SQL row range plus, for cell intervals, (row, fid, qualifier) bounds."""

    start: str = ""
    start_inclusive: bool = True
    end: Optional[str] = None
    end_inclusive: bool = True
    lo: Optional[tuple] = None  # (key tuple, inclusive); key is (row, fid) or (row, fid, qualifier)
    hi: Optional[tuple] = None
    rowset: Optional[frozenset] = None


#: A compiled exact / prefix / regexp test of a qualifier (``str``) or a value (``bytes``).
Test = Callable[[AnyStr], bool]


#: RE2 options of every scan regexp: UTF-8 (upstream's default), errors raised rather than logged.
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False

#: A compiled RE2 pattern (``re2._Regexp``); ``.search(subject)`` is a match or ``None``.
Pattern = Any


def _compile(pattern: AnyStr, what: str = "regular expression") -> Pattern:
    """Compile a regexp of the spec with RE2.

    :param pattern: ``str`` for rows and qualifiers, ``bytes`` (UTF-8) for values.
    :param what: which field of the spec it is, for the message.
    :raises ClientException: BAD_SCAN_SPEC naming the pattern when RE2 refuses it
        (bad syntax, a backreference, lookaround) or it is not valid text.
    """
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        why = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
    except (UnicodeError, TypeError, ValueError) as exc:
        why = str(exc)
    shown = pattern.decode("utf-8", "replace") if isinstance(pattern, bytes) else pattern
    raise client_error(codes.BAD_SCAN_SPEC, f"bad {what} '{shown}': RE2 does not accept it ({why}); "
                       "regexps use RE2 syntax, as in Hypertable: no backreferences or lookaround")


def _test(kind: str, text: AnyStr, what: str = "regular expression") -> Test:
    """Return the test of ``kind`` (``"exact"``, ``"prefix"`` or ``"regex"``) against ``text``.

    :param what: which regexp of the spec it is, for the message.
    :raises ClientException: BAD_SCAN_SPEC for a regexp that RE2 refuses.
    """
    if kind == "exact":
        return lambda subject: subject == text
    if kind == "prefix":
        return lambda subject: subject.startswith(text)
    search = _compile(text, what).search
    return lambda subject: search(subject) is not None


@dataclass
class Predicate:
    """One ``ColumnPredicate``: its position in the spec and its qualifier and value tests."""

    index: int
    qualifier: Optional[Test]
    value: Optional[Test]

    def matches(self, qualifier: str, value: bytes) -> bool:
        """Return whether a cell with this qualifier and value satisfies the predicate."""
        return ((self.qualifier is None or self.qualifier(qualifier))
                and (self.value is None or self.value(value)))


@dataclass
class FamilyPlan:
    """How the cells of one selected column family are filtered."""

    name: str
    qualifiers: Optional[list[Test]] = None  # None: every qualifier
    versions: int = 0  # 0: unlimited
    cutoff: Optional[int] = None  # oldest visible timestamp (TTL), ns; None: no TTL
    time_order_desc: bool = False
    predicates: list[Predicate] = field(default_factory=list)
    counter: bool = False  # COUNTER: the writes of a cell are summed


@dataclass
class Plan:
    """What a scan filters with; ``families`` holds only the selected families, by family id."""

    intervals: list[Interval]
    families: dict[int, FamilyPlan]
    all_families: bool = True  # every family of the schema is selected
    start_time: float = -math.inf
    end_time: float = math.inf
    row_regexp: Optional[Pattern] = None
    value_regexp: Optional[Pattern] = None
    predicate_count: int = 0
    and_predicates: bool = False
    keys_only: bool = False
    return_deletes: bool = False
    row_limit: int = 0
    cell_limit: int = 0
    cell_limit_per_family: int = 0
    row_offset: int = 0
    cell_offset: int = 0


def check(spec: Optional[ScanSpec]) -> None:
    """Raise the ScanSpec errors the broker reports immediately (:ref:`broker-types`).

    :raises ClientException: BAD_SCAN_SPEC (row and cell intervals together,
        both offsets), FAILED_EXPECTATION (more than 32 column predicates).
    """
    if spec is None:
        return
    if spec.row_intervals and spec.cell_intervals:
        raise client_error(codes.BAD_SCAN_SPEC, "row intervals and cell intervals cannot be combined; use one kind")
    if spec.row_offset and spec.cell_offset:
        raise client_error(codes.BAD_SCAN_SPEC, "row_offset and cell_offset are mutually exclusive; set one")
    if len(spec.column_predicates or ()) > MAX_PREDICATES:
        raise client_error(codes.FAILED_EXPECTATION, f"at most {MAX_PREDICATES} column predicates are allowed")


def compile_spec(spec: ScanSpec, schema: TableSchema, now: int) -> Plan:
    """Check ``spec`` against ``schema`` and precompute the filters.

    :param now: nanoseconds since the epoch; sets the TTL cutoffs.
    :raises ClientException: RANGESERVER_INVALID_COLUMNFAMILY (unknown family in
        ``columns`` or a predicate), BAD_SCAN_SPEC (start after end, an empty
        interval, a cell interval naming an unknown family, a bad regexp).
    """
    selected: dict[int, Optional[list[Test]]] = {}  # fid -> qualifier tests, None for all
    for column in spec.columns or ():
        fam, test = _parse_column(schema, column)
        if test is None or selected.get(fam.id, []) is None:
            selected[fam.id] = None
        else:
            selected.setdefault(fam.id, []).append(test)  # type: ignore[union-attr]
    if not spec.columns:
        selected = {f.id: None for f in schema.families}
    families = {fid: _family_plan(schema.by_id[fid], tests, spec.versions or 0, now)
                for fid, tests in selected.items()}
    plan = Plan(_intervals(spec, schema), families, all_families=len(families) == len(schema.families))
    if spec.start_time is not None:
        plan.start_time = spec.start_time
    if spec.end_time is not None:
        plan.end_time = spec.end_time
    if spec.row_regexp:
        plan.row_regexp = _compile(spec.row_regexp, "row regexp")
    if spec.value_regexp:
        plan.value_regexp = _compile(_utf8(spec.value_regexp), "value regexp")
    for cp in spec.column_predicates or ():
        if not cp.column_family:
            continue
        fam = _family(schema, cp.column_family, "a column predicate")
        predicate = _predicate(plan.predicate_count, cp.operation or 0, cp.column_qualifier, cp.value)
        plan.predicate_count += 1
        if fam.id in families:  # a predicate on a family not selected never matches
            families[fam.id].predicates.append(predicate)
    plan.and_predicates = bool(spec.and_column_predicates)
    plan.keys_only, plan.return_deletes = bool(spec.keys_only), bool(spec.return_deletes)
    plan.row_limit, plan.cell_limit = max(spec.row_limit or 0, 0), max(spec.cell_limit or 0, 0)
    plan.cell_limit_per_family = max(spec.cell_limit_per_family or 0, 0)
    plan.row_offset, plan.cell_offset = max(spec.row_offset or 0, 0), max(spec.cell_offset or 0, 0)
    return plan


def _family_plan(fam: Family, qualifiers: Optional[list[Test]], versions: int, now: int) -> FamilyPlan:
    """Return the filters of a selected family; ``versions`` is ``ScanSpec.versions`` (0 unlimited)."""
    cutoff = now - fam.ttl * NANOS_PER_SECOND if fam.ttl else None
    return FamilyPlan(fam.name, qualifiers, _min_versions(versions, fam.max_versions), cutoff, fam.time_order_desc,
                      counter=fam.counter)


def _min_versions(wanted: int, kept: int) -> int:
    """Return min(wanted, kept) where 0 means unlimited on either side."""
    if wanted <= 0:
        return kept
    return wanted if kept <= 0 else min(wanted, kept)


def _family(schema: TableSchema, name: str, where: str, code: int = codes.RANGESERVER_INVALID_COLUMNFAMILY) -> Family:
    fam = schema.by_name.get(name)
    if fam is None:
        raise client_error(code, f"unknown column family {name!r} in {where}; the table has {sorted(schema.by_name)}")
    return fam


def _parse_column(schema: TableSchema, column: str) -> tuple[Family, Optional[Test]]:
    """Parse ``cf``, ``cf:q``, ``cf:^prefix``, ``cf:/regexp/`` or ``cf:*`` (upstream ``ScanSpec::parse_column``)."""
    name, colon, qualifier = column.partition(":")
    fam = _family(schema, name, f"ScanSpec.columns entry {column!r}")
    if not colon:
        return fam, None
    if len(qualifier) > 2 and qualifier.startswith("/") and qualifier.endswith("/"):
        return fam, _test("regex", qualifier[1:-1], f"qualifier regexp of column {column!r}")
    if qualifier.startswith("*"):
        return fam, None
    if qualifier.startswith("^"):
        return fam, _test("prefix", qualifier[1:])
    return fam, _test("exact", qualifier)


#: ColumnPredicateOperation bits -> test kind, value bits then qualifier bits (:ref:`broker-types`).
_VALUE_KINDS = ((Op.EXACT_MATCH, "exact"), (Op.PREFIX_MATCH, "prefix"), (Op.REGEX_MATCH, "regex"))
_QUALIFIER_KINDS = ((Op.QUALIFIER_EXACT_MATCH, "exact"), (Op.QUALIFIER_PREFIX_MATCH, "prefix"),
                    (Op.QUALIFIER_REGEX_MATCH, "regex"))


def _predicate(index: int, operation: int, qualifier: Optional[str], value: Optional[str]) -> Predicate:
    """Compile one ``ColumnPredicate``; the first matching bit of each group wins."""
    q_kind = next((kind for bit, kind in _QUALIFIER_KINDS if operation & bit), None)
    v_kind = next((kind for bit, kind in _VALUE_KINDS if operation & bit), None)
    return Predicate(index,
                     None if q_kind is None else _test(q_kind, qualifier or "", "predicate qualifier regexp"),
                     None if v_kind is None else _test(v_kind, _utf8(value or ""), "predicate value regexp"))


def _utf8(text: str) -> bytes:
    """Encode a value pattern; a lone surrogate is BAD_SCAN_SPEC, not an internal error."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise client_error(codes.BAD_SCAN_SPEC, f"pattern {text!r} is not valid text: {exc}") from None


def _row_of(text: Optional[str], binary: Optional[bytes], what: str = "row") -> Optional[str]:
    """Return the string row, else the binary one (used only when the string is absent).

    :param what: which bound it is, for the message.
    :raises ClientException: BAD_KEY when the binary row is not UTF-8 (row keys are UTF-8
        text here) or the row holds a NUL (it would end the key upstream).
    """
    if text is None and binary is not None:
        try:
            text = bytes(binary).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise client_error(codes.BAD_KEY, f"the {what} {bytes(binary)[:40]!r} is not valid UTF-8 (byte "
                                              f"0x{binary[exc.start]:02x} at offset {exc.start}); row keys must "
                                              "be UTF-8 text") from None
    return _no_nul(text, what)


def _no_nul(row: Optional[str], what: str) -> Optional[str]:
    """Return ``row`` unless it holds a NUL, which ends a key upstream (BAD_KEY)."""
    if row and "\0" in row:
        raise client_error(codes.BAD_KEY, f"the {what} {row!r} holds a NUL byte; keys are C strings upstream, so "
                                          "NUL cannot be part of one")
    return row


def _intervals(spec: ScanSpec, schema: TableSchema) -> list[Interval]:
    if spec.row_intervals:
        intervals = [_row_interval(ri) for ri in spec.row_intervals if ri is not None]
        singles = [iv.start for iv in intervals if iv.end == iv.start]
        if spec.scan_and_filter_rows and intervals and len(singles) == len(intervals):
            rows = sorted(set(singles))
            return [Interval(rows[0], True, rows[-1], True, rowset=frozenset(rows))]
        return intervals or [Interval()]
    if spec.cell_intervals:
        return [_cell_interval(ci, schema) for ci in spec.cell_intervals if ci is not None] or [Interval()]
    return [Interval()]


def _row_interval(ri: RowInterval) -> Interval:
    start = _row_of(ri.start_row, ri.start_row_binary, "start row") or ""
    end = _row_of(ri.end_row, ri.end_row_binary, "end row") or None
    iv = Interval(start, bool(ri.start_inclusive) or not start, end, bool(ri.end_inclusive))
    if end is not None:
        if start > end:
            raise client_error(codes.BAD_SCAN_SPEC, f"row interval start {start!r} is after its end {end!r}")
        if start == end and not (iv.start_inclusive and iv.end_inclusive):
            raise client_error(codes.BAD_SCAN_SPEC, f"row interval [{start!r}, {end!r}] is empty "
                                                    "(equal ends, one exclusive)")
    return iv


def _cell_bound(schema: TableSchema, row: Optional[str], column: Optional[str]) -> tuple:
    row = _no_nul(row, "cell interval row")
    name, colon, qualifier = (column or "").partition(":")
    fam = _family(schema, name, f"cell interval column {column!r}", codes.BAD_SCAN_SPEC)
    return (row or "", fam.id, qualifier) if colon else (row or "", fam.id)


def _cell_interval(ci: CellInterval, schema: TableSchema) -> Interval:
    """Bounds as upstream's ScanContext: a column without qualifier covers the whole family."""
    iv = Interval()
    if ci.start_column:
        key = _cell_bound(schema, ci.start_row, ci.start_column)
        iv.start, iv.lo = key[0], (key, bool(ci.start_inclusive))
    if ci.end_column:
        key = _cell_bound(schema, ci.end_row, ci.end_column)
        iv.end, iv.hi = key[0], (key, bool(ci.end_inclusive))
    if iv.lo and iv.hi:
        lo, hi = iv.lo[0], iv.hi[0]
        if lo > hi:  # (row, fid) sorts before every (row, fid, qualifier)
            raise client_error(codes.BAD_SCAN_SPEC, f"cell interval start {lo} is after its end {hi}")
    return iv


def in_bounds(iv: Interval, row: str, fid: int, qualifier: str) -> bool:
    """Return whether the key (row, family id, qualifier) lies within the cell-interval bounds of ``iv``."""
    if iv.lo is not None:
        bound, inclusive = iv.lo
        key = (row, fid, qualifier)[:len(bound)]
        if key < bound or (key == bound and not inclusive):
            return False
    if iv.hi is not None:
        bound, inclusive = iv.hi
        key = (row, fid, qualifier)[:len(bound)]
        if key > bound or (key == bound and not inclusive):
            return False
    return True
