"""Bulk writes and the scan of every shard for asyncio: ``async with replicas.mutator(...)``, ``shards.scan_all``.

:class:`AsyncMutator` is the blocking :class:`~htcluster.Mutator` on the
event loop: the same buffer and books
(:class:`~htcluster._routing.mutator.MutatorCore` over
:class:`~htcluster._policy.batches.Buffer`), and every flush the same
:class:`~htcluster._routing.scatter.Scatter` rounds (stamped ``set_cells``
per destination, all at once, each failing over within its hosts), driven
with ``await`` (:func:`~htcluster._aio.io.adrive`) instead of blocking.  Only
the waits differ: writers wait for the flush in flight on an
:class:`asyncio.Event`, and ``flush_interval`` is a task, not a thread.

A cancellation (the task cancelled, or timed out) during a flush acts as a
``KeyboardInterrupt`` does for the blocking mutator: the batches answered
count as acknowledged, the others go back to the front of the buffer
(:meth:`AsyncMutator.pending`), the connections in flight are closed without
blaming their hosts, and the ``CancelledError`` propagates.

:class:`ScanAll` is ``AsyncShards.scan_all``: one task per shard reads that
shard's scan (``htcluster._routing.scan_all.shard_scan_steps``, the blocking
reader's own generator, resuming on another host of the shard) a few
batches ahead, and the consumer gets the shards' cells merged in row-key order.
"""
from __future__ import annotations

import asyncio
import heapq
import logging
from typing import TYPE_CHECKING, Any, AsyncIterator, Hashable, Mapping, Optional, Sequence, Union

from .._policy.batches import Batch, FlushReport, MutatorStats, merge_errors, with_rest
from .._policy.plans import Plan
from .._routing.mutator import TAKEN, WAIT, MutatorCore, Route
from .._routing.router import Router
from .._routing.scan_all import AHEAD, shard_scan_steps
from ..errors import FlushError
from ..types import Cell, ScanSpec
from .io import adrive, astream

if TYPE_CHECKING:  # pragma: no cover
    from .._routing.shards import Shards
    from .bind import LoopBinding

__all__ = ["AsyncMutator", "ScanAll"]

log = logging.getLogger("htcluster.mutator")


