"""The routing classes for asyncio: :class:`AsyncResources`, :class:`AsyncReplicas`, :class:`AsyncShards`.

Each is its blocking twin (``Resources``, ``Replicas``, ``Shards``: the same
constructor, options, plans, router, host health, budgets, membership,
``stats()`` and events) whose calls are coroutines.  A call is the twin's
own engine generator (``unicast_steps``, ``call_steps``, ``broadcast_steps``,
``multicast_steps``, ``Router.hold_steps``: :mod:`htcluster._policy.steps`)
driven with ``await`` (:func:`htcluster._aio.io.adrive`), so failover,
probes, hedging, the retry budget, deadlines, stamping and HQL write
rewriting are the same code as for threads; only the waits differ.

An object may be made before any loop runs; it belongs to the loop that
first uses it (:class:`~htcluster.errors.WrongEventLoop` from another).
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Hashable, Iterable, Literal, Mapping, Optional, Union, overload

from .._call.attempt import Hold
from .._policy.batches import DEFAULT_MAX_BYTES, DEFAULT_MAX_CELLS
from .._policy.plans import Plan
from .._routing.mutator import replicas_mutator, shards_mutator
from .._routing.replicas import Replicas
from .._routing.resources import Resources
from .._routing.router import Router
from .._routing.shards import Shards
from ..hosts import HostLike
from ..types import Errors, Results, ScanSpec
from .bind import LoopBinding
from .io import adrive
from .mutator import AsyncMutator, ScanAll
from .pool import AsyncPool
from .resource import AsyncResource
from .scan import ScanBlock, resource_scan, replicas_scan
from .typed import AsyncBrokerCalls, AsyncNamespaceCalls

__all__ = ["AsyncConnection", "AsyncReplicas", "AsyncResources", "AsyncShards"]


class AsyncConnection:
    """The async context manager of ``connection()``: failover while connecting, the block's outcome reported."""

    __slots__ = ("router", "plan", "binding", "host", "hold")

    def __init__(self, router: Router, plan: Plan, binding: LoopBinding) -> None:
        self.router, self.plan, self.binding = router, plan, binding
        self.host: Optional[str] = None
        self.hold: Optional[Hold] = None

    async def __aenter__(self) -> AsyncResource:
        if self.hold is not None:
            raise RuntimeError("this connection() is already in use; call connection() again")
        self.binding.check()
        self.host, self.hold, resource = await adrive(self.router.hold_steps(self.plan))
        return AsyncResource.over(resource)

    async def __aexit__(self, exc_type: Optional[type], exc: Optional[BaseException], tb: object) -> None:
        hold, self.hold = self.hold, None
        if hold is not None:
            hold.end(exc)


