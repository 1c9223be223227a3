"""One connection to one ThriftBroker on asyncio: :class:`AsyncResource` and its :class:`AsyncNamespaces`.

An :class:`AsyncResource` is the asyncio twin of :class:`~htcluster.Resource`:
every broker method is a coroutine method of it (``await r.get_cell(ns, ...)``),
called positionally as on the blocking one, on the same connection object,
codec and namespace ids (:class:`~htcluster._io.resource.Resource` holds
them; only the waits differ, :mod:`htcluster._aio.io`).  A connection lent by
an :class:`~htcluster.aio.AsyncPool` (``async with pool.connection() as r``)
is an ``AsyncResource`` over the pool's resource, its calls reported to the
pool's listeners.

A task cancelled in the middle of a call closes the connection (a reply may
still come: it is out of step) and the ``CancelledError`` propagates.
"""
from __future__ import annotations

import ssl
import time
from typing import Any, AsyncIterator, Callable, Coroutine, Iterator, Optional

from .._io.keepalive import KeepAliveLike
from .._io.resource import (BROKER_METHODS, DEFAULT_CONNECT_TIMEOUT, DEFAULT_SOCKET_TIMEOUT, Resource, check_method,
                            reported_steps)
from .._validate import seconds
from .._wire import DEFAULT_MAX_FRAME_SIZE
from ..hosts import Host, HostLike
from ..types import Cell, ScanSpec
from .io import adrive, connect, namespace_id, ping

__all__ = ["AsyncNamespaces", "AsyncResource", "scan_cells"]


def _broker_method(name: str) -> Callable[..., Coroutine[Any, Any, Any]]:
    async def method(self: "AsyncResource", *args: Any, **kwargs: Any) -> Any:
        resource = self.resource
        return await adrive(reported_steps(resource, name, args, kwargs or None, resource.deadline))

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"``await r.{name}(...)``: the broker method ``{name}`` (:ref:`broker-methods`)."
    return method


class AsyncResource:
    """Open one connection to a ThriftBroker on the running event loop; every broker method is a coroutine.

    The arguments are :class:`~htcluster.Resource`'s (``host``, ``port``,
    ``socket_timeout``, ``connect_timeout``, ``max_frame_size``,
    ``ssl_context``, ``keepalive``; seconds), without ``open``: connect with ``await r.open()``
    or ``async with AsyncResource(...) as r``.

    :raises ConfigError: as ``Resource``.

    Example::

        async with AsyncResource('localhost:15867') as r:
            ns = await r.mns['test']
            cells = await r.get_cells(ns, 'logs', ScanSpec(row_limit=10))
            status = await r.call('get_cell', 'logs', 'row1', 'col', namespace='test')
    """

    def __init__(self, host: HostLike = "localhost", port: Optional[int] = None, *,
                 socket_timeout: float = DEFAULT_SOCKET_TIMEOUT, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
                 max_frame_size: int = DEFAULT_MAX_FRAME_SIZE, ssl_context: Optional[ssl.SSLContext] = None,
                 keepalive: KeepAliveLike = True) -> None:
        #: The :class:`~htcluster.Resource` holding the connection, its codec and namespace ids.
        self.resource = Resource(host, port, socket_timeout=socket_timeout, connect_timeout=connect_timeout,
                                 max_frame_size=max_frame_size, open=False, ssl_context=ssl_context,
                                 keepalive=keepalive)
        self.mns = AsyncNamespaces(self)

    @classmethod
    def over(cls, resource: Resource) -> "AsyncResource":
        """Return an ``AsyncResource`` making its calls on ``resource``'s connection (a pool's lease)."""
        self = cls.__new__(cls)
        self.resource = resource
        self.mns = AsyncNamespaces(self)
        return self

    @property
    def host(self) -> Host:
        """The broker's address."""
        return self.resource.host

    @property
    def is_open(self) -> bool:
        """True while the socket is connected (as far as is known without I/O)."""
        return self.resource.is_open

    @property
    def reusable(self) -> bool:
        """True when the connection is open, not failed, and in step."""
        return self.resource.reusable

    @property
    def failed(self) -> bool:
        """True after a transport failure (the connection must not be reused)."""
        return self.resource.failed

    async def open(self, deadline: Optional[float] = None) -> "AsyncResource":
        """Connect, unless connected; a failed connection is replaced (see ``Resource.open``).

        :raises BrokerUnavailable: the broker cannot be reached (``sent=False``).
        :raises DeadlineExceeded: ``deadline`` (``time.monotonic()``) passed first.
        """
        resource = self.resource
        if not resource.reusable:
            resource.close()
            resource.attach()
            await connect(resource, deadline)
        return self

    async def ping(self, timeout: Optional[float] = None) -> bool:
        """One ``status()`` round trip within ``timeout`` seconds (``None``: ``connect_timeout``).

        :returns: True when the broker answered; False when the connection failed (it is then closed).
        """
        return await ping(self.resource, None if timeout is None else seconds("timeout", timeout))

    async def call(self, method: str, *args: Any, namespace: Optional[str] = None,
                   deadline: Optional[float] = None) -> Any:
        """Call broker ``method`` with ``args``, the id of ``namespace`` first when one is named (``Resource.call``).

        :raises AttributeError: ``method`` is not a broker method.
        :raises InvalidRequest, BrokerUnavailable, DeadlineExceeded, ClientException: as ``Resource.call``.
        """
        check_method(method)
        resource = self.resource
        saved, resource.deadline = resource.deadline, deadline
        try:
            if namespace is not None:
                args = (await namespace_id(resource, namespace, deadline), *args)
            return await getattr(self, method)(*args)
        finally:
            resource.deadline = saved

    def close(self) -> None:
        """Close the socket (idempotent, never raises); the broker drops the connection's namespaces with it."""
        self.resource.mns.forget()
        self.resource.connection.close()

    async def aclose(self) -> None:
        """Close the namespaces opened through :attr:`mns` (best effort), then the socket."""
        if self.resource.reusable:
            for name in list(self.mns):
                try:
                    await self.mns.close_namespace(name)
                except Exception:  # best effort: the connection is being closed anyway
                    if not self.resource.reusable:
                        break
        self.close()

    async def __aenter__(self) -> "AsyncResource":
        return await self.open()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "failed" if self.failed else "open" if self.is_open else "closed"
        return f"<AsyncResource {self.host} {state}>"