class AsyncMutator(MutatorCore):
    """A client-side buffered mutator for asyncio: ``await m.set_cells(cells)``, ``await m.flush()``.

    Made by ``AsyncReplicas.mutator`` and ``AsyncShards.mutator``, used as
    ``async with replicas.mutator("t", namespace="ns") as m:``; leaving the
    block flushes and closes (after an ``Exception`` too; after a cancellation
    it closes without flushing, the cells stay in :meth:`pending`).  The
    parameters, limits, stamping, errors (:class:`~htcluster.errors.FlushError`
    with the cells not acknowledged, :class:`~htcluster.errors.MutatorFull`)
    and :meth:`stats` are those of :class:`~htcluster.Mutator`.  For the tasks
    of one event loop (it is not thread-safe).

    :param binding: the routing object's event loop binding (checked on every call).
    """

    def __init__(self, router: Router, table: str, namespace: str, plans: Mapping[Hashable, Plan],
                 route: Route = None, *, binding: Optional["LoopBinding"] = None, **options: Any) -> None:
        super().__init__(router, table, namespace, plans, route, **options)
        self.binding = binding
        self._idle: Optional[asyncio.Event] = None  # set while no flush is in flight (made on the loop)
        self._timer: Optional[asyncio.Task[None]] = None

    # ------------------------------------------------------------ writing

    async def set_cell(self, cell: Cell) -> None:
        """Buffer one cell (see :meth:`set_cells`)."""
        await self.set_cells((cell,))

    async def set_cells(self, cells: Sequence[Cell]) -> None:
        """Buffer ``cells``; flush when the buffer fills (the call then returns after that flush).

        :param cells: :class:`~htcluster.types.Cell` values (not copied: leave them alone until flushed).
        :raises FlushError: a flush (this one, or an earlier one of the timer)
            left cells unacknowledged; ``error.cells`` holds them (stamped),
            followed by the cells of this call not taken yet.
        :raises MutatorFull: ``block=False``, the buffer is full and a flush is in flight.
        :raises TypeError: an item is not a Cell (the cells before it were taken).
        :raises RuntimeError: the mutator is closed.
        :raises asyncio.CancelledError: the task was cancelled (see the module docstring).
        """
        self._start()
        if not isinstance(cells, (list, tuple)):
            cells = list(cells)
        i = 0
        while True:
            i, then = self.admit(cells, i)
            if then is TAKEN:
                return
            if then is WAIT:
                await self._wait_idle()
                continue
            try:
                await self._send(self.take(), raise_error=True)
            except FlushError as exc:
                raise with_rest(exc, cells[i:]) from None

    async def flush(self) -> None:
        """Send everything buffered (after the flush in flight, if any) and wait for the answers.

        :raises FlushError: cells were left unacknowledged (also by an earlier timer flush).
        :raises RuntimeError: the mutator is closed.
        """
        self._start()
        self.check_open()
        await self._wait_idle()
        await self._send(self.take(), raise_error=True)

    async def close(self, flush: bool = True) -> None:
        """Stop the timer, flush what is buffered (unless ``flush`` is false), and refuse further cells.

        Idempotent.  With ``flush=False`` buffered cells stay in :meth:`pending`.

        :raises FlushError: the last flush (or a timer flush) left cells unacknowledged.
        """
        if self._closed:
            return
        self._closed = True
        timer, self._timer = self._timer, None
        if timer is not None:
            if flush:
                await self._wait_idle()  # the timer's flush in flight ends; its outcome is booked
            timer.cancel()
            try:
                await timer
            except asyncio.CancelledError:
                if not timer.cancelled():  # this task was cancelled, not the timer
                    raise
        if not flush:
            return
        await self._wait_idle()
        deferred = self.pop_deferred()
        report = await self._send(self.take(), raise_error=False)
        error = merge_errors(self.table, deferred + [e for e in [report.error(self.table)] if e is not None])
        if error is not None:
            raise error

    def pending(self) -> list[Cell]:
        """Return the cells buffered and not yet sent (e.g. after a cancellation); the buffer keeps them."""
        return self.buffer.pending()

    def stats(self) -> MutatorStats:
        """Return the counters (see :meth:`htcluster.Mutator.stats`)."""
        return self.buffer.snapshot()

    async def __aenter__(self) -> "AsyncMutator":
        self._start()
        return self

    async def __aexit__(self, exc_type: Optional[type], exc: Optional[BaseException], tb: object) -> None:
        await self.close(flush=exc_type is None or issubclass(exc_type, Exception))

    # ------------------------------------------------------------ flushing

    def _start(self) -> None:
        """On the first use, on the loop: check the loop, make the event and the timer task."""
        if self.binding is not None:
            self.binding.check()
        if self._idle is None:
            self._idle = asyncio.Event()
            self._idle.set()
            if self.flush_interval is not None and not self._closed:
                self._timer = asyncio.get_running_loop().create_task(self._tick(self.flush_interval),
                                                                     name=f"htcluster-mutator-{self.table}")

    async def _wait_idle(self) -> None:
        """Wait until no flush is in flight."""
        while self.flushing:
            assert self._idle is not None
            await self._idle.wait()

    async def _send(self, batches: list[Batch], raise_error: bool) -> FlushReport:
        """Send ``batches`` (taken, the flush marked in flight), book the outcome, wake the waiting writers."""
        if not batches:
            return FlushReport()
        assert self._idle is not None
        self._idle.clear()
        scatter = self.scatter(batches)
        try:
            await adrive(scatter.run_steps())
        except BaseException:
            self.book(batches, scatter, interrupted=True)
            self._idle.set()
            raise
        report = self.book(batches, scatter, interrupted=False)
        self._idle.set()
        error = report.error(self.table)
        if error is not None and raise_error:
            raise error
        return report

    async def _tick(self, interval: float) -> None:
        """The timer task: every ``interval`` seconds, flush what is buffered unless a flush is in flight."""
        while True:
            await asyncio.sleep(interval)
            if self.flushing or self._closed or not len(self.buffer):
                continue
            try:
                report = await self._send(self.take(), raise_error=False)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the cells are back in the buffer; the next writer call flushes them
                log.error("timer flush of %s failed: %r", self.table, exc)
                continue
            error = report.error(self.table)
            if error is not None:
                self.deferred.append(error)