class AsyncResources(Resources):
    """``Resources`` for asyncio: ``await rs.unicast(...)``, ``await rs.broadcast(...)``.

    The arguments, options, mapping, ``stats()`` and errors are those of
    :class:`~htcluster.Resources`; the pools are :class:`~htcluster.aio.AsyncPool` s.

    Example::

        async with AsyncResources('ht1,ht2,ht3') as rs:
            await rs.unicast('hql_query', 'SELECT * FROM t', namespace='test')
            statuses = await rs.broadcast('status')
    """

    pool_class = AsyncPool

    def __init__(self, hosts: Any, **options: Any) -> None:
        super().__init__(hosts, **options)
        #: The event loop this object belongs to (bound on first use).
        self.binding = LoopBinding(type(self).__name__)

    async def unicast(self, method: str, *args: Any, namespace: Optional[str] = None,
                      hosts: Iterable[HostLike] = (), idempotent: Optional[bool] = None,
                      timeout: Optional[float] = None, hedge: Optional[float] = None) -> Any:
        """Call ``method`` on one host, failing over (see :meth:`htcluster.Resources.unicast`).

        :returns: the broker's answer.
        :raises HtclusterError: what ``Resources.unicast`` raises (``NoHostAvailable``, ``DeadlineExceeded``,
            ``WriteOutcomeUnknown``, ``InvalidRequest``, ``ClientResourceError``; ``ClientException``).
        :raises asyncio.CancelledError: the task was cancelled (connection closed, host untouched).
        """
        self.binding.check()
        return await adrive(self.unicast_steps(method, args, namespace, hosts, idempotent, timeout, hedge))

    @overload  # type: ignore[override]
    async def broadcast(self, method: str, *args: Any, namespace: Optional[str] = None,
                        hosts: Iterable[HostLike] = (), errors: Literal["raise"] = "raise",
                        timeout: Optional[float] = None) -> Results: ...

    @overload
    async def broadcast(self, method: str, *args: Any, namespace: Optional[str] = None,
                        hosts: Iterable[HostLike] = (), errors: Literal["return"],
                        timeout: Optional[float] = None) -> tuple[Results, Errors]: ...

    async def broadcast(self, method: str, *args: Any, namespace: Optional[str] = None,
                        hosts: Iterable[HostLike] = (), errors: str = "raise",
                        timeout: Optional[float] = None) -> Union[Results, tuple[Results, Errors]]:
        """Call ``method`` on every host at once (see :meth:`htcluster.Resources.broadcast`).

        :returns: ``{host: result}``, or ``(results, errors)`` with ``errors='return'``.
        :raises BroadcastError: some host failed and ``errors='raise'``.
        """
        self.binding.check()
        return await adrive(self.broadcast_steps(method, args, namespace, hosts, errors, timeout))

    def namespace(self, name: Optional[str] = None) -> AsyncNamespaceCalls:  # type: ignore[override]
        """Return the broker methods of namespace ``name``, typed, each a coroutine awaiting :meth:`unicast`.

        :param name: a namespace name (``None``: the default namespace).
        :returns: an :class:`~htcluster.aio.AsyncNamespaceCalls`, e.g.
            ``await rs.namespace("logs").get_cells("LogDb", spec) -> list[Cell]``.
        :raises ConfigError: no name and no default namespace.
        """
        return AsyncNamespaceCalls(self.unicast, self.scan_namespace(name))

    @property
    def broker(self) -> AsyncBrokerCalls:  # type: ignore[override]
        """The broker methods that take no namespace, typed, each awaiting :meth:`unicast`
        (``await rs.broker.status()``)."""
        return AsyncBrokerCalls(self.unicast)

    def connect(self, plan: Plan) -> AsyncConnection:  # type: ignore[override]
        """Return an async context manager leasing one connection to a host of ``plan``."""
        return AsyncConnection(self.router, plan, self.binding)

    def connection(self, host: Optional[HostLike] = None, *,  # type: ignore[override]
                   hosts: Iterable[HostLike] = (), ordered: bool = False) -> AsyncConnection:
        """``async with rs.connection() as r:`` (see :meth:`htcluster.Resources.connection`); ``r`` is an
        :class:`AsyncResource`."""
        connection: AsyncConnection = super().connection(host, hosts=hosts, ordered=ordered)  # type: ignore[assignment]
        return connection

    def scan(self, table: str, scan_spec: Optional[ScanSpec] = None, *,  # type: ignore[override]
             namespace: Optional[str] = None, host: Optional[HostLike] = None,
             timeout: Optional[float] = None) -> ScanBlock:
        """``async with rs.scan(table, ...) as cells: async for cell in cells:`` from one host
        (see :meth:`htcluster.Resources.scan`); the scanner is closed when the block ends."""
        return resource_scan(self.connection(host), self.scan_namespace(namespace), table, scan_spec, timeout)

    async def __aenter__(self) -> "AsyncResources":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


