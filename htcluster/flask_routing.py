"""How the Flask extension reaches its brokers: one routing object per app, checkouts, bound calls.

:func:`build_cluster` maps ``HYPERTABLE_STRATEGY`` to a routing object
(``Pool``, ``Resources``, ``Shards`` or ``Replicas``); :class:`AppState` is
what ``app.extensions['hypertable']`` holds and knows how each strategy
checks out a connection, makes a call and scans; :class:`Lease` is one
checked-out connection and gives it back (or discards it); and
:class:`BoundNamespace` is ``ht.namespace(...)``.  Nothing here needs an app
context: :mod:`htcluster.flask_ext` finds the state and hands it over.
"""
from __future__ import annotations

import functools
import logging
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional

from flask import Response

from .cluster import Replicas, Resources, Shards
from .errors import BrokerUnavailable
from .flask_config import Settings
from .flask_stream import RowJson, row_to_json, stream_cells
from .pool import Pool
from .resource import Resource
from .types import Cell, ScanSpec

if TYPE_CHECKING:  # pragma: no cover
    from .flask_ext import Hypertable

__all__ = ["AppState", "BoundNamespace", "Lease", "build_cluster", "pools_of"]

log = logging.getLogger(__name__)


def build_cluster(settings: Settings) -> Any:
    """Return the routing object of ``HYPERTABLE_STRATEGY`` (the table behind ``ht.cluster``).

    :param settings: the app's checked settings; every pool gets :meth:`Settings.pool_options`.
    :returns: a ``Pool`` (``pool``), ``Resources``, ``Shards`` or ``Replicas``.
    """
    options = settings.pool_options()
    table: dict[str, Callable[[], Any]] = {
        "pool": lambda: Pool(settings.hosts[0], **options),
        "resources": lambda: Resources(settings.hosts, **options),
        "shards": lambda: Shards([(h, key) for key, hosts in settings.shards.items() for h in hosts],
                                 options=options),
        "replicas": lambda: Replicas(settings.hosts, **options),
    }
    return table[settings.strategy]()


def pools_of(cluster: Any) -> dict[str, Pool]:
    """Return ``{'host:port': Pool}`` of any routing object :func:`build_cluster` makes."""
    if isinstance(cluster, Pool):
        return {str(cluster.host): cluster}
    if isinstance(cluster, Resources):
        return dict(cluster)
    return dict(cluster.resources)


class Lease:
    """One connection checked out of a routing object, and the way to give it back.

    :param checkout: a routing object's ``connection(...)`` context manager;
        it is entered here, so :attr:`resource` is checked out from now on.
    :raises NoHostAvailable: no host could give a connection.
    :raises PoolTimeout: no pooled connection became free in time.
    """

    def __init__(self, checkout: AbstractContextManager) -> None:
        self._checkout = checkout
        self.resource: Resource = checkout.__enter__()

    def release(self) -> None:
        """Give the connection back; one that failed in transport or was closed is discarded.

        The routing object learns of the failure (``Resources`` marks the host
        down) because the failure is passed to its checkout's ``__exit__``;
        the pool closes what is not :attr:`Resource.reusable`.
        """
        r = self.resource
        args: tuple = (None, None, None)
        if not r.reusable:
            error = BrokerUnavailable(f"the connection to {r.host} failed or was closed during the "
                                      "request; discarded", host=str(r.host), sent=True)
            args = (BrokerUnavailable, error, None)
        try:
            self._checkout.__exit__(*args)
        except Exception:  # a teardown must not fail the response
            log.exception("returning the connection to %s", r.host)