# ---------------------------------------------------------------- the scan of every shard


class _End:
    __slots__ = ("error",)

    def __init__(self, error: Optional[BaseException] = None) -> None:
        self.error = error


def _row(item: tuple[str, int, int, Cell]) -> str:
    return item[0]


class ScanAll:
    """``async with shards.scan_all(table, ...) as cells: async for cell in cells:`` (see ``Shards.scan_all``).

    Leaving the block (the end of the loop, a ``break``, an exception, a
    cancellation) cancels every shard's task, whose scanner is closed.
    """

    def __init__(self, shards: "Shards", table: str, spec: Optional[ScanSpec], namespace: str,
                 timeout: Optional[float]) -> None:
        self.shards, self.table, self.namespace, self.timeout = shards, table, namespace, timeout
        self.spec = spec if spec is not None else ScanSpec()
        self.tasks: list[asyncio.Task[None]] = []
        self.cells: Optional[AsyncIterator[Cell]] = None

    async def _read(self, key: Hashable, queue: "asyncio.Queue[Union[list[Cell], _End]]") -> None:
        """One shard's scan into ``queue`` (at most ``AHEAD`` batches ahead of the merge)."""
        batches = astream(shard_scan_steps(self.shards, key, self.table, self.spec, self.namespace, self.timeout))
        try:
            async for batch in batches:
                await queue.put(batch)
            await queue.put(_End())
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handed to the merge, which raises it
            await queue.put(_End(exc))
        finally:
            await batches.aclose()  # type: ignore[attr-defined]  # the scanner is closed, also when cancelled

    async def _shard_cells(self, queue: "asyncio.Queue[Union[list[Cell], _End]]") -> AsyncIterator[Cell]:
        while True:
            item = await queue.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            for cell in item:
                yield cell

    async def _merge(self, streams: list[AsyncIterator[Cell]]) -> AsyncIterator[Cell]:
        """The shards' streams merged by row key (a row lives on one shard; each stream is in row order)."""
        heap: list[tuple[str, int, int, Cell]] = []
        seq = 0
        for index, stream in enumerate(streams):
            cell = await anext(stream, None)
            if cell is not None:
                heap.append((cell.key.row, index, seq, cell))
                seq += 1
        heapq.heapify(heap)
        while heap:
            _, index, _, cell = heap[0]
            yield cell
            following = await anext(streams[index], None)
            if following is None:
                heapq.heappop(heap)
            else:
                heapq.heapreplace(heap, (following.key.row, index, seq, following))
                seq += 1

    async def __aenter__(self) -> AsyncIterator[Cell]:
        if self.cells is not None:
            raise RuntimeError("this scan_all is already in use; call scan_all() again")
        binding: Optional["LoopBinding"] = getattr(self.shards, "binding", None)
        if binding is not None:
            binding.check()
        loop = asyncio.get_running_loop()
        streams = []
        for key in self.shards:
            queue: asyncio.Queue[Union[list[Cell], _End]] = asyncio.Queue(AHEAD)
            self.tasks.append(loop.create_task(self._read(key, queue), name=f"htcluster-scan-{self.table}-{key}"))
            streams.append(self._shard_cells(queue))
        self.cells = self._merge(streams)
        return self.cells

    async def __aexit__(self, exc_type: Optional[type], exc: Optional[BaseException], tb: object) -> None:
        cells, self.cells = self.cells, None
        tasks, self.tasks = self.tasks, []
        if cells is not None:
            await cells.aclose()  # type: ignore[attr-defined]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # every scanner closed before the block ends
