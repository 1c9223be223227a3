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

``return_deletes`` adds the delete markers (``key.flag`` 0..3, an empty
family for DELETE_ROW) to the result; the cells they delete stay hidden, as
upstream's ``MergeScannerAccessGroup`` applies deletes to inserts whatever the
flag (protocol.md 5.2 "also returns").  A marker is returned when its family
is selected and it lies in the interval, at or after ``start_time`` and within
the family's TTL; ``end_time``, versions, qualifier selection, value regexp
and column predicates filter only inserts (upstream returns a delete "even if
it doesn't satisfy the ScanSpec timestamp/version requirement").

:func:`check` (from :mod:`.scan_plan`) raises the errors the broker raises at
once (``scanner_open``); :func:`scan` is a generator whose first ``next()``
raises the deferred ones.
"""
from __future__ import annotations

import time
from itertools import groupby
from typing import Iterator, Optional

from .._thrift.ttypes import Cell, KeyFlag, ScanSpec
from .cells import make_cell
from .scan_plan import Interval, Plan, check, compile_spec, in_bounds
from .schema import TableSchema
from .store import RawCell, Store

__all__ = ["check", "scan"]

_INSERT = KeyFlag.INSERT


def scan(store: Store, table_id: int, schema: TableSchema, spec: Optional[ScanSpec]) -> Iterator[Cell]:
    """Yield the cells ``spec`` selects, interval after interval in the order given.

    The first ``next()`` raises the deferred errors: RANGESERVER_INVALID_COLUMNFAMILY
    (unknown family in ``columns`` or a predicate), BAD_SCAN_SPEC (start after
    end, an empty interval, a bad regexp).
    """
    check(spec)
    plan = compile_spec(spec or ScanSpec(), schema, time.time_ns())
    for interval in plan.intervals:
        yield from _scan_interval(store, table_id, plan, interval)


# ------------------------------------------------------------------- running

def _scan_interval(store: Store, table_id: int, plan: Plan, iv: Interval) -> Iterator[Cell]:
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


def _filter_row(plan: Plan, iv: Interval, row: str, row_cells: list[RawCell]) -> list[Cell]:
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
                out += [_marker(c, "") for c in group if c.ts >= plan.start_time]
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
        if (iv.lo is not None or iv.hi is not None) and not in_bounds(iv, row, fid, qualifier):
            continue
        cutoff = plan.cutoff.get(fid)
        if plan.return_deletes:
            out += [_marker(c, fam.name) for c in markers
                    if c.ts >= plan.start_time and (cutoff is None or c.ts >= cutoff)]
        selectors = plan.families[fid]
        if selectors is not None and not any(m(qualifier) for m in selectors):
            continue
        hidden = max(row_deleted, family_deleted, cell_deleted)
        if fam.time_order_desc:
            inserts.reverse()
        limit, versions = plan.versions.get(fid, 0), 0
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