class AppState:
    """What one app needs: its settings, its routing object, the extension that owns them."""

    def __init__(self, owner: "Hypertable", settings: Settings, cluster: Any) -> None:
        self.owner = owner
        self.settings = settings
        self.cluster = cluster

    @property
    def separate_reads(self) -> bool:
        """True when reads go to other hosts than writes (``Replicas``)."""
        return isinstance(self.cluster, Replicas)

    def connection(self, write: bool = True) -> AbstractContextManager:
        """Return the checkout (not yet entered) of a connection for writing, or reading.

        :param write: for ``Replicas``: a write host (``True``) or any read host.
        :returns: a context manager giving a :class:`~htcluster.resource.Resource`.
        :raises RuntimeError: with ``shards``, where a connection depends on the shard key.
        """
        if isinstance(self.cluster, Replicas):
            return self.cluster.connection(write=write)
        if isinstance(self.cluster, Shards):
            raise RuntimeError("with HYPERTABLE_STRATEGY 'shards' a connection depends on the shard: "
                               "use ht.namespace(key=...) or ht.cluster.connection(key)")
        return self.cluster.connection()

    def _shard(self, what: str, key: Optional[str]) -> tuple[str, ...]:
        """Return ``(key,)``, the leading argument of a ``Shards`` call, or ``()`` for the other strategies.

        :param what: the call, for the message.
        :param key: the shard key: required with ``shards``, refused otherwise.
        :raises TypeError: ``key`` missing with ``shards``, or given without.
        """
        if isinstance(self.cluster, Shards):
            if key is None:
                raise TypeError(f"{what}: with HYPERTABLE_STRATEGY 'shards' name the shard: "
                                "ht.namespace(name, key='...')")
            return (key,)
        if key is not None:
            raise TypeError(f"{what}: key= is for HYPERTABLE_STRATEGY 'shards' only")
        return ()

    def route(self, method: str, args: tuple, namespace: Optional[str], key: Optional[str]) -> Any:
        """Make one call through the routing object (failover is the object's).

        :param method: a broker method (protocol.md section 2).
        :param args: its arguments after the namespace id.
        :param namespace: a namespace name, or ``None`` for calls that take none.
        :param key: the shard key: required with ``shards``, refused otherwise.
        :returns: the broker's answer.
        :raises TypeError: ``key`` missing with ``shards``, or given without.
        :raises NoHostAvailable: every host the call could use failed.
        :raises ClientException: the broker refused the call.
        """
        shard = self._shard(method, key)
        if isinstance(self.cluster, (Pool, Replicas)):  # Replicas.call picks a write or a read host
            return self.cluster.call(method, *args, namespace=namespace)
        return self.cluster.unicast(*shard, method, *args, namespace=namespace)  # Resources or Shards

    def scan(self, table: str, scan_spec: Optional[ScanSpec], namespace: str,
             key: Optional[str]) -> Iterator[Cell]:
        """Return the routing object's scan generator (it owns its connection and scanner).

        :returns: a generator of :class:`~htcluster.types.Cell`; closing it
            closes the scanner and gives the connection back.
        :raises TypeError: ``key`` missing with ``shards``, or given without.
        """
        return self.cluster.scan(*self._shard("scan", key), table, scan_spec, namespace=namespace)


class BoundNamespace:
    """Broker calls with one namespace filled in, each routed by the app's strategy.

    ``ht.namespace('logs').get_row('LogDb', 'r1')`` is
    ``get_row(<id of logs>, 'LogDb', 'r1')`` on a connection the strategy
    picks (for replicas: a read host, failing over to another; a write host
    for writes).  Each call checks a connection out and back in; no app
    context is needed once the object exists.
    """

    def __init__(self, state: AppState, name: str, key: Optional[str] = None) -> None:
        self._state = state
        self.name = name
        self.key = key

    def call(self, method: str, *args: Any) -> Any:
        """Call broker ``method`` (protocol.md section 2) with the namespace id put before ``args``.

        :returns: the broker's answer.
        :raises NoHostAvailable: every host the call could use failed.
        :raises ClientException: the broker refused the call.
        """
        return self._state.route(method, args, self.name, self.key)

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method.startswith("_"):
            raise AttributeError(method)
        return functools.partial(self.call, method)

    def scan(self, table: str, scan_spec: Optional[ScanSpec] = None) -> Iterator[Cell]:
        """Scan ``table`` batch by batch; closing the generator closes the scanner.

        :returns: a generator of :class:`~htcluster.types.Cell`.
        """
        return self._state.scan(table, scan_spec, self.name, self.key)

    def stream(self, table: str, scan_spec: Optional[ScanSpec] = None, *, by_row: bool = False,
               row_json: RowJson = row_to_json) -> Response:
        """Return a streamed JSON array of the scan (see :func:`htcluster.flask_stream.stream_cells`).

        :param by_row: one object per row (made by ``row_json``) instead of one per cell.
        :returns: a Flask ``Response`` (``application/json``, streamed).
        """
        return stream_cells(self.scan(table, scan_spec), by_row=by_row, row_json=row_json)

    def __repr__(self) -> str:
        key = f" key={self.key!r}" if self.key is not None else ""
        return f"<BoundNamespace {self.name!r}{key} via {self._state.settings.strategy}>"
