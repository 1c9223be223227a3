"""Reading cells: a ``ScanSpec`` applied to the store (:ref:`broker-types`).

The store yields the stored cells of each row of an interval in key order;
this module applies, per row: delete markers (a marker with timestamp T hides
versions with timestamp <= T; DELETE_CELL_VERSION hides exactly T), TTL, the
time window ``[start_time, end_time)``, the column selection, the cell
interval bounds, versions (min of ``ScanSpec.versions`` and the family's
MAX_VERSIONS, counted after deletes and time filtering, newest first, oldest
first for TIME_ORDER DESC families), value regexp, column predicates and
``cell_limit_per_family``; then, per interval, row/cell offsets and limits.
A COUNTER family's writes to one cell are first collapsed into one cell
holding their sum (:func:`_count`).

Column predicates: a cell of a family that has predicates is returned only if
it matches one of them; a row is returned only if some predicate matched in
it (all of them with ``and_column_predicates``).

``return_deletes`` adds the delete markers (``key.flag`` 0..3, an empty
family for DELETE_ROW) to the result; the cells they delete stay hidden, as
upstream's ``MergeScannerAccessGroup`` applies deletes to inserts whatever the
flag (:ref:`broker-types` "also returns").  A marker is returned when its family
is selected and it lies in the interval, at or after ``start_time`` and within
the family's TTL; ``end_time``, versions, qualifier selection, value regexp
and column predicates filter only inserts (upstream returns a delete "even if
it doesn't satisfy the ScanSpec timestamp/version requirement").

A visible cell stays a tuple until offsets and limits have passed it: only
the cells returned become Thrift ``Cell`` objects.

:func:`scan` raises the errors the broker raises at once (``scanner_open``;
:func:`.spec_compile.check`) and returns an iterator whose first ``next()``
raises the deferred ones.
"""
from __future__ import annotations

import time
from itertools import groupby
from operator import itemgetter
from typing import Iterator, Optional

from .._thrift.ttypes import Cell, KeyFlag, ScanSpec
from .cells import make_cell
from .spec_compile import Interval, Plan, check, compile_spec, in_bounds
from .table_schema import COUNTER_MIN, TableSchema, parse_counter
from .store import CellStore, RawCell

__all__ = ["scan"]

_INSERT = KeyFlag.INSERT
#: The column of a stored cell, (family id, qualifier): what versions are grouped by.
_COLUMN = itemgetter(1, 2)
#: One visible cell as :func:`make_cell`'s arguments; a ``Cell`` is built only once it is returned.
Entry = tuple


def scan(store: CellStore, table_id: int, schema: TableSchema, spec: Optional[ScanSpec]) -> Iterator[Cell]:
    """Yield the cells ``spec`` selects, interval after interval in the order given.

    :param table_id: the table's numeric id in ``store``.
    :param schema: the table's schema.
    :param spec: the scan; ``None`` reads every cell.
    :returns: an iterator of ``Cell``; its first ``next()`` raises the deferred errors.
    :raises ClientException: at once, the errors of :func:`check`; at the first
        ``next()``, RANGESERVER_INVALID_COLUMNFAMILY (unknown family in
        ``columns`` or a predicate), BAD_SCAN_SPEC (start after end, an empty
        interval, a bad regexp).
    """
    check(spec)
    return _scan(store, table_id, schema, spec or ScanSpec())


def _scan(store: CellStore, table_id: int, schema: TableSchema, spec: ScanSpec) -> Iterator[Cell]:
    plan = compile_spec(spec, schema, time.time_ns())
    families = None if plan.all_families else plan.families.keys()
    for iv in plan.intervals:
        rows = store.iter_rows(table_id, iv.start, iv.start_inclusive, iv.end, iv.end_inclusive, families)
        yield from _limit(plan, (_filter_row(plan, iv, row_cells) for row_cells in rows))


# ------------------------------------------------------------------- running

