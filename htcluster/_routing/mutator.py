"""Buffered mutators over ``Replicas`` and ``Shards``: cells buffered, flushed as stamped ``set_cells`` that fail over.

A :class:`Mutator` is what ``Replicas.mutator(...)`` and ``Shards.mutator(...)``
return.  Unlike the broker-side mutator of one connection (``mutator_open``,
whose buffered cells die with its broker), it buffers on the client
(:class:`~htcluster._policy.batches.Buffer`: per destination, counted and
weighed) and every flush is one stamped ``set_cells`` per destination, sent
at once to all of them and failed over like any routed call
(:class:`~htcluster._routing.scatter.Scatter`); a batch repeated on another
host stores the same versions.

* Writers call :meth:`Mutator.set_cell` / :meth:`Mutator.set_cells`; when the
  buffer reaches ``max_cells`` or ``max_bytes``, the writer that filled it
  flushes it (blocking for that one flush).  While a flush is in flight, other
  writers keep buffering; a writer that finds the buffer full waits for the
  flush in flight (``block=True``) or gets :class:`~htcluster.errors.MutatorFull`
  (``block=False``): memory stays bounded by about twice the limits.
* ``flush_interval`` (seconds) flushes from a timer thread; its failures are
  raised by the next call of a writer (``set_cell(s)``, ``flush``, ``close``).
* A flush that leaves cells unacknowledged raises
  :class:`~htcluster.errors.FlushError` with those cells (stamped: send them
  again to retry).  An interrupt (``KeyboardInterrupt``) during a flush puts the
  cells whose outcome is unknown back at the front of the buffer
  (:meth:`Mutator.pending`) and propagates.
* Leaving the ``with`` block flushes and closes (after an ``Exception`` too;
  after a ``KeyboardInterrupt`` it closes without flushing, the cells stay in
  :meth:`Mutator.pending`).
"""
from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, Callable, Hashable, Mapping, Optional, Sequence, TypeVar

from .._policy.batches import (DEFAULT_MAX_BYTES, DEFAULT_MAX_CELLS, Batch, Buffer, FlushReport, MutatorStats,
                               merge_errors, with_rest)
from .._policy.plans import Plan
from .._validate import optional_seconds
from ..errors import ConfigError, FlushError, InvalidRequest, MutatorFull
from ..types import Cell
from .router import Router
from .scatter import Scatter

if TYPE_CHECKING:  # pragma: no cover
    from .replicas import Replicas
    from .shards import Shards

__all__ = ["SEND", "TAKEN", "WAIT", "Mutator", "MutatorCore", "Route", "replicas_mutator", "shards_mutator"]

log = logging.getLogger("htcluster.mutator")

#: ``cell -> destination key``; ``None``: a single destination.
Route = Optional[Callable[[Cell], Hashable]]
M = TypeVar("M", bound="MutatorCore")


#: What a writer does after :meth:`MutatorCore.admit`: return, wait for the flush in flight, or flush.
TAKEN, WAIT, SEND = "taken", "wait", "send"