class AsyncReplicas(Replicas):
    """``Replicas`` for asyncio: ``await replicas.call(...)``; writes to the first healthy host, reads balanced.

    The arguments, options (``retry``, ``backoff``, ``call_timeout``, ``probe_timeout``,
    ``hedge``, ``hedge_ratio``, ``retry_budget``, ``listeners``, ``balancer``, ``balance``,
    ``max_ejection``, ``slow_start``, ``decay_time``, ``consecutive_gateway_failure``,
    ``base_ejection_time``, ``max_ejection_time``, the pool options, ``ssl_context``),
    the stamping of writes, ``stats()``,
    events and errors are those of :class:`~htcluster.Replicas`.

    Example::

        async with AsyncReplicas('ht1,ht2,ht3') as replicas:
            await replicas.call('set_cells', 'logs', cells, namespace='web')   # ht1, else ht2 ...
            cell = await replicas.call('get_cell', 'logs', 'row1', 'col', namespace='web')
            async with replicas.scan('logs', namespace='web') as cells:
                async for cell in cells:
                    ...
    """

    pool_class = AsyncPool

    def __init__(self, hosts: Any, **options: Any) -> None:
        super().__init__(hosts, **options)
        #: The event loop this object belongs to (bound on first use).
        self.binding = LoopBinding(type(self).__name__)

    async def call(self, method: str, *args: Any, namespace: Optional[str] = None,
                   write: Optional[bool] = None, timeout: Optional[float] = None,
                   hedge: Optional[float] = None) -> Any:
        """Call ``method`` on a write host or any read host, failing over as it is safe
        (see :meth:`htcluster.Replicas.call`: the same routing, stamping, HQL rewriting and collapsing).

        :returns: the broker's answer.
        :raises HtclusterError: what ``Replicas.call`` raises (``NoHostAvailable``, ``WriteOutcomeUnknown``,
            ``DeadlineExceeded``, ``InvalidRequest``; ``ClientException``).
        :raises asyncio.CancelledError: the task was cancelled (connection closed, host untouched).
        """
        self.binding.check()
        return await adrive(self.call_steps(method, args, namespace, write, timeout, hedge))

    @overload  # type: ignore[override]
    async def broadcast(self, method: str, *args: Any, namespace: Optional[str] = None,
                        hosts: Iterable[HostLike] = (), errors: Literal["raise"] = "raise",
                        timeout: Optional[float] = None) -> Results: ...

    @overload
    async def broadcast(self, method: str, *args: Any, namespace: Optional[str] = None,
                        hosts: Iterable[HostLike] = (), errors: Literal["return"],
                        timeout: Optional[float] = None) -> tuple[Results, Errors]: ...

    async def broadcast(self, method: str, *args: Any, namespace: Optional[str] = None,
                        hosts: Iterable[HostLike] = (), errors: str = "raise",
                        timeout: Optional[float] = None) -> Union[Results, tuple[Results, Errors]]:
        """Call ``method`` on every replica at once (see :meth:`htcluster.Resources.broadcast`)."""
        self.binding.check()
        return await adrive(self.broadcast_steps(method, args, namespace, hosts, errors, timeout))

    def namespace(self, name: Optional[str] = None) -> AsyncNamespaceCalls:  # type: ignore[override]
        """Return the broker methods of namespace ``name``, typed, each a coroutine awaiting :meth:`call`.

        Writes go to the first healthy replica and are stamped, reads are balanced,
        as for :meth:`call`.

        :param name: a namespace name (``None``: the default namespace).
        :returns: an :class:`~htcluster.aio.AsyncNamespaceCalls`, e.g.
            ``await replicas.namespace("logs").get_cells("LogDb", spec) -> list[Cell]``.
        :raises ConfigError: no name and no default namespace.
        """
        return AsyncNamespaceCalls(self.call, self.scan_namespace(name))

    @property
    def broker(self) -> AsyncBrokerCalls:  # type: ignore[override]
        """The broker methods that take no namespace, typed, each awaiting :meth:`call`
        (``await replicas.broker.status()``)."""
        return AsyncBrokerCalls(self.call)

    def connect(self, plan: Plan) -> AsyncConnection:  # type: ignore[override]
        """Return an async context manager leasing one connection to a host of ``plan``."""
        return AsyncConnection(self.router, plan, self.binding)

    def connection(self, host: Optional[HostLike] = None, *,  # type: ignore[override]
                   write: bool = True) -> AsyncConnection:
        """``async with replicas.connection() as r:`` (see :meth:`htcluster.Replicas.connection`)."""
        connection: AsyncConnection = super().connection(host, write=write)  # type: ignore[assignment]
        return connection

    def scan(self, table: str, scan_spec: Optional[ScanSpec] = None, *,  # type: ignore[override]
             namespace: Optional[str] = None, host: Optional[HostLike] = None,
             timeout: Optional[float] = None) -> ScanBlock:
        """``async with replicas.scan(table, ...) as cells: async for cell in cells:``; resumes on another
        replica after a failure, just after the last complete row delivered (see :meth:`htcluster.Replicas.scan`)."""
        return replicas_scan(self, table, scan_spec, namespace, host, timeout)

    def mutator(self, table: str, *, namespace: Optional[str] = None,  # type: ignore[override]
                flush_interval: Optional[float] = None, max_cells: int = DEFAULT_MAX_CELLS,
                max_bytes: int = DEFAULT_MAX_BYTES, block: bool = True,
                timeout: Optional[float] = None) -> AsyncMutator:
        """``async with replicas.mutator(table, namespace=...) as m: await m.set_cells(cells)``: a buffered
        mutator whose flushes are stamped ``set_cells`` failing over in order (see :meth:`htcluster.Replicas.mutator`;
        the same options, limits and errors).

        :returns: an :class:`~htcluster.aio.AsyncMutator`.
        :raises ConfigError: no namespace, or an invalid option.
        """
        return replicas_mutator(self, table, namespace, AsyncMutator, binding=self.binding,
                                flush_interval=flush_interval, max_cells=max_cells, max_bytes=max_bytes, block=block,
                                timeout=timeout)

    async def __aenter__(self) -> "AsyncReplicas":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


