"""Scanners, mutators and the broker-wide state that outlives one connection.

``Scanner`` pages a cell iterator into batches; ``Mutator`` buffers writes
until flushed; ``Flusher`` flushes mutators opened with a flush interval and
the shared mutators; ``BrokerContext`` holds what every connection of one
broker process shares (the store, the shared mutators, the flusher).
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Callable, Hashable, Iterator, Optional, Sequence

from .. import codes
from .._thrift.ttypes import Cell, ClientException
from .store import CellStore, WriteCell

__all__ = ["BrokerContext", "Flusher", "Mutator", "Scanner", "SharedMutators"]

log = logging.getLogger("htcluster.broker")

#: Approximate bytes of one ``scanner_get_cells`` batch (ThriftBroker.NextThreshold, :ref:`calling-methods`).
NEXT_THRESHOLD = 512_000
#: Per-cell bytes added to key and value lengths in the batch estimate.
CELL_OVERHEAD = 48
#: A mutator writes its buffer out once it holds this many cells.
AUTO_FLUSH_CELLS = 20_000
#: Seconds between two looks of the flusher at its mutators.
FLUSH_TICK = 0.02


def cell_size(cell: Cell) -> int:
    """Return the estimated wire size of ``cell`` in bytes (struct overhead plus key and value)."""
    key = cell.key
    return (CELL_OVERHEAD + len(key.row or "") + len(key.column_family or "") + len(key.column_qualifier or "")
            + len(cell.value or b""))


class Scanner:
    """Pages a cell iterator: ``next_cells`` by size, ``next_row`` by row (:ref:`broker-types`).

    :param cells: the iterator; its first ``next()`` may raise the scan's
        deferred error, which then reaches the client on the first fetch.
    """

    def __init__(self, cells: Iterator[Cell]) -> None:
        self._cells = cells
        self._pending: Optional[Cell] = None
        self._done = False

    def _next(self) -> Optional[Cell]:
        if self._pending is not None:
            cell, self._pending = self._pending, None
            return cell
        if self._done:
            return None
        try:
            return next(self._cells)
        except StopIteration:
            self._done = True
            return None
        except BaseException:
            self._done = True
            raise

    def exhausted(self) -> bool:
        """Return whether no cell remains (looks one cell ahead)."""
        if self._pending is None:
            self._pending = self._next()
        return self._pending is None

    def next_cells(self, budget: int = NEXT_THRESHOLD) -> list[Cell]:
        """Return the next cells up to about ``budget`` bytes (at least one if any remain); ``[]`` at the end."""
        out: list[Cell] = []
        size = 0
        while size < budget:
            cell = self._next()
            if cell is None:
                break
            out.append(cell)
            size += cell_size(cell)
        return out

    def next_row(self) -> list[Cell]:
        """Return every cell of the next row; ``[]`` at the end."""
        first = self._next()
        if first is None:
            return []
        out = [first]
        while True:
            cell = self._next()
            if cell is None:
                break
            if cell.key.row != first.key.row:
                self._pending = cell
                break
            out.append(cell)
        return out


class Mutator:
    """Buffered writes to one table, visible once flushed (:ref:`cell-flags`).

    Thread-safe: the flusher thread may flush while the connection adds.

    :param store: where cells go.
    :param table_id: the table's numeric id.
    :param flush_interval: seconds between automatic flushes; 0 for none.
    """

    def __init__(self, store: CellStore, table_id: int, flush_interval: float = 0.0) -> None:
        self.store = store
        self.table_id = table_id
        self.flush_interval = flush_interval
        self.due = time.monotonic() + flush_interval
        self._lock = threading.Lock()
        self._buffer: list[WriteCell] = []

    @property
    def pending(self) -> int:
        """Number of buffered cells not yet written."""
        return len(self._buffer)

    def add(self, cells: Sequence[WriteCell]) -> None:
        """Buffer validated cells, writing the buffer out when it grows large."""
        with self._lock:
            self._buffer.extend(cells)
            if len(self._buffer) >= AUTO_FLUSH_CELLS:
                self._flush_locked()

    def flush(self) -> None:
        """Write the buffer out; on failure it is kept for the next flush.

        :raises ClientException: from the store; TABLE_NOT_FOUND also
            discards the buffer, since its table is gone.
        """
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if not self._buffer:
            return
        try:
            self.store.write(self.table_id, self._buffer)
        except ClientException as exc:
            if exc.code == codes.TABLE_NOT_FOUND:
                log.warning("dropping %d buffered cells: their table was dropped", len(self._buffer))
                self._buffer = []
            raise
        self._buffer = []


class Flusher:
    """A daemon thread that flushes registered mutators every ``flush_interval`` seconds.

    :param store: released from the thread when it ends.
    :param tick: seconds between two looks at the mutators.
    """

    def __init__(self, store: CellStore, tick: float = FLUSH_TICK) -> None:
        self.store = store
        self.tick = tick
        self._mutators: set[Mutator] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="htcluster-broker-flusher", daemon=True)
        self._thread.start()

    def add(self, mutator: Mutator) -> None:
        """Flush ``mutator`` periodically from now on."""
        with self._lock:
            self._mutators.add(mutator)

    def discard(self, mutator: Mutator) -> None:
        """Stop flushing ``mutator`` periodically."""
        with self._lock:
            self._mutators.discard(mutator)

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.tick):
                now = time.monotonic()
                with self._lock:
                    due = [m for m in self._mutators if m.due <= now]
                for mutator in due:
                    mutator.due = now + mutator.flush_interval
                    try:
                        mutator.flush()
                    except Exception as exc:  # logged; the data stays buffered for the next try
                        log.warning("periodic flush of table %d failed: %s", mutator.table_id, exc)
        finally:
            self.store.release_thread()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and wait up to ``timeout`` seconds for it."""
        self._stop.set()
        self._thread.join(timeout)


class SharedMutators:
    """The broker-global shared mutators, keyed by (namespace, table, appname, interval, flags)."""

    def __init__(self, flusher: Flusher) -> None:
        self.flusher = flusher
        self._lock = threading.Lock()
        self._mutators: dict[Hashable, Mutator] = {}

    def get(self, key: Hashable, factory: Callable[[], Mutator]) -> Mutator:
        """Return the mutator for ``key``, creating (and scheduling) it with ``factory`` if needed."""
        with self._lock:
            mutator = self._mutators.get(key)
            if mutator is None:
                mutator = self._mutators[key] = factory()
                self.flusher.add(mutator)
            return mutator

    def refresh(self, key: Hashable) -> None:
        """Flush and forget the mutator for ``key``; the next use creates a new one."""
        with self._lock:
            mutator = self._mutators.pop(key, None)
        if mutator is not None:
            self.flusher.discard(mutator)
            mutator.flush()

    def flush_all(self) -> None:
        """Flush every shared mutator, logging failures."""
        with self._lock:
            mutators = list(self._mutators.values())
        for mutator in mutators:
            try:
                mutator.flush()
            except Exception as exc:
                log.error("flushing a shared mutator of table %d failed: %s", mutator.table_id, exc)


class BrokerContext:
    """What all connections of one broker process share.

    :param store: the cell store.
    """

    def __init__(self, store: CellStore) -> None:
        self.store = store
        self.flusher = Flusher(store)
        self.shared = SharedMutators(self.flusher)
        #: The only directory HQL file statements may use (``--files``); ``None`` refuses them.
        self.files_dir: Optional[Path] = None

    def close(self) -> None:
        """Flush the shared mutators and stop the flusher (the store stays open)."""
        self.shared.flush_all()
        self.flusher.stop()