class MutatorCore:
    """What the blocking :class:`Mutator` and its asyncio twin (``htcluster._aio.mutator.AsyncMutator``) share:
    the options, the buffer and its books, the deferred errors, a flush's batches and how its outcome is booked.

    No I/O and no lock: each flavour holds its own lock (a thread lock; the
    event loop) around these methods.  See :class:`Mutator` for the parameters.
    """

    def __init__(self, router: Router, table: str, namespace: str, plans: Mapping[Hashable, Plan],
                 route: Route = None, *, flush_interval: Optional[float] = None,
                 max_cells: int = DEFAULT_MAX_CELLS, max_bytes: int = DEFAULT_MAX_BYTES, block: bool = True,
                 timeout: Optional[float] = None) -> None:
        if not isinstance(table, str) or not table:
            raise ConfigError(f"table must be a table name (a non-empty str), got {table!r}")
        if not isinstance(block, bool):
            raise ConfigError(f"block must be True or False, got {block!r}")
        self.router, self.table, self.namespace = router, table, namespace
        self.plans, self.route, self.block = plans, route, block
        self.timeout = optional_seconds("timeout", timeout)
        #: Seconds between timer flushes (``None``: no timer).
        self.flush_interval = optional_seconds("flush_interval", flush_interval)
        self.buffer = Buffer(max_cells, max_bytes)
        self.flushing = False
        self._closed = False
        self.deferred: list[FlushError] = []

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.buffer.count} cells buffered"
        return f"<{type(self).__name__} {self.namespace}/{self.table} [{state}, {len(self.plans)} destination(s)]>"

    def check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"the mutator of {self.table} is closed; make a new one")
        if self.deferred:
            error = merge_errors(self.table, self.pop_deferred())
            assert error is not None
            raise error

    def pop_deferred(self) -> list[FlushError]:
        deferred, self.deferred = self.deferred, []
        return deferred

    def full(self, cells: Sequence[Cell], i: int) -> MutatorFull:
        """The error of a ``block=False`` writer finding the buffer full while a flush is in flight."""
        buffer = self.buffer
        return MutatorFull(f"the mutator of {self.table} is full ({buffer.count:,} cells, {buffer.size:,} bytes) "
                           f"while a flush is in flight; {len(cells) - i:,} cell(s) of this call were not taken",
                           list(cells[i:]))

    def admit(self, cells: Sequence[Cell], i: int) -> tuple[int, str]:
        """Buffer what fits of ``cells[i:]`` (under the lock); return how far it got and what the writer does next.

        :returns: ``(index of the first cell not taken, next)``, ``next`` one of
            :data:`TAKEN` (every cell is buffered, or the flush in flight makes
            room: the call is done), :data:`WAIT` (the buffer is full and a
            flush is in flight: wait for it, then admit again) and :data:`SEND`
            (the buffer is full and no flush is in flight: flush it, then
            admit again).
        :raises FlushError: an earlier timer flush left cells unacknowledged;
            ``error.cells`` holds them, then ``cells[i:]``.
        :raises MutatorFull: ``block=False``, the buffer is full and a flush is in flight.
        :raises TypeError: an item is not a Cell (the cells before it were taken).
        :raises RuntimeError: the mutator is closed.
        """
        try:
            self.check_open()
        except FlushError as exc:
            raise with_rest(exc, cells[i:]) from None
        buffer = self.buffer
        if not buffer.full:
            i = buffer.fill(cells, i, self.route)
            if not buffer.full:  # fill stops at the end of cells or at a full buffer
                return i, TAKEN
        if not self.flushing:
            return i, SEND
        if i >= len(cells):
            return i, TAKEN  # everything taken; the flush in flight makes room
        if not self.block:
            raise self.full(cells, i)
        return i, WAIT

    def take(self) -> list[Batch]:
        """Take the buffer out for a flush (under the lock, no flush in flight)."""
        batches = self.buffer.take()
        self.flushing = bool(batches)
        return batches

    def scatter(self, batches: list[Batch]) -> Scatter:
        """The :class:`~htcluster._routing.scatter.Scatter` that sends ``batches``, within the flush's timeout."""
        return Scatter(self.router, self.table, self.namespace, {b.key: b.cells for b in batches},
                       {b.key: self.plans[b.key] for b in batches}, self.router.deadline(self.timeout))

    def book(self, batches: list[Batch], scatter: Scatter, interrupted: bool) -> FlushReport:
        """Book how ``scatter`` ended (under the lock); the flush is no longer in flight.

        After an interrupt (or a cancellation) the batches answered count as
        acknowledged and the others go back to the front of the buffer.
        """
        self.flushing = False
        if interrupted:
            self.buffer.settle([b for b in batches if b.key in scatter.acked], {}, scatter.failovers)
            self.buffer.put_back(b for b in batches if b.key not in scatter.acked)
            return FlushReport()
        errors = {key: exc for key, exc in scatter.errors.items() if key not in scatter.acked}
        return self.buffer.settle(batches, errors, scatter.failovers)


