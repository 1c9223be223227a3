"""Reading cells: a ``ScanSpec`` applied to the store (protocol.md 5.2 and 5.3).

The store yields the stored cells of each row of an interval in key order;
this module applies, per row: delete markers (a marker with timestamp T hides
versions with timestamp <= T; DELETE_CELL_VERSION hides exactly T), TTL, the
time window ``[start_time, end_time)``, the column selection, the cell
interval bounds, versions (min of ``ScanSpec.versions`` and the family's
MAX_VERSIONS, counted after deletes and time filtering, newest first, oldest
first for TIME_ORDER DESC families), value regexp, column predicates and
``cell_limit_per_family``; then, per interval, row/cell offsets and limits.

Column predicates: a cell of a family that has predicates is returned only if
it matches one of them; a row is returned only if some predicate matched in
it (all of them with ``and_column_predicates``).

:func:`check` raises the errors the broker raises at once (``scanner_open``);
:func:`scan` is a generator whose first ``next()`` raises the deferred ones.
"""
from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from itertools import groupby
from typing import Iterator, Optional, Pattern

from .. import codes
from .._thrift.ttypes import Cell, ColumnPredicateOperation as Op, KeyFlag, ScanSpec
from ._errors import client_error
from .cells import make_cell
from .schema import Family, TableSchema
from .store import RawCell, Store

__all__ = ["check", "scan"]

#: Upstream refuses more column predicates than this (protocol.md 4).
MAX_PREDICATES = 32
_INSERT = KeyFlag.INSERT
_VALUE_BITS = Op.EXACT_MATCH | Op.PREFIX_MATCH | Op.REGEX_MATCH


@dataclass
class _Interval:
    """One interval: an SQL row range plus, for cell intervals, (row, fid, qualifier) bounds."""

    start: str = ""
    start_inclusive: bool = True
    end: Optional[str] = None
    end_inclusive: bool = True
    lo: Optional[tuple] = None  # (key tuple, inclusive); key is (row, fid) or (row, fid, qualifier)
    hi: Optional[tuple] = None
    rowset: Optional[frozenset] = None


class _Matcher:
    """Exact / prefix / regexp test of a string (qualifiers) or bytes (values)."""

    def __init__(self, kind: str, text: "str | bytes") -> None:
        self.kind, self.text = kind, text
        self.regex: Optional[Pattern] = None
        if kind == "regex":
            try:
                self.regex = re.compile(text)
            except re.error as exc:
                raise client_error(codes.BAD_SCAN_SPEC, f"bad regular expression {text!r}: {exc}") from None

    def __call__(self, subject: "str | bytes") -> bool:
        if self.kind == "exact":
            return subject == self.text
        if self.kind == "prefix":
            return subject.startswith(self.text)  # type: ignore[arg-type]
        return self.regex.search(subject) is not None  # type: ignore[union-attr, arg-type]


@dataclass
class _Predicate:
    index: int
    qualifier: Optional[_Matcher]
    value: Optional[_Matcher]

    def matches(self, qualifier: str, value: bytes) -> bool:
        return ((self.qualifier is None or self.qualifier(qualifier))
                and (self.value is None or self.value(value)))