class AsyncShards(Shards):
    """``Shards`` for asyncio: ``await shards.unicast(key, ...)``, ``broadcast(key, ...)``, ``multicast(keys, ...)``.

    The arguments (``(host, key)`` pairs or ``{host: keys}``), options,
    mapping, placement (``locate``), ``stats()`` and errors are those of
    :class:`~htcluster.Shards`, over one :class:`AsyncResources`.
    """

    def make_resources(self, hosts: list[str], options: Mapping[str, Any]) -> AsyncResources:
        """The :class:`AsyncResources` of every host."""
        return AsyncResources(hosts, **options)

    @property
    def binding(self) -> LoopBinding:
        """The event loop this object belongs to (its ``AsyncResources``')."""
        resources: AsyncResources = self.resources  # type: ignore[assignment]
        return resources.binding

    async def unicast(self, key: Hashable, method: str, *args: Any,
                      namespace: Optional[str] = None, idempotent: Optional[bool] = None,
                      timeout: Optional[float] = None, hedge: Optional[float] = None) -> Any:
        """Call ``method`` on one host serving ``key`` (see :meth:`htcluster.Shards.unicast`)."""
        self.binding.check()
        return await adrive(self.resources.unicast_steps(method, args, namespace, self.hosts(key), idempotent,
                                                         timeout, hedge))

    @overload  # type: ignore[override]
    async def broadcast(self, key: Hashable, method: str, *args: Any, namespace: Optional[str] = None,
                        errors: Literal["raise"] = "raise", timeout: Optional[float] = None) -> Results: ...

    @overload
    async def broadcast(self, key: Hashable, method: str, *args: Any, namespace: Optional[str] = None,
                        errors: Literal["return"], timeout: Optional[float] = None) -> tuple[Results, Errors]: ...

    async def broadcast(self, key: Hashable, method: str, *args: Any, namespace: Optional[str] = None,
                        errors: str = "raise",
                        timeout: Optional[float] = None) -> Union[Results, tuple[Results, Errors]]:
        """Call ``method`` on every host serving ``key`` at once (see :meth:`htcluster.Shards.broadcast`)."""
        self.binding.check()
        return await adrive(self.resources.broadcast_steps(method, args, namespace, self.hosts(key), errors,
                                                           timeout))

    @overload  # type: ignore[override]
    async def multicast(self, keys: Iterable[Hashable], method: str, *args: Any, namespace: Optional[str] = None,
                        errors: Literal["raise"] = "raise", idempotent: Optional[bool] = None,
                        timeout: Optional[float] = None) -> Results: ...

    @overload
    async def multicast(self, keys: Iterable[Hashable], method: str, *args: Any, namespace: Optional[str] = None,
                        errors: Literal["return"], idempotent: Optional[bool] = None,
                        timeout: Optional[float] = None) -> tuple[Results, Errors]: ...

    async def multicast(self, keys: Iterable[Hashable], method: str, *args: Any, namespace: Optional[str] = None,
                        errors: str = "raise", idempotent: Optional[bool] = None,
                        timeout: Optional[float] = None) -> Union[Results, tuple[Results, Errors]]:
        """Call ``method`` on a smallest set of hosts serving all ``keys`` (see :meth:`htcluster.Shards.multicast`)."""
        self.binding.check()
        return await adrive(self.multicast_steps(keys, method, args, namespace, errors, idempotent, timeout))

    def namespace(self, key: Hashable, name: Optional[str] = None) -> AsyncNamespaceCalls:  # type: ignore[override]
        """Return the broker methods of namespace ``name`` on the hosts of shard ``key``, typed, each a coroutine.

        :param key: a shard key (each call awaits a :meth:`unicast` to one of its hosts).
        :param name: a namespace name (``None``: the default namespace).
        :returns: an :class:`~htcluster.aio.AsyncNamespaceCalls`.
        :raises KeyError: unknown key.
        :raises ConfigError: no name and no default namespace.
        """
        self.hosts(key)
        return AsyncNamespaceCalls(functools.partial(self.unicast, key), self.resources.scan_namespace(name))

    def connection(self, key: Hashable) -> AsyncConnection:  # type: ignore[override]
        """``async with shards.connection(key) as r:`` (see :meth:`htcluster.Shards.connection`)."""
        connection: AsyncConnection = super().connection(key)  # type: ignore[assignment]
        return connection

    def scan(self, key: Hashable, table: str, scan_spec: Optional[ScanSpec] = None, *,  # type: ignore[override]
             namespace: Optional[str] = None, timeout: Optional[float] = None) -> ScanBlock:
        """``async with shards.scan(key, table, ...) as cells: async for cell in cells:`` from one host of ``key``."""
        return resource_scan(self.connection(key), self.resources.scan_namespace(namespace), table, scan_spec,
                             timeout)

    def mutator(self, table: str, *, namespace: Optional[str] = None,  # type: ignore[override]
                key: Optional[Callable[[str], Hashable]] = None, flush_interval: Optional[float] = None,
                max_cells: int = DEFAULT_MAX_CELLS, max_bytes: int = DEFAULT_MAX_BYTES, block: bool = True,
                timeout: Optional[float] = None) -> AsyncMutator:
        """``async with shards.mutator(table, namespace=...) as m: await m.set_cells(cells)``: each cell to
        the shard of its row, every shard's batch of a flush sent at once (see :meth:`htcluster.Shards.mutator`;
        the same options, ``key=``, limits, per-shard ``stats()`` and errors).

        :returns: an :class:`~htcluster.aio.AsyncMutator`.
        :raises ConfigError: no namespace, or an invalid option.
        """
        return shards_mutator(self, table, namespace, key, AsyncMutator, binding=self.binding,
                              flush_interval=flush_interval, max_cells=max_cells, max_bytes=max_bytes, block=block,
                              timeout=timeout)

    def scan_all(self, table: str, scan_spec: Optional[ScanSpec] = None, *,  # type: ignore[override]
                 namespace: Optional[str] = None, timeout: Optional[float] = None) -> ScanAll:
        """``async with shards.scan_all(table, ...) as cells: async for cell in cells:``: every shard's cells,
        merged in row-key order, each shard read by a task of its own and resuming on another host of the
        shard after a failure (see :meth:`htcluster.Shards.scan_all`); leaving the block closes every scanner.

        :returns: a :class:`~htcluster.aio.ScanAll` (an async context manager).
        """
        return ScanAll(self, table, scan_spec, self.resources.scan_namespace(namespace), timeout)

    async def __aenter__(self) -> "AsyncShards":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
