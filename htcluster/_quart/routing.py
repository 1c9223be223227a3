"""How the Quart extension reaches its brokers: the :mod:`htcluster.aio` twins of the Flask routing.

The strategy table, the settings and everything without I/O are the Flask
extension's (:mod:`htcluster._flask.routing`: :func:`build_cluster` over
:func:`aio_classes`, :class:`~htcluster._flask.routing.ClusterState`,
:class:`~htcluster._flask.routing.BindTable`); this module adds only what
awaits: :class:`AsyncAppState` (checkouts, calls and scans of one cluster),
:class:`AsyncExtensionState` (what ``app.extensions['hypertable']`` holds),
:class:`AsyncLease` (one checked-out connection of a request) and
:class:`AsyncBoundNamespace` (``ht.namespace(...)``).  Nothing here needs an
app context, and nothing here imports :mod:`htcluster.quart_ext`.
"""
from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from typing import Any, AsyncContextManager, Awaitable, Callable, Optional

from ..aio import AsyncNamespaceCalls, AsyncPool, AsyncReplicas, AsyncResources, AsyncShards
from ..errors import BrokerUnavailable
from ..types import ScanSpec
from .._flask.config import Settings
from .._flask.hostsfile import HostsFile
from .._flask.routing import BindTable, ClusterClasses, ClusterState, build_cluster

__all__ = ["AsyncAppState", "AsyncBoundNamespace", "AsyncExtensionState", "AsyncLease", "aio_classes",
           "build_async_cluster", "close_cluster"]

log = logging.getLogger(__name__)


def aio_classes() -> ClusterClasses:
    """Return the :mod:`htcluster.aio` class behind each ``HYPERTABLE_STRATEGY``."""
    return ClusterClasses(pool=AsyncPool, resources=AsyncResources, shards=AsyncShards, replicas=AsyncReplicas)


def build_async_cluster(settings: Settings) -> Any:
    """Return the ``htcluster.aio`` routing object of ``settings`` (:func:`build_cluster` over :func:`aio_classes`).

    The object binds to an event loop on its first call, not here, so it may
    be built before any loop runs (in ``init_app``, at import time).

    :raises ConfigError: the routing class refused an option value (the message names the key).
    """
    return build_cluster(settings, aio_classes())


async def close_cluster(cluster: Any) -> None:
    """Close a routing object's idle connections: ``cluster.close()``, awaited when it returns an awaitable."""
    result = cluster.close()
    if inspect.isawaitable(result):
        await result


class AsyncLease:
    """One connection checked out of an ``htcluster.aio`` routing object, and the way to give it back.

    Made by :meth:`enter`, which enters the checkout (an async context
    manager such as ``replicas.connection()``); :meth:`release` leaves it.
    """

    def __init__(self, checkout: AsyncContextManager[Any]) -> None:
        self._checkout = checkout
        #: The checked-out ``AsyncResource`` (``None`` until :meth:`enter` returned).
        self.resource: Any = None

    @classmethod
    async def enter(cls, checkout: AsyncContextManager[Any]) -> "AsyncLease":
        """Check a connection out.

        :raises NoHostAvailable: no host could give a connection.
        :raises PoolTimeout: no pooled connection became free in time.
        :raises asyncio.CancelledError: the task was cancelled while waiting (nothing is held then).
        """
        lease = cls(checkout)
        lease.resource = await checkout.__aenter__()
        return lease

    async def release(self, exc: Optional[BaseException] = None) -> None:
        """Give the connection back; one that failed in transport, was closed or was cut by a cancel is discarded.

        :param exc: why the request ended, if it failed.  A cancellation
            (:class:`asyncio.CancelledError`) is passed on as it is: the routing
            object closes the connection and releases the lease but does not
            mark the host down (the caller left, the host did not fail).  Else a
            connection that is no longer reusable is reported as
            :class:`~htcluster.errors.BrokerUnavailable` (``Resources`` marks
            its host down, as the Flask extension's lease does).
        """
        r = self.resource
        args: tuple[Any, ...] = (None, None, None)
        if isinstance(exc, asyncio.CancelledError):
            args = (type(exc), exc, exc.__traceback__)
        elif not getattr(r, "reusable", True):
            error = BrokerUnavailable(f"the connection to {getattr(r, 'host', '?')} failed or was closed during "
                                      "the request; discarded", host=str(getattr(r, "host", "?")), sent=True)
            args = (BrokerUnavailable, error, None)
        try:
            await self._checkout.__aexit__(*args)
        except Exception:  # a teardown must not fail the response
            log.exception("returning the connection to %s", getattr(r, "host", "?"))