class Mutator(MutatorCore):
    """A client-side buffered mutator: ``set_cell(s)`` buffer, ``flush`` sends stamped batches that fail over.

    Made by :meth:`Replicas.mutator <htcluster.Replicas.mutator>` and
    :meth:`Shards.mutator <htcluster.Shards.mutator>`; thread-safe.

    :param router: the router of the routing object (pools, health, retry, budgets).
    :param table: the table written.
    :param namespace: the namespace name.
    :param plans: ``{destination key: Plan}`` of the hosts each batch may go to.
    :param route: ``cell -> destination key`` (``None``: the one key ``None``).
    :param flush_interval: seconds between flushes by a timer thread (``None``: no timer).
    :param max_cells: buffered cells at which a flush is due (int >= 1).
    :param max_bytes: buffered bytes at which a flush is due (int >= 1, see
        :func:`~htcluster._policy.batches.cell_size`).
    :param block: when the buffer is full while a flush is in flight, wait (``True``)
        or raise :class:`~htcluster.errors.MutatorFull` (``False``).
    :param timeout: seconds each flush may take in all, failovers included
        (``None``: the routing object's ``call_timeout``).
    :raises ConfigError: a limit, ``flush_interval`` or ``timeout`` is invalid.
    """

    def __init__(self, router: Router, table: str, namespace: str, plans: Mapping[Hashable, Plan],
                 route: Route = None, **options: Any) -> None:
        super().__init__(router, table, namespace, plans, route, **options)
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._timer: Optional[threading.Thread] = None
        if self.flush_interval is not None:
            self._timer = threading.Thread(target=self._tick, args=(self.flush_interval,), daemon=True,
                                           name=f"htcluster-mutator-{table}")
            self._timer.start()

    # ------------------------------------------------------------ writing

    def set_cell(self, cell: Cell) -> None:
        """Buffer one cell (see :meth:`set_cells`)."""
        self.set_cells((cell,))

    def set_cells(self, cells: Sequence[Cell]) -> None:
        """Buffer ``cells``; flush when the buffer fills (this call then returns after that flush).

        A cell's ``key.flag`` selects a delete (``KeyFlag.DELETE_ROW`` ...), as for
        the broker's ``set_cells``; cells without a timestamp are stamped when
        their batch is flushed (one stamp per batch of distinct keys, later
        stamps for repeated keys, so the last write of a cell wins).  The cells
        are not copied: do not change them until flushed.

        :param cells: :class:`~htcluster.types.Cell` values (a list or tuple).
        :raises FlushError: a flush (this one, or an earlier one of the timer)
            left cells unacknowledged; ``error.cells`` holds them (stamped),
            followed by the cells of this call not taken yet (as given): every
            cell of the call is then acknowledged, in :meth:`pending`, or in
            the error.
        :raises MutatorFull: ``block=False``, the buffer is full and a flush is
            in flight; ``error.cells`` are the cells of this call not taken.
        :raises TypeError: an item is not a Cell (the cells before it were taken).
        :raises RuntimeError: the mutator is closed.
        """
        if not isinstance(cells, (list, tuple)):
            cells = list(cells)
        i, cond = 0, self._cond
        while True:
            with cond:
                i, then = self.admit(cells, i)
                if then is TAKEN:
                    return
                if then is WAIT:
                    cond.wait()
                    continue
                batches = self.take()
            try:
                self._send(batches, raise_error=True)
            except FlushError as exc:
                raise with_rest(exc, cells[i:]) from None

    def flush(self) -> None:
        """Send everything buffered (after the flush in flight, if any) and wait for the answers.

        :raises FlushError: cells were left unacknowledged (also by an earlier
            timer flush); ``error.cells`` holds them, stamped.
        :raises RuntimeError: the mutator is closed.
        """
        with self._cond:
            self.check_open()
            batches = self._wait_and_take()
        self._send(batches, raise_error=True)

    def close(self, flush: bool = True) -> None:
        """Stop the timer, flush what is buffered (unless ``flush`` is false), and refuse further cells.

        Idempotent.  With ``flush=False`` buffered cells stay in :meth:`pending`.

        :raises FlushError: the last flush left cells unacknowledged.
        """
        self._stop.set()
        timer, self._timer = self._timer, None
        if timer is not None and timer is not threading.current_thread():
            timer.join()
        with self._cond:
            if self._closed:
                return
            self._closed = True
            if not flush:
                return
            deferred = self.pop_deferred()
            batches = self._wait_and_take()
        report = self._send(batches, raise_error=False)
        error = merge_errors(self.table, deferred + [e for e in [report.error(self.table)] if e is not None])
        if error is not None:
            raise error

    def pending(self) -> list[Cell]:
        """Return the cells buffered and not yet sent (e.g. after an interrupt); the buffer keeps them."""
        with self._cond:
            return self.buffer.pending()

    def stats(self) -> MutatorStats:
        """Return the counters: buffered cells and bytes, acknowledged, flushes, failovers, failed, per shard.

        :returns: a :class:`~htcluster._policy.batches.MutatorStats` dict; ``shards`` maps each
            destination (a shard key; ``None`` for ``Replicas``) to its ``cells``, ``bytes``,
            ``flushes``, ``failovers`` and ``failed`` counts.
        """
        with self._cond:
            return self.buffer.snapshot()

    def __enter__(self) -> "Mutator":
        return self

    def __exit__(self, exc_type: Optional[type], exc: Optional[BaseException], tb: object) -> None:
        self.close(flush=exc_type is None or issubclass(exc_type, Exception))

    # ------------------------------------------------------------ flushing

    def _wait_and_take(self) -> list[Batch]:
        while self.flushing:
            self._cond.wait()
        return self.take()

    def _send(self, batches: list[Batch], raise_error: bool) -> FlushReport:
        """Send ``batches`` (taken under the lock), book the outcome, wake the waiting writers."""
        if not batches:
            return FlushReport()
        scatter = self.scatter(batches)
        try:
            scatter.run()
        except BaseException:
            with self._cond:
                self.book(batches, scatter, interrupted=True)
                self._cond.notify_all()
            raise
        with self._cond:
            report = self.book(batches, scatter, interrupted=False)
            self._cond.notify_all()
        error = report.error(self.table)
        if error is not None and raise_error:
            raise error
        return report

    def _tick(self, interval: float) -> None:
        """The timer thread: every ``interval`` seconds, flush what is buffered unless a flush is in flight."""
        while not self._stop.wait(interval):
            with self._cond:
                if self.flushing or self._closed or not len(self.buffer):
                    continue
                batches = self.take()
            try:
                report = self._send(batches, raise_error=False)
            except BaseException as exc:  # the cells are back in the buffer; the next writer call flushes them
                log.error("timer flush of %s failed: %r", self.table, exc)
                continue
            error = report.error(self.table)
            if error is not None:
                with self._cond:
                    self.deferred.append(error)