for _name in BROKER_METHODS:
    setattr(AsyncResource, _name, _broker_method(_name))


class AsyncNamespaces:
    """The namespaces of one :class:`AsyncResource`'s connection: ``await r.mns['test']`` gives the id.

    The ids are those of the connection's :class:`~htcluster.ManagedNamespaces` (one map per connection).
    """

    def __init__(self, resource: AsyncResource) -> None:
        self.owner = resource

    def __getitem__(self, name: str) -> Coroutine[Any, Any, int]:
        """``await mns[name]``: the id of namespace ``name``, opened on first use.

        :raises ClientException: the namespace does not exist.
        """
        resource = self.owner.resource
        return namespace_id(resource, name, resource.deadline)

    open_namespace = __getitem__

    async def close_namespace(self, name: str) -> None:
        """Close namespace ``name`` on the broker and forget its id; a name not open is ignored."""
        ns = self.owner.resource.mns.pop(name)
        if ns is not None:
            await self.owner.namespace_close(ns)  # type: ignore[attr-defined]

    def __contains__(self, name: object) -> bool:
        return name in self.owner.resource.mns

    def __iter__(self) -> Iterator[str]:
        return iter(self.owner.resource.mns)

    def __len__(self) -> int:
        return len(self.owner.resource.mns)


async def scan_cells(resource: AsyncResource, ns: int, table: str, scan_spec: Optional[ScanSpec] = None, *,
                     batch: bool = False, timeout: Optional[float] = None) -> AsyncIterator[Any]:
    """The asyncio twin of :func:`htcluster._io.resource.scan_cells`: yield cells (or batches) of one scanner.

    Use it inside ``async with`` (or close the generator): the scanner is closed when it ends.
    """
    limit = None if timeout is None else seconds("timeout", timeout)

    def deadline() -> Optional[float]:
        return None if limit is None else time.monotonic() + limit

    spec = scan_spec if scan_spec is not None else ScanSpec()
    scanner = await resource.call("scanner_open", ns, table, spec, deadline=deadline())
    finished = False
    try:
        while True:
            cells: list[Cell] = await resource.call("scanner_get_cells", scanner, deadline=deadline())
            if not cells:
                break
            if batch:
                yield cells
            else:
                for cell in cells:
                    yield cell
        finished = True
    finally:
        if resource.reusable:
            try:
                await resource.scanner_close(scanner)  # type: ignore[attr-defined]
            except Exception:
                if finished:
                    raise

