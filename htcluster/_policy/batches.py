"""The buffer of a mutator: cells per destination, counted and weighed, taken out as batches; no I/O.

A mutator (``Replicas.mutator``, ``Shards.mutator``) buffers cells here and
sends what :meth:`Buffer.take` hands out; this module decides *what* is
sent and keeps the books, the mutator only does the I/O (sync or asyncio):

* :meth:`Buffer.fill` appends cells to the batch of their destination (one
  batch for ``Replicas``, one per shard key for ``Shards``) until the buffer
  is :attr:`~Buffer.full` (``max_cells`` cells or ``max_bytes`` bytes,
  :func:`cell_size`): the caller must then flush before adding more, which
  bounds memory (backpressure, not an unbounded queue).
* :meth:`Buffer.take` empties the buffer into :class:`Batch` es whose cells
  are stamped as one write each (:meth:`Stamper.stamp_batch
  <htcluster._policy.stamps.Stamper.stamp_batch>`: one clock slot for a
  batch of distinct keys, later stamps where keys repeat, so the order of
  writes to one cell is kept); a stamped batch can be sent again, to any
  replica, without storing a new version.
* :meth:`Buffer.settle` books how a flush ended per batch (acknowledged, or
  failed with the broker's error) and returns the :class:`FlushReport`;
  :meth:`Buffer.put_back` returns batches whose outcome was not learnt (an
  interrupt) to the front of the buffer, so their cells are never dropped.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Hashable, Iterable, Optional, Sequence, TypedDict, cast

from ..errors import ConfigError, FlushError
from ..types import Cell
from .stamps import Stamper, default_stamper

__all__ = ["CELL_OVERHEAD", "DEFAULT_MAX_BYTES", "DEFAULT_MAX_CELLS", "Batch", "BatchStats", "Buffer", "FlushReport",
           "MutatorStats", "cell_size", "merge_errors", "with_rest"]

#: Cells buffered before a flush is due (a mutator's ``max_cells``).
DEFAULT_MAX_CELLS = 10_000
#: Bytes buffered before a flush is due (a mutator's ``max_bytes``, by :func:`cell_size`): 4 MiB.
DEFAULT_MAX_BYTES = 4 << 20
#: Bytes counted per cell on top of its names and value (key fields, framing).
CELL_OVERHEAD = 24


def cell_size(cell: Cell) -> int:
    """Return the bytes ``cell`` is counted for: its row, family, qualifier and value, plus :data:`CELL_OVERHEAD`.

    ``str`` names count one byte per character (an estimate, exact for ASCII).
    """
    key = cell.key
    size = CELL_OVERHEAD + len(cell.value or b"")
    if key is not None:
        size += len(key.row or "") + len(key.column_family or "") + len(key.column_qualifier or "")
    return size


class BatchStats(TypedDict):
    """Counters of one destination (a shard key; the one batch of ``Replicas``)."""

    #: Cells acknowledged.
    cells: int
    #: Bytes of those cells (:func:`cell_size`).
    bytes: int
    #: Batches acknowledged (``set_cells`` calls answered).
    flushes: int
    #: Times a batch moved to another host after a failure.
    failovers: int
    #: Cells handed back in a :class:`~htcluster.errors.FlushError`.
    failed: int


class MutatorStats(TypedDict):
    """What :meth:`Mutator.stats() <htcluster.Mutator.stats>` returns."""

    #: Cells in the buffer now (not yet sent).
    buffered: int
    #: Their bytes (:func:`cell_size`).
    buffered_bytes: int
    #: Cells acknowledged by the brokers, in all.
    acknowledged: int
    #: Flushes that sent something.
    flushes: int
    #: Batch moves to another host after a failure, in all.
    failovers: int
    #: Cells handed back in errors, in all.
    failed: int
    #: Per destination: ``{shard key: BatchStats}`` (``{None: ...}`` for ``Replicas``).
    shards: dict[Hashable, BatchStats]


@dataclass
class Batch:
    """The cells of one destination taken out of the buffer: one ``set_cells`` call (stamped)."""

    #: The destination: a shard key (``None`` for ``Replicas``).
    key: Hashable
    #: The cells, stamped, in the order they were buffered.
    cells: list[Cell]
    #: Their bytes by :func:`cell_size`.
    size: int


@dataclass
class FlushReport:
    """How one flush ended: what was acknowledged, and what goes back to the caller in a FlushError."""

    #: Cells acknowledged.
    acknowledged: int = 0
    #: The batches that failed, with why.
    failed: list[Batch] = field(default_factory=list)
    #: ``{key: exception}`` of the failed batches.
    errors: dict[Hashable, BaseException] = field(default_factory=dict)

    def error(self, table: str) -> Optional[FlushError]:
        """Return the :class:`FlushError` carrying every cell not acknowledged, or ``None`` when all were."""
        if not self.failed:
            return None
        cells = [cell for batch in self.failed for cell in batch.cells]
        return FlushError(f"a flush to {table} left {len(cells):,} cell(s) of {len(self.failed)} batch(es) "
                          "unacknowledged; they are in .cells, stamped: sending them again cannot apply them twice",
                          cells, self.errors)


def _limit(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive int, got {value!r}")
    return value


class Buffer:
    """Cells waiting to be sent, per destination key, with their count and bytes; not thread-safe (the
    mutator holds its lock around every method).

    :param max_cells: cells at which the buffer is :attr:`full` (int >= 1).
    :param max_bytes: bytes (:func:`cell_size`) at which it is full (int >= 1).
    :param stamper: stamps cells without a timestamp at :meth:`take` (default: the process's).
    :raises ConfigError: a limit is not a positive int.
    """

    def __init__(self, max_cells: int = DEFAULT_MAX_CELLS, max_bytes: int = DEFAULT_MAX_BYTES,
                 stamper: Optional[Stamper] = None) -> None:
        self.max_cells = _limit("max_cells", max_cells)
        self.max_bytes = _limit("max_bytes", max_bytes)
        self.stamper = stamper or default_stamper
        self.cells: dict[Hashable, list[Cell]] = {}
        self.sizes: dict[Hashable, int] = {}
        #: Cells buffered, and their bytes.
        self.count = 0
        self.size = 0
        self.stats: dict[Hashable, BatchStats] = {}
        self.flushes = 0

    @property
    def full(self) -> bool:
        """Whether the buffer holds ``max_cells`` cells or ``max_bytes`` bytes: flush before adding more."""
        return self.count >= self.max_cells or self.size >= self.max_bytes

    def __len__(self) -> int:
        return self.count

    def fill(self, cells: Sequence[Cell], start: int, route: Optional[Callable[[Cell], Hashable]]) -> int:
        """Append ``cells[start:]`` to their destinations' batches until the buffer is :attr:`full`.

        :param cells: the caller's cells (not copied: do not change them until flushed).
        :param start: the index of the first cell to add.
        :param route: ``cell -> destination key`` (``None``: every cell to the key ``None``).
        :returns: the index of the first cell not added (``len(cells)`` when all were).
        :raises TypeError: an item is not a :class:`~htcluster.types.Cell` (nothing of it is added).
        """
        end = len(cells)
        i = start
        count, size = self.count, self.size
        max_cells, max_bytes = self.max_cells, self.max_bytes
        batches, sizes = self.cells, self.sizes
        overhead = CELL_OVERHEAD
        try:
            while i < end and count < max_cells and size < max_bytes:
                cell = cells[i]
                if not isinstance(cell, Cell):
                    raise TypeError(f"a mutator takes htcluster.types.Cell values, got {type(cell).__name__} "
                                    f"{cell!r:.80}")
                k = cell.key  # cell_size(cell), inlined: this loop runs once per cell written
                n = overhead + len(cell.value or b"")
                if k is not None:
                    n += len(k.row or "") + len(k.column_family or "") + len(k.column_qualifier or "")
                key = None if route is None else route(cell)
                batch = batches.get(key)
                if batch is None:
                    batches[key] = batch = []
                    sizes[key] = 0
                batch.append(cell)
                sizes[key] += n
                count += 1
                size += n
                i += 1
        finally:
            self.count, self.size = count, size
        return i

    def take(self) -> list[Batch]:
        """Empty the buffer into one stamped :class:`Batch` per destination (none when it was empty)."""
        stamp = self.stamper.stamp_batch
        out = [Batch(key, cast(list[Cell], stamp(cells)), self.sizes[key])
               for key, cells in self.cells.items() if cells]
        self.cells, self.sizes = {}, {}
        self.count = self.size = 0
        return out

    def put_back(self, batches: Iterable[Batch]) -> None:
        """Return ``batches`` (whose outcome is unknown) to the front of the buffer, before what came since."""
        for batch in batches:
            self.cells[batch.key] = batch.cells + self.cells.get(batch.key, [])
            self.sizes[batch.key] = batch.size + self.sizes.get(batch.key, 0)
            self.count += len(batch.cells)
            self.size += batch.size

    def pending(self) -> list[Cell]:
        """Return the cells in the buffer (stamped where they were already sent once), destination by destination."""
        return [cell for cells in self.cells.values() for cell in cells]

    def _stats_of(self, key: Hashable) -> BatchStats:
        stats = self.stats.get(key)
        if stats is None:
            self.stats[key] = stats = {"cells": 0, "bytes": 0, "flushes": 0, "failovers": 0, "failed": 0}
        return stats

    def settle(self, batches: Sequence[Batch], errors: dict[Hashable, BaseException],
               failovers: dict[Hashable, int]) -> FlushReport:
        """Book how a flush of ``batches`` ended; the batches without an error were acknowledged.

        :param batches: what :meth:`take` handed out (every one sent, its outcome known).
        :param errors: ``{key: exception}`` of the batches that failed.
        :param failovers: ``{key: moves to another host}`` during the flush.
        :returns: the :class:`FlushReport`.
        """
        report = FlushReport()
        if batches:
            self.flushes += 1
        for batch in batches:
            stats = self._stats_of(batch.key)
            stats["failovers"] += failovers.get(batch.key, 0)
            error = errors.get(batch.key)
            if error is None:
                stats["cells"] += len(batch.cells)
                stats["bytes"] += batch.size
                stats["flushes"] += 1
                report.acknowledged += len(batch.cells)
            else:
                stats["failed"] += len(batch.cells)
                report.failed.append(batch)
                report.errors[batch.key] = error
        return report

    def snapshot(self) -> MutatorStats:
        """Return the counters (see :class:`MutatorStats`)."""
        shards = {key: BatchStats(**stats) for key, stats in self.stats.items()}
        return {"buffered": self.count, "buffered_bytes": self.size,
                "acknowledged": sum(s["cells"] for s in shards.values()), "flushes": self.flushes,
                "failovers": sum(s["failovers"] for s in shards.values()),
                "failed": sum(s["failed"] for s in shards.values()), "shards": shards}


def with_rest(error: FlushError, rest: Sequence[Cell]) -> FlushError:
    """Return ``error`` with ``rest`` (the cells of a writer's call not taken yet) appended to its cells.

    So that a ``set_cells`` that raises leaves every cell it was given
    acknowledged, in the buffer, or in the error.
    """
    if not rest:
        return error
    return FlushError(f"{error.message}; the last {len(rest):,} cell(s) of .cells are those of this set_cells call "
                      "that were not taken (not stamped)", error.cells + list(rest), error.errors)


def merge_errors(table: str, errors: list[FlushError]) -> Optional[FlushError]:
    """Return one :class:`FlushError` for several (timer flushes and the last one), ``None`` for none."""
    if not errors:
        return None
    if len(errors) == 1:
        return errors[0]
    cells = [cell for error in errors for cell in error.cells]
    causes = {key: exc for error in errors for key, exc in error.errors.items()}
    return FlushError(f"flushes to {table} left {len(cells):,} cell(s) unacknowledged; they are in .cells, "
                      "stamped: sending them again cannot apply them twice", cells, causes)