def _limit(plan: Plan, rows: Iterator[list[Entry]]) -> Iterator[Cell]:
    """Apply the offsets and limits of one interval to its filtered rows; build the cells returned."""
    rows_out = cells_out = rows_skipped = cells_skipped = 0
    for entries in rows:
        if not entries:
            continue
        if rows_skipped < plan.row_offset:
            rows_skipped += 1
            continue
        if cells_skipped < plan.cell_offset:
            skip = min(len(entries), plan.cell_offset - cells_skipped)
            cells_skipped += skip
            entries = entries[skip:]
            if not entries:
                continue
        if plan.cell_limit:
            entries = entries[:plan.cell_limit - cells_out]
        for entry in entries:
            yield make_cell(*entry)
        cells_out += len(entries)
        rows_out += 1
        if (plan.cell_limit and cells_out >= plan.cell_limit) or (plan.row_limit and rows_out >= plan.row_limit):
            return


def _filter_row(plan: Plan, iv: Interval, row_cells: list[RawCell]) -> list[Entry]:
    """Return the visible cells of one row, in key order."""
    row = row_cells[0].row
    if iv.rowset is not None and row not in iv.rowset:
        return []
    if plan.row_regexp is not None and not plan.row_regexp.search(row):
        return []
    out: list[Entry] = []
    bounded = iv.lo is not None or iv.hi is not None
    row_deleted = family_deleted = -1
    current_fid = -1
    per_family = 0
    hits: set[int] = set()
    for (fid, qualifier), group_iter in groupby(row_cells, key=_COLUMN):
        group = list(group_iter)
        if fid == 0:  # DELETE_ROW markers
            row_deleted = max(row_deleted, *(c.ts for c in group))
            if plan.return_deletes:
                out += [_marker(c, "") for c in group if c.ts >= plan.start_time]
            continue
        fam = plan.families.get(fid)
        if fam is None:  # not selected (or dropped): its markers hide nothing that is returned
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
        if bounded and not in_bounds(iv, row, fid, qualifier):
            continue
        cutoff = fam.cutoff
        if plan.return_deletes:
            out += [_marker(c, fam.name) for c in markers
                    if c.ts >= plan.start_time and (cutoff is None or c.ts >= cutoff)]
        if fam.qualifiers is not None and not any(test(qualifier) for test in fam.qualifiers):
            continue
        hidden = max(row_deleted, family_deleted, cell_deleted)
        start, end = plan.start_time, plan.end_time
        inserts = [c for c in inserts  # not deleted, not expired (TTL), inside the time window
                   if c.ts > hidden and c.ts not in version_deleted and (cutoff is None or c.ts >= cutoff)
                   and start <= c.ts < end]
        if fam.counter:
            inserts = _count(inserts)
        if fam.time_order_desc:
            inserts.reverse()
        versions = 0
        for c in inserts:
            ts = c.ts
            versions += 1
            if fam.versions and versions > fam.versions:
                break
            if plan.value_regexp is not None and not plan.value_regexp.search(c.value):
                continue
            if fam.predicates:
                matched = [p.index for p in fam.predicates if p.matches(qualifier, c.value)]
                if not matched:
                    continue
                hits.update(matched)
            if plan.cell_limit_per_family and per_family >= plan.cell_limit_per_family:
                break
            per_family += 1
            out.append((row, fam.name, qualifier, ts, c.rev, _INSERT, None if plan.keys_only else c.value))
    if plan.predicate_count and len(hits) < (plan.predicate_count if plan.and_predicates else 1):
        return []
    return out


def _count(inserts: list[RawCell]) -> list[RawCell]:
    """Collapse the visible writes of one COUNTER cell into its value: at most one cell, the sum as text.

    The writes (deletes, TTL and the time window already applied) are read
    newest first: deltas add up until a reset (``=N``), which is the base;
    the sum wraps as a signed 64-bit integer.  The cell keeps the timestamp
    and revision of the newest write.  A value that is not a counter write
    (stored before the family became a COUNTER) counts as 0.
    """
    total, newest = 0, None
    for c in inserts:
        newest = newest or c
        parsed = parse_counter(c.value)
        if parsed is None:
            continue
        reset, amount = parsed
        total += amount
        if reset:
            break
    if newest is None:
        return []
    total = (total - COUNTER_MIN) % 2**64 + COUNTER_MIN
    return [newest._replace(value=str(total).encode("ascii"))]


def _marker(c: RawCell, family: str) -> Entry:
    return (c.row, family, c.qualifier, c.ts, c.rev, c.flag, None)
