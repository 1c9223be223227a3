"""A pool of connections to one ThriftBroker for asyncio: :class:`AsyncPool`.

:class:`AsyncPool` is a :class:`~htcluster.Pool` (the same
slots, counters, FIFO waiters and one hand-over) whose waiters are futures of
its event loop and whose checkout (``ConnectionPool.acquire_steps``, the one
checkout logic) is driven with ``await``: waiting for a slot, the idle ping
and connecting never block the loop.  Its calls are
:class:`~htcluster._call.attempt.Attempt` s made on the asyncio multiplexing
loop.  A task cancelled while it waits leaves the line (a slot handed to it
meanwhile goes to the next waiter); cancelled mid-call, its connection is
closed and its slot freed.
"""
from __future__ import annotations

import ssl
from typing import Any, AsyncIterator, Optional, Union

from .. import events as ev
from .._call.attempt import Attempt, Pool, call_deadline
from .._io.resource import DEFAULT_CONNECT_TIMEOUT, DEFAULT_SOCKET_TIMEOUT
from .._io.keepalive import KeepAliveLike
from .._pool.pool import (DEFAULT_MAX_CONNECTING, DEFAULT_MAX_OVERFLOW, DEFAULT_POOL_TIMEOUT, DEFAULT_RECONNECT_JITTER,
                          DEFAULT_SIZE, Lease, Waiter)
from .._wire import DEFAULT_MAX_FRAME_SIZE
from ..hosts import HostLike
from ..types import Cell, ScanSpec
from .bind import LoopBinding
from .io import AsyncWaiter, adrive
from .resource import AsyncResource, scan_cells

__all__ = ["AsyncPool", "PoolCheckout", "PoolScan"]


class AsyncPool(Pool):
    """Keep up to ``size`` idle connections to one broker for asyncio, open up to ``max_overflow`` more, and call.

    The arguments are :class:`~htcluster.Pool`'s (``size``, ``max_overflow``,
    ``pool_timeout``, ``socket_timeout``, ``connect_timeout``, ``idle_ping``,
    ``max_age``, ``max_frame_size``, ``listeners``, ``ssl_context``,
    ``max_connecting``, ``reconnect_jitter``, ``min_size``, ``keepalive``, ``max_idle_time``; seconds);
    so are ``stats()``, the events and the errors.  It may be made before any
    event loop runs; it belongs to the loop that first uses it
    (:class:`~htcluster.errors.WrongEventLoop` from another one).

    Example::

        pool = AsyncPool('localhost:15867', size=4)
        status = await pool.call('status', timeout=2.0)
        async with pool.connection() as r:
            cells = await r.get_cells(await r.mns['test'], 'logs', ScanSpec(row_limit=10))
    """

    def __init__(self, host: HostLike, size: int = DEFAULT_SIZE, max_overflow: int = DEFAULT_MAX_OVERFLOW,
                 pool_timeout: float = DEFAULT_POOL_TIMEOUT, *, socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT, idle_ping: Optional[float] = None,
                 max_age: Optional[float] = None, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
                 listeners: Optional[ev.Listeners] = None, ssl_context: Optional[ssl.SSLContext] = None,
                 max_connecting: int = DEFAULT_MAX_CONNECTING, reconnect_jitter: float = DEFAULT_RECONNECT_JITTER,
                 min_size: int = 0, keepalive: KeepAliveLike = True, max_idle_time: Optional[float] = None) -> None:
        super().__init__(host, size, max_overflow, pool_timeout, socket_timeout=socket_timeout,
                         connect_timeout=connect_timeout, idle_ping=idle_ping, max_age=max_age,
                         max_frame_size=max_frame_size, listeners=listeners, ssl_context=ssl_context,
                         max_connecting=max_connecting, reconnect_jitter=reconnect_jitter, min_size=min_size,
                         keepalive=keepalive, max_idle_time=max_idle_time)
        #: The event loop this pool belongs to (bound on first use).
        self.binding = LoopBinding(f"AsyncPool({self.address})")

    def new_waiter(self) -> Waiter:
        """A waiter that is a future of this pool's loop (the checkout awaits it)."""
        return AsyncWaiter(self.binding.check())

    async def acquire(self, deadline: Optional[float] = None, *,  # type: ignore[override]
                      pool_timeout: Optional[float] = None, fresh: bool = False, connect: bool = True) -> Lease:
        """Borrow a connection (``Pool.acquire``): ``lease = await pool.acquire()``, then ``lease.release()``.

        :raises PoolTimeout, DeadlineExceeded, BrokerUnavailable, ClientResourceError: as ``Pool.acquire``.
        :raises WrongEventLoop: used from another event loop than the pool's.
        """
        self.binding.check()
        return await adrive(self.acquire_steps(deadline, pool_timeout, fresh, connect))

    async def call(self, method: str, *args: Any, namespace: Optional[str] = None,
                   timeout: Optional[float] = None, deadline: Optional[float] = None) -> Any:
        """Call broker ``method`` on a pooled connection (one attempt); see :meth:`htcluster.Pool.call`.

        :returns: the broker's answer.
        :raises HtclusterError: what ``Pool.call`` raises (``InvalidRequest``, ``BrokerUnavailable``,
            ``DeadlineExceeded``, ``PoolTimeout``, ``ClientResourceError``; ``ClientException``).
        :raises asyncio.CancelledError: the task was cancelled (the connection is closed, the slot freed).
        """
        self.binding.check()
        return await adrive(Attempt(self, method, args, namespace, call_deadline(timeout, deadline)).run_steps())

    def connection(self, pool_timeout: Optional[float] = None) -> "PoolCheckout":  # type: ignore[override]
        """Check a connection out for an ``async with`` block: ``async with pool.connection() as r:``.

        ``r`` is an :class:`AsyncResource`; its calls are reported to the pool's
        listeners; it goes back when the block ends (closed if it failed, or if
        the block was cancelled mid-call).

        :raises PoolTimeout, BrokerUnavailable: as ``Pool.connection``.
        """
        return PoolCheckout(self, pool_timeout)

    def scan(self, table: str, scan_spec: Optional[ScanSpec] = None, *,  # type: ignore[override]
             namespace: str, batch: bool = False, timeout: Optional[float] = None) -> "PoolScan":
        """Scan on one pooled connection: ``async with pool.scan(...) as cells: async for cell in cells:``.

        The scanner is closed and the connection returned when the block ends,
        also when the consumer leaves early.  Arguments as ``Pool.scan``.
        """
        return PoolScan(self, table, scan_spec, namespace, batch, timeout)

    async def __aenter__(self) -> "AsyncPool":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