def replicas_mutator(replicas: "Replicas", table: str, namespace: Optional[str] = None,
                     kind: Callable[..., M] = Mutator, **options: Any) -> M:  # type: ignore[assignment]
    """Return a :class:`Mutator` (or ``kind``: its asyncio twin) writing to the first healthy replica, failing
    over in order."""
    plan = Plan(replicas.order, True, True)  # stamped batches: idempotent
    return kind(replicas.router, table, replicas.scan_namespace(namespace), {None: plan}, None, **options)


def shards_mutator(shards: "Shards", table: str, namespace: Optional[str] = None,
                   key: Optional[Callable[[str], Hashable]] = None, kind: Callable[..., M] = Mutator,  # type: ignore[assignment]
                   **options: Any) -> M:
    """Return a :class:`Mutator` (or ``kind``: its asyncio twin) sending each cell to the shard of its row
    (``key(row)``, default ``shards.locate``)."""
    plans = {k: Plan(tuple(sorted(hosts)), False, True) for k, hosts in shards.items()}
    return kind(shards.resources.router, table, shards.resources.scan_namespace(namespace), plans,
                   _router_of(plans, key or shards.locate), **options)


def _router_of(plans: Mapping[Hashable, Plan], locate: Callable[[Any], Hashable]) -> Callable[[Cell], Hashable]:
    """Return ``cell -> shard key`` by ``locate(row)``, remembering the last row (a row's cells come together)."""
    last_row: list[object] = [object()]
    last_key: list[Hashable] = [None]

    def route(cell: Cell) -> Hashable:
        key = cell.key
        if key is None:
            raise InvalidRequest("a cell without a key has no row to route by: give every cell a Key",
                                 method="set_cells")
        row = key.row
        if row == last_row[0]:
            return last_key[0]
        shard = locate(row)
        if shard not in plans:
            raise KeyError(f"key= returned {shard!r} for row {row!r}, not a shard key here; "
                           f"the keys are {sorted(map(str, plans))}")
        last_row[0], last_key[0] = row, shard
        return shard

    return route