@dataclass
class _Plan:
    schema: TableSchema
    intervals: list[_Interval]
    families: dict[int, Optional[list[_Matcher]]]  # fid -> qualifier matchers (None: all qualifiers)
    versions: dict[int, int]
    cutoff: dict[int, int]  # fid -> oldest visible timestamp (TTL)
    start_time: float = -math.inf
    end_time: float = math.inf
    row_regexp: Optional[Pattern] = None
    value_regexp: Optional[Pattern] = None
    predicates: dict[int, list[_Predicate]] = field(default_factory=dict)
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
    """Raise the ScanSpec errors the broker reports immediately (protocol.md 5.2).

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


def scan(store: Store, table_id: int, schema: TableSchema, spec: Optional[ScanSpec]) -> Iterator[Cell]:
    """Yield the cells ``spec`` selects, interval after interval in the order given.

    The first ``next()`` raises the deferred errors: RANGESERVER_INVALID_COLUMNFAMILY
    (unknown family in ``columns`` or a predicate), BAD_SCAN_SPEC (start after
    end, an empty interval, a bad regexp).
    """
    check(spec)
    plan = _compile(spec or ScanSpec(), schema, time.time_ns())
    for interval in plan.intervals:
        yield from _scan_interval(store, table_id, plan, interval)


# ------------------------------------------------------------------ compiling

def _compile(spec: ScanSpec, schema: TableSchema, now: int) -> _Plan:
    """Check ``spec`` against ``schema`` and precompute the filters; ``now`` in ns sets TTL cutoffs."""
    families: dict[int, Optional[list[_Matcher]]] = {}
    for column in spec.columns or ():
        fam, matcher = _parse_column(schema, column)
        if matcher is None or families.get(fam.id, []) is None:
            families[fam.id] = None
        else:
            families.setdefault(fam.id, []).append(matcher)  # type: ignore[union-attr]
    if not spec.columns:
        families = {f.id: None for f in schema.families}
    plan = _Plan(schema, _intervals(spec, schema), families,
                 versions={f.id: _min_versions(spec.versions or 0, f.max_versions) for f in schema.families},
                 cutoff={f.id: now - f.ttl * 1_000_000_000 for f in schema.families if f.ttl})
    if spec.start_time is not None:
        plan.start_time = spec.start_time
    if spec.end_time is not None:
        plan.end_time = spec.end_time
    if spec.row_regexp:
        plan.row_regexp = _Matcher("regex", spec.row_regexp).regex
    if spec.value_regexp:
        plan.value_regexp = _Matcher("regex", spec.value_regexp.encode("utf-8")).regex
    for cp in spec.column_predicates or ():
        if not cp.column_family:
            continue
        fam = schema.by_name.get(cp.column_family)
        if fam is None:
            raise client_error(codes.RANGESERVER_INVALID_COLUMNFAMILY,
                               f"column predicate names unknown column family {cp.column_family!r}")
        plan.predicates.setdefault(fam.id, []).append(_predicate(plan.predicate_count, cp.operation or 0,
                                                                 cp.column_qualifier, cp.value))
        plan.predicate_count += 1
    plan.and_predicates = bool(spec.and_column_predicates)
    plan.keys_only, plan.return_deletes = bool(spec.keys_only), bool(spec.return_deletes)
    plan.row_limit, plan.cell_limit = max(spec.row_limit or 0, 0), max(spec.cell_limit or 0, 0)
    plan.cell_limit_per_family = max(spec.cell_limit_per_family or 0, 0)
    plan.row_offset, plan.cell_offset = max(spec.row_offset or 0, 0), max(spec.cell_offset or 0, 0)
    return plan


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


def _parse_column(schema: TableSchema, column: str) -> tuple[Family, Optional[_Matcher]]:
    """Parse ``cf``, ``cf:q``, ``cf:^prefix``, ``cf:/regexp/`` or ``cf:*`` (upstream ``ScanSpec::parse_column``)."""
    name, colon, qualifier = column.partition(":")
    fam = _family(schema, name, f"ScanSpec.columns entry {column!r}")
    if not colon:
        return fam, None
    if len(qualifier) > 2 and qualifier.startswith("/") and qualifier.endswith("/"):
        return fam, _Matcher("regex", qualifier[1:-1])
    if qualifier.startswith("*"):
        return fam, None
    if qualifier.startswith("^"):
        return fam, _Matcher("prefix", qualifier[1:])
    return fam, _Matcher("exact", qualifier)


def _predicate(index: int, operation: int, qualifier: Optional[str], value: Optional[str]) -> _Predicate:
    q_matcher = v_matcher = None
    if operation & Op.QUALIFIER_EXACT_MATCH:
        q_matcher = _Matcher("exact", qualifier or "")
    elif operation & Op.QUALIFIER_PREFIX_MATCH:
        q_matcher = _Matcher("prefix", qualifier or "")
    elif operation & Op.QUALIFIER_REGEX_MATCH:
        q_matcher = _Matcher("regex", qualifier or "")
    raw = (value or "").encode("utf-8")
    if operation & Op.EXACT_MATCH:
        v_matcher = _Matcher("exact", raw)
    elif operation & Op.PREFIX_MATCH:
        v_matcher = _Matcher("prefix", raw)
    elif operation & Op.REGEX_MATCH:
        v_matcher = _Matcher("regex", raw)
    return _Predicate(index, q_matcher, v_matcher)


def _row_of(text: Optional[str], binary: Optional[bytes]) -> Optional[str]:
    """Return the string row, else the binary one (used only when the string is absent)."""
    if text is not None:
        return text
    return None if binary is None else binary.decode("utf-8", "replace")


def _intervals(spec: ScanSpec, schema: TableSchema) -> list[_Interval]:
    if spec.row_intervals:
        intervals = [_row_interval(ri) for ri in spec.row_intervals if ri is not None]
        singles = [iv.start for iv in intervals if iv.end == iv.start]
        if spec.scan_and_filter_rows and intervals and len(singles) == len(intervals):
            rows = sorted(set(singles))
            return [_Interval(rows[0], True, rows[-1], True, rowset=frozenset(rows))]
        return intervals or [_Interval()]
    if spec.cell_intervals:
        return [_cell_interval(ci, schema) for ci in spec.cell_intervals if ci is not None] or [_Interval()]
    return [_Interval()]


def _row_interval(ri) -> _Interval:
    start = _row_of(ri.start_row, ri.start_row_binary) or ""
    end = _row_of(ri.end_row, ri.end_row_binary) or None
    iv = _Interval(start, bool(ri.start_inclusive) or not start, end, bool(ri.end_inclusive))
    if end is not None:
        if start > end:
            raise client_error(codes.BAD_SCAN_SPEC, f"row interval start {start!r} is after its end {end!r}")
        if start == end and not (iv.start_inclusive and iv.end_inclusive):
            raise client_error(codes.BAD_SCAN_SPEC, f"row interval [{start!r}, {end!r}] is empty "
                                                    "(equal ends, one exclusive)")
    return iv


def _cell_bound(schema: TableSchema, row: Optional[str], column: Optional[str]) -> tuple:
    name, colon, qualifier = (column or "").partition(":")
    fam = _family(schema, name, f"cell interval column {column!r}", codes.BAD_SCAN_SPEC)
    return (row or "", fam.id, qualifier) if colon else (row or "", fam.id)


def _cell_interval(ci, schema: TableSchema) -> _Interval:
    """Bounds as upstream's ScanContext: a column without qualifier covers the whole family."""
    iv = _Interval()
    if ci.start_column:
        key = _cell_bound(schema, ci.start_row, ci.start_column)
        iv.start, iv.lo = key[0], (key, bool(ci.start_inclusive))
    if ci.end_column:
        key = _cell_bound(schema, ci.end_row, ci.end_column)
        iv.end, iv.hi = key[0], (key, bool(ci.end_inclusive))
    if iv.lo and iv.hi:
        lo, hi = iv.lo[0], iv.hi[0]
        if lo[0] > hi[0] or (lo[0] == hi[0] and (lo[1] > hi[1] or (lo[1] == hi[1] and lo[2:] > hi[2:]))):
            raise client_error(codes.BAD_SCAN_SPEC, f"cell interval start {lo} is after its end {hi}")
    return iv