class PoolCheckout:
    """The async context manager of :meth:`AsyncPool.connection`: acquire on enter, release on exit."""

    __slots__ = ("pool", "pool_timeout", "lease")

    def __init__(self, pool: AsyncPool, pool_timeout: Optional[float]) -> None:
        self.pool = pool
        self.pool_timeout = pool_timeout
        self.lease: Optional[Lease] = None

    async def __aenter__(self) -> AsyncResource:
        if self.lease is not None:
            raise RuntimeError("this pool.connection() is already in use; call pool.connection() again")
        self.lease = await self.pool.acquire(pool_timeout=self.pool_timeout)
        resource = self.lease.resource
        resource.listeners = self.pool.listeners  # its calls are reported while it is lent out
        return AsyncResource.over(resource)

    async def __aexit__(self, *exc_info: object) -> None:
        lease, self.lease = self.lease, None
        if lease is not None:
            lease.resource.listeners = None
            lease.release()


class PoolScan:
    """The async context manager of :meth:`AsyncPool.scan`: a checkout and a scanner, both closed on exit."""

    def __init__(self, pool: AsyncPool, table: str, scan_spec: Optional[ScanSpec], namespace: str, batch: bool,
                 timeout: Optional[float]) -> None:
        self.checkout = PoolCheckout(pool, None)
        self.args = (table, scan_spec, namespace, batch, timeout)
        self.cells: Optional[AsyncIterator[Any]] = None

    async def __aenter__(self) -> AsyncIterator[Union[Cell, list[Cell]]]:
        table, spec, namespace, batch, timeout = self.args
        r = await self.checkout.__aenter__()
        try:
            self.cells = scan_cells(r, await r.mns[namespace], table, spec, batch=batch, timeout=timeout)
        except BaseException:
            await self.checkout.__aexit__()
            raise
        return self.cells

    async def __aexit__(self, *exc_info: object) -> None:
        cells, self.cells = self.cells, None
        try:
            if cells is not None:
                await cells.aclose()  # type: ignore[attr-defined]
        finally:
            await self.checkout.__aexit__()
