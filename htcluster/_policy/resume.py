"""Resuming a scan on another replica: what was delivered, and the scan of what is left.

``Replicas.scan`` delivers cells a whole row at a time; when its broker
fails, :class:`ScanProgress` gives the scan that continues just after the
last complete row delivered, with ``row_limit``/``cell_limit`` reduced by what
was delivered.  Pure values and functions: no I/O.
"""
from __future__ import annotations

import copy
from typing import Iterable, Iterator, Optional

from ..types import Cell, RowInterval, ScanSpec
from .versions import collapse

__all__ = ["ScanProgress", "scan_units"]


def scan_units(spec: ScanSpec) -> list[ScanSpec]:
    """Split a spec with several row (or cell) intervals into one spec per interval.

    The broker scans intervals one after the other with limits per interval
    (a broker applies limits per interval), so this changes nothing but makes resuming simple.
    ``scan_and_filter_rows`` specs are kept whole: they are one pass.
    """
    if spec.scan_and_filter_rows:
        return [spec]
    for field in ("row_intervals", "cell_intervals"):
        intervals = getattr(spec, field) or []
        if len(intervals) > 1:
            units = []
            for interval in intervals:
                unit = copy.copy(spec)
                setattr(unit, field, [interval])
                units.append(unit)
            return units
    return [spec]


class ScanProgress:
    """What a scan delivered so far, and the spec that continues it on another host.

    Cells are held back until their row is complete (the next row starts, or
    the scan ends), so that a resumed scan can start after a whole row.
    """

    def __init__(self, spec: ScanSpec, keep: int = 0) -> None:
        self.original = spec
        self.keep = keep  # versions per column kept by collapse (0: all)
        self.spec: Optional[ScanSpec] = spec
        self.buffer: list[Cell] = []
        self.last_row: Optional[str] = None   # last complete row delivered
        self.skip_through: Optional[str] = None  # rows <= this were delivered by an earlier attempt
        self.rows = 0    # complete rows delivered
        self.cells = 0   # raw cells (before collapse) of those rows

    def feed(self, batch: Iterable[Cell]) -> Iterator[Cell]:
        for cell in batch:
            row = cell.key.row
            if self.skip_through is not None and row <= self.skip_through:
                continue
            if self.buffer and row != self.buffer[0].key.row:
                yield from self._deliver()
            self.buffer.append(cell)

    def finish(self) -> Iterator[Cell]:
        if self.buffer:
            yield from self._deliver()
        self.spec = None

    def _deliver(self) -> Iterator[Cell]:
        row_cells, self.buffer = self.buffer, []
        self.last_row = row_cells[0].key.row
        self.rows += 1
        self.cells += len(row_cells)
        yield from collapse(row_cells, self.keep)

    def resume(self) -> None:
        """Set :attr:`spec` to the scan of what is left (``None``: nothing is)."""
        self.buffer = []
        spec = self.original
        if self.last_row is None:
            self.spec = spec
            return
        if spec.cell_intervals or spec.scan_and_filter_rows:
            # no interval starts "after row R" here: run the same scan again, skip what was delivered
            self.spec, self.skip_through = spec, self.last_row
            return
        rest = copy.copy(spec)
        interval = copy.copy(spec.row_intervals[0]) if spec.row_intervals else RowInterval()
        interval.start_row, interval.start_row_binary, interval.start_inclusive = self.last_row, None, False
        rest.row_intervals = [interval]
        rest.row_offset = rest.cell_offset = 0  # consumed before the first delivered row
        for limit, used in (("row_limit", self.rows), ("cell_limit", self.cells)):
            if getattr(spec, limit):
                left = getattr(spec, limit) - used
                if left <= 0:
                    self.spec = None
                    return
                setattr(rest, limit, left)
        self.spec = rest