def _in_bounds(iv: _Interval, row: str, fid: int, qualifier: str) -> bool:
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


# ------------------------------------------------------------------- running

def _scan_interval(store: Store, table_id: int, plan: _Plan, iv: _Interval) -> Iterator[Cell]:
    rows_out = cells_out = rows_skipped = cells_skipped = 0
    for row_cells in store.iter_rows(table_id, iv.start, iv.start_inclusive, iv.end, iv.end_inclusive):
        row = row_cells[0].row
        if iv.rowset is not None and row not in iv.rowset:
            continue
        if plan.row_regexp is not None and not plan.row_regexp.search(row):
            continue
        out = _filter_row(plan, iv, row, row_cells)
        if not out:
            continue
        if rows_skipped < plan.row_offset:
            rows_skipped += 1
            continue
        yielded = False
        for cell in out:
            if cells_skipped < plan.cell_offset:
                cells_skipped += 1
                continue
            yield cell
            yielded = True
            cells_out += 1
            if plan.cell_limit and cells_out >= plan.cell_limit:
                return
        rows_out += yielded
        if plan.row_limit and rows_out >= plan.row_limit:
            return


def _filter_row(plan: _Plan, iv: _Interval, row: str, row_cells: list[RawCell]) -> list[Cell]:
    """Return the visible cells of one row, in key order."""
    out: list[Cell] = []
    schema = plan.schema
    row_deleted = family_deleted = -1
    current_fid = -1
    per_family = 0
    hits: set[int] = set()
    for (fid, qualifier), group_iter in groupby(row_cells, key=lambda c: (c.family, c.qualifier)):
        group = list(group_iter)
        if fid == 0:  # DELETE_ROW markers
            row_deleted = max([row_deleted] + [c.ts for c in group])
            if plan.return_deletes:
                out += [_marker(c, "") for c in group if plan.start_time <= c.ts < plan.end_time]
            continue
        if fid != current_fid:
            current_fid, family_deleted, per_family = fid, -1, 0
        cell_deleted, version_deleted, inserts, markers = -1, set(), [], []
        for c in group:
            if c.flag == _INSERT:
                inserts.append(c)
                continue
            markers.append(c)
            if c.flag == KeyFlag.DELETE_CF:
                family_deleted = max(family_deleted, c.ts)
            elif c.flag == KeyFlag.DELETE_CELL:
                cell_deleted = max(cell_deleted, c.ts)
            else:
                version_deleted.add(c.ts)
        fam = schema.by_id.get(fid)
        if fam is None or fid not in plan.families:
            continue
        selectors = plan.families[fid]
        if selectors is not None and not any(m(qualifier) for m in selectors):
            continue
        if (iv.lo is not None or iv.hi is not None) and not _in_bounds(iv, row, fid, qualifier):
            continue
        if plan.return_deletes:
            out += [_marker(c, fam.name) for c in markers if plan.start_time <= c.ts < plan.end_time]
        hidden = max(row_deleted, family_deleted, cell_deleted)
        if fam.time_order_desc:
            inserts.reverse()
        limit, cutoff, versions = plan.versions.get(fid, 0), plan.cutoff.get(fid), 0
        predicates = plan.predicates.get(fid)
        for c in inserts:
            ts = c.ts
            if ts <= hidden or ts in version_deleted or (cutoff is not None and ts < cutoff):
                continue
            if not plan.start_time <= ts < plan.end_time:
                continue
            versions += 1
            if limit and versions > limit:
                break
            if plan.value_regexp is not None and not plan.value_regexp.search(c.value):
                continue
            if predicates is not None:
                matched = [p.index for p in predicates if p.matches(qualifier, c.value)]
                if not matched:
                    continue
                hits.update(matched)
            if plan.cell_limit_per_family and per_family >= plan.cell_limit_per_family:
                break
            per_family += 1
            out.append(make_cell(row, fam.name, qualifier, ts, c.rev, _INSERT, None if plan.keys_only else c.value))
    if plan.predicate_count:
        wanted = plan.predicate_count if plan.and_predicates else 1
        if len(hits) < wanted:
            return []
    return out


def _marker(c: RawCell, family: str) -> Cell:
    return make_cell(c.row, family, c.qualifier, c.ts, c.rev, c.flag, None)