class AsyncAppState(ClusterState):
    """One cluster of a Quart app: :class:`~htcluster._flask.routing.ClusterState` with awaitable I/O.

    Membership (``set_hosts``, ``add_host``, ``remove_host``), ``stats()``,
    ``pools()`` and the shard-key checks are the shared, synchronous ones:
    they swap a snapshot and do no I/O.
    """

    def __init__(self, owner: object, settings: Settings, cluster: Any, bind: Optional[str] = None) -> None:
        super().__init__(owner, settings, cluster, bind, aio_classes())

    async def close(self) -> None:
        """Close the idle connections of the routing object (checked-out ones close at checkin)."""
        await close_cluster(self.cluster)

    def connection(self, write: bool = True) -> AsyncContextManager[Any]:
        """Return the checkout (not yet entered) of a connection for writing, or reading.

        :param write: for ``replicas``: a write host (``True``) or any read host.
        :returns: an async context manager giving an ``AsyncResource``.
        :raises RuntimeError: with ``shards``, where a connection depends on the shard key.
        """
        if self.kind == "replicas":
            checkout: AsyncContextManager[Any] = self.cluster.connection(write=write)
            return checkout
        if self.kind == "shards":
            raise self.no_shard_connection()
        checkout = self.cluster.connection()
        return checkout

    async def route(self, method: str, args: tuple[Any, ...], namespace: Optional[str], key: Optional[str]) -> Any:
        """Make one call through the routing object (failover, hedging, stamping are the object's).

        :param method: a broker method (:ref:`broker-methods`).
        :param args: its arguments after the namespace id.
        :param namespace: a namespace name, or ``None`` for calls that take none.
        :param key: the shard key: required with ``shards``, refused otherwise.
        :returns: the broker's answer.
        :raises TypeError: ``key`` missing with ``shards``, or given without.
        :raises NoHostAvailable: every host the call could use failed.
        :raises ClientException: the broker refused the call.
        """
        shard = self.shard(method, key)
        if self.kind in ("pool", "replicas"):
            return await self.cluster.call(method, *args, namespace=namespace)
        return await self.cluster.unicast(*shard, method, *args, namespace=namespace)

    def scan(self, table: str, scan_spec: Optional[ScanSpec], namespace: str,
             key: Optional[str]) -> AsyncContextManager[Any]:
        """Return the routing object's scan: ``async with state.scan(...) as cells: async for cell in cells``.

        Leaving the block closes the scanner and gives the connection back,
        also when the consumer stops early.

        :raises TypeError: ``key`` missing with ``shards``, or given without.
        """
        scan: AsyncContextManager[Any] = self.cluster.scan(*self.shard("scan", key), table, scan_spec,
                                                           namespace=namespace)
        return scan


class AsyncExtensionState(BindTable, AsyncAppState):
    """What a Quart app's ``app.extensions['hypertable']`` holds: the main cluster (this object) and the binds."""

    def __init__(self, owner: object, settings: Settings, cluster: Any) -> None:
        super().__init__(owner, settings, cluster)
        self.binds: dict[str, AsyncAppState] = {}
        #: The watcher of ``HYPERTABLE_HOSTS_FILE`` (:mod:`htcluster._flask.hostsfile`), or ``None``.
        self.hosts_file: Optional[HostsFile] = None

    async def close(self) -> None:
        """Close the idle connections of every cluster, the binds' too (the first error is raised after)."""
        errors = []
        for state in self.every():
            try:
                await close_cluster(state.cluster)
            except Exception as exc:  # close the others anyway
                errors.append(exc)
        if errors:
            raise errors[0]


class AsyncBoundNamespace(AsyncNamespaceCalls):
    """Broker calls with one namespace filled in, each routed (and awaited) by the app's strategy.

    ``await ht.namespace('logs').get_row('LogDb', 'r1')`` is ``await
    cluster.call('get_row', 'LogDb', 'r1', namespace='logs')`` through the
    strategy (for replicas: a read host, failing over to another; a write host
    for writes).  Every broker method that runs in a namespace is a typed
    coroutine (generated from the IDL:
    :class:`~htcluster.aio.AsyncNamespaceCalls`), so mypy checks ``await
    ht.namespace('logs').get_cells(...)``; :meth:`call` stays for names given
    at run time.  It keeps no connection, so it may be kept for the life of
    the app; no app context is needed once it exists.

    :param state: the cluster.
    :param name: the namespace.
    :param key: the shard key (``shards`` only).
    """

    def __init__(self, state: AsyncAppState, name: str, key: Optional[str] = None) -> None:
        super().__init__(self._routed, name)
        self._state = state
        self.key = key

    def _routed(self, method: str, *args: Any, namespace: Optional[str] = None) -> Awaitable[Any]:
        return self._state.route(method, args, namespace, self.key)

    def call(self, method: str, *args: Any) -> Awaitable[Any]:
        """Call broker ``method`` (:ref:`broker-methods`) with the namespace id put before ``args``.

        :returns: an awaitable of the broker's answer.
        :raises NoHostAvailable: every host the call could use failed (when awaited).
        :raises ClientException: the broker refused the call (when awaited).
        """
        return self._state.route(method, args, self.name, self.key)

    def __getattr__(self, method: str) -> Callable[..., Awaitable[Any]]:
        if method.startswith("_"):
            raise AttributeError(method)
        return functools.partial(self.call, method)

    def scan(self, table: str, scan_spec: Optional[ScanSpec] = None) -> AsyncContextManager[Any]:
        """Scan ``table``: ``async with ns.scan(table) as cells: async for cell in cells``."""
        return self._state.scan(table, scan_spec, self.name, self.key)

    def __repr__(self) -> str:
        key = f" key={self.key!r}" if self.key is not None else ""
        bind = f" bind={self._state.bind_name!r}" if self._state.bind_name is not None else ""
        return f"<AsyncBoundNamespace {self.name!r}{key}{bind} via {self._state.settings.strategy}>"
