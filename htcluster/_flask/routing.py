"""How the Flask extension reaches its brokers: one routing object per app, checkouts, bound calls.

:func:`build_cluster` maps ``HYPERTABLE_STRATEGY`` to a routing object
(``Pool``, ``Resources``, ``Shards`` or ``Replicas``); :class:`AppState` is
one cluster of an app and knows how each strategy checks out a connection,
makes a call and scans; :class:`ExtensionState` (what
``app.extensions['hypertable']`` holds) is the main cluster plus the
``HYPERTABLE_BINDS``; :class:`Lease` is one
checked-out connection and gives it back (or discards it); and
:class:`BoundNamespace` is ``ht.namespace(...)``.  Nothing here needs an app
context: :mod:`htcluster.flask_ext` finds the state and hands it over; this
module never imports it (the extension imports this one, not the reverse).
"""
from __future__ import annotations

import functools
import logging
from contextlib import AbstractContextManager
from typing import Any, Callable, Hashable, Iterator, NamedTuple, Optional

from flask import Response

from ..errors import BrokerUnavailable, ConfigError
from .._call.attempt import Pool
from .._routing.replicas import Replicas
from .._io.resource import Resource
from .._routing.resources import Resources
from .._routing.shards import Shards
from .._routing.typed import NamespaceCalls
from ..types import Cell, ScanSpec
from .config import Settings
from .hostsfile import HostsFile
from .stream import RowJson, row_to_json, stream_cells

__all__ = ["KINDS", "SYNC_CLASSES", "AppState", "BindTable", "BoundNamespace", "ClusterClasses", "ClusterState",
           "ExtensionState", "Lease", "build_cluster", "kind_of", "listeners_of", "pools_of", "shard_args"]

log = logging.getLogger(__name__)


class ClusterClasses(NamedTuple):
    """The class (or factory) behind each ``HYPERTABLE_STRATEGY``: the sync ones, or the asyncio twins.

    Each is called as the sync class is: ``pool(host, **options)``,
    ``resources(hosts, **options)``, ``shards([(host, key), ...], **options)``,
    ``replicas(hosts, **options)``.
    """

    pool: Callable[..., Any]
    resources: Callable[..., Any]
    shards: Callable[..., Any]
    replicas: Callable[..., Any]


#: The classes of the Flask extension.
SYNC_CLASSES = ClusterClasses(pool=Pool, resources=Resources, shards=Shards, replicas=Replicas)


def build_cluster(settings: Settings, classes: ClusterClasses = SYNC_CLASSES) -> Any:
    """Return the routing object of ``HYPERTABLE_STRATEGY`` (the table behind ``ht.cluster``).

    :param settings: checked settings; the object is built with
        :meth:`Settings.cluster_options` (the pool keys, then ``HYPERTABLE_OPTIONS``).
    :param classes: which classes to build: :data:`SYNC_CLASSES` (Flask), or the
        ``htcluster.aio`` twins (the Quart extension).
    :returns: a ``Pool`` (``pool``), ``Resources``, ``Shards`` or ``Replicas`` (or their twins).
    :raises ConfigError: the routing class refused an option value; the message
        names the options key (``HYPERTABLE_OPTIONS`` or the bind's).
    """
    options = settings.cluster_options()
    table: dict[str, Callable[[], Any]] = {
        "pool": lambda: classes.pool(settings.hosts[0], **options),
        "resources": lambda: classes.resources(settings.hosts, **options),
        "shards": lambda: classes.shards([(h, key) for key, hosts in settings.shards.items() for h in hosts],
                                         **options),
        "replicas": lambda: classes.replicas(settings.hosts, **options),
    }
    try:
        return table[settings.strategy]()
    except (ConfigError, TypeError, ValueError) as exc:
        raise ConfigError(f"{settings.label} (strategy {settings.strategy!r}, options "
                          f"{sorted(settings.options)}): {exc}") from exc


def shard_args(shards: bool, what: str, key: Optional[str]) -> tuple[str, ...]:
    """Return ``(key,)``, the leading argument of a ``Shards`` call, or ``()`` for the other strategies.

    :param shards: whether the cluster is a ``Shards`` (or its asyncio twin).
    :param what: the call, for the message.
    :param key: the shard key: required with ``shards``, refused otherwise.
    :raises TypeError: ``key`` missing with ``shards``, or given without.
    """
    if shards:
        if key is None:
            raise TypeError(f"{what}: with HYPERTABLE_STRATEGY 'shards' name the shard: "
                            "ht.namespace(name, key='...')")
        return (key,)
    if key is not None:
        raise TypeError(f"{what}: key= is for HYPERTABLE_STRATEGY 'shards' only")
    return ()


def listeners_of(cluster: Any) -> Any:
    """Return the event listener registry of a routing object (``cluster.listeners``), or ``None``.

    Every routing class has one (``Shards`` shares its ``Resources``'s).  See :mod:`htcluster.events`.
    """
    return getattr(cluster, "listeners", None)


def pools_of(cluster: Any) -> dict[str, Pool]:
    """Return ``{'host:port': Pool}`` of any routing object :func:`build_cluster` makes."""
    if isinstance(cluster, Pool):
        return {str(cluster.host): cluster}
    return dict(cluster.pools)


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


#: The strategies in the order a routing object is matched against a :class:`ClusterClasses` table.
KINDS = ("pool", "replicas", "shards", "resources")


def kind_of(cluster: Any, classes: ClusterClasses = SYNC_CLASSES, default: str = "resources") -> str:
    """Return the strategy whose class (of ``classes``) ``cluster`` is an instance of, else ``default``.

    :param cluster: a routing object :func:`build_cluster` made (or one an extension built itself).
    :param classes: the table it was built from (:data:`SYNC_CLASSES`, or the ``htcluster.aio`` twins).
    :param default: the answer when no class of the table matches (a factory, not a class).
    :returns: ``'pool'``, ``'replicas'``, ``'shards'`` or ``'resources'``.
    """
    for kind in KINDS:
        cls = getattr(classes, kind)
        if isinstance(cls, type) and isinstance(cluster, cls):
            return kind
    return default


class ClusterState:
    """One cluster of an app, whatever the framework: settings, routing object, strategy, membership.

    The part of a cluster that does no broker I/O, shared by the Flask
    extension (:class:`AppState` adds blocking calls) and the Quart one
    (``htcluster._quart.routing`` adds awaitable calls).

    :param owner: the extension that made it (any object: this module does not
        import the extensions).
    :param settings: the cluster's checked settings.
    :param cluster: what :func:`build_cluster` made of them.
    :param bind: the name in ``HYPERTABLE_BINDS``, ``None`` for the app's main cluster.
    :param classes: the table ``cluster`` was built from (for :attr:`kind`).
    """

    def __init__(self, owner: object, settings: Settings, cluster: Any, bind: Optional[str] = None,
                 classes: ClusterClasses = SYNC_CLASSES) -> None:
        self.owner = owner
        self.settings = settings
        self.cluster = cluster
        self.bind_name = bind
        #: ``'pool'``, ``'replicas'``, ``'shards'`` or ``'resources'``: what ``cluster`` is.
        self.kind = kind_of(cluster, classes, default=settings.strategy)

    # ------------------------------------------------------------ membership (htcluster._routing.members)

    def _changeable(self, what: str) -> Any:
        if self.kind == "pool":
            raise ConfigError(f"{what}: HYPERTABLE_STRATEGY 'pool' has one fixed host; use 'replicas' or "
                              "'resources' for hosts that change")
        return self.cluster

    def set_hosts(self, hosts: Any, drain: bool = True) -> None:
        """Make ``hosts`` the cluster's hosts (``set_hosts`` of the routing object; pairs for ``shards``).

        :raises ConfigError: the strategy is ``pool``, or the hosts are malformed (nothing changes).
        """
        self._changeable("set_hosts").set_hosts(hosts, drain)

    def add_host(self, host: Any, key: Optional[Hashable] = None) -> None:
        """Add ``host`` (with ``shards``: as a host of shard ``key``).

        :raises ConfigError: the strategy is ``pool``, the host is malformed.
        :raises TypeError: ``key`` missing with ``shards``, or given without.
        """
        cluster = self._changeable("add_host")
        if self.kind == "shards":
            if key is None:
                raise TypeError("add_host: with HYPERTABLE_STRATEGY 'shards' name the shard: add_host(host, key='...')")
            cluster.add(host, key)
        elif key is not None:
            raise TypeError("add_host: key= is for HYPERTABLE_STRATEGY 'shards' only")
        else:
            cluster.add(host)

    def remove_host(self, host: Any, drain: bool = True, key: Optional[Hashable] = None) -> None:
        """Remove ``host`` (with ``shards``: from shard ``key``, or from every shard when ``None``).

        :raises ConfigError: the strategy is ``pool``, the host is not one of the hosts, or it is the last one.
        :raises TypeError: ``key`` given with another strategy than ``shards``.
        """
        cluster = self._changeable("remove_host")
        if self.kind == "shards":
            cluster.remove(host, drain, key=key)
        elif key is not None:
            raise TypeError("remove_host: key= is for HYPERTABLE_STRATEGY 'shards' only")
        else:
            cluster.remove(host, drain)

    def stats(self) -> Optional[dict[str, Any]]:
        """Return ``cluster.stats()`` (``{host: {...}}``), or ``None`` when the strategy has none."""
        stats = getattr(self.cluster, "stats", None)
        if not callable(stats):
            return None
        result = stats()
        host = str(getattr(self.cluster, "host", ""))
        if self.kind == "pool" and host not in result:
            return {host: result}  # a pool's stats() is the counters of its one host
        return result

    def pools(self) -> dict[str, Any]:
        """Return ``{'host:port': pool}`` of the routing object (a pool strategy: its one pool)."""
        if self.kind == "pool":
            return {str(self.cluster.host): self.cluster}
        return dict(self.cluster.pools)

    @property
    def separate_reads(self) -> bool:
        """True when reads go to other hosts than writes (``Replicas``)."""
        return self.kind == "replicas"

    def shard(self, what: str, key: Optional[str]) -> tuple[str, ...]:
        """Return ``(key,)`` for a ``Shards`` call, ``()`` otherwise (:func:`shard_args`)."""
        return shard_args(self.kind == "shards", what, key)

    def no_shard_connection(self) -> RuntimeError:
        """Return the error of a per-request connection asked of a ``shards`` cluster."""
        return RuntimeError("with HYPERTABLE_STRATEGY 'shards' a connection depends on the shard: "
                            "use ht.namespace(key=...) or ht.cluster.connection(key)")


class AppState(ClusterState):
    """One cluster of a Flask app: :class:`ClusterState` with blocking checkouts, calls and scans."""

    def close(self) -> None:
        """Close the idle connections of the routing object (checked-out ones close at checkin)."""
        self.cluster.close()

    def connection(self, write: bool = True) -> AbstractContextManager:
        """Return the checkout (not yet entered) of a connection for writing, or reading.

        :param write: for ``Replicas``: a write host (``True``) or any read host.
        :returns: a context manager giving a :class:`~htcluster._io.resource.Resource`.
        :raises RuntimeError: with ``shards``, where a connection depends on the shard key.
        """
        if self.kind == "replicas":
            return self.cluster.connection(write=write)
        if self.kind == "shards":
            raise self.no_shard_connection()
        return self.cluster.connection()

    def route(self, method: str, args: tuple, namespace: Optional[str], key: Optional[str]) -> Any:
        """Make one call through the routing object (failover is the object's).

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
        if self.kind in ("pool", "replicas"):  # Replicas.call picks a write or a read host
            return self.cluster.call(method, *args, namespace=namespace)
        return self.cluster.unicast(*shard, method, *args, namespace=namespace)  # Resources or Shards

    def scan(self, table: str, scan_spec: Optional[ScanSpec], namespace: str,
             key: Optional[str]) -> Iterator[Cell]:
        """Return the routing object's scan generator (it owns its connection and scanner).

        :returns: a generator of :class:`~htcluster.types.Cell`; closing it
            closes the scanner and gives the connection back.
        :raises TypeError: ``key`` missing with ``shards``, or given without.
        """
        return self.cluster.scan(*self.shard("scan", key), table, scan_spec, namespace=namespace)


class BindTable:
    """The lookup of an app's clusters: itself (the main one) and ``self.binds`` (``HYPERTABLE_BINDS``).

    Mixed into what an extension keeps in ``app.extensions['hypertable']``
    (:class:`ExtensionState`; the Quart extension's twin).
    """

    binds: dict[str, Any]

    def bind(self, name: Optional[str]) -> Any:
        """Return the cluster of bind ``name`` (``None``: the main one, this object).

        :raises ConfigError: ``name`` is not in ``HYPERTABLE_BINDS``.
        """
        if name is None:
            return self
        try:
            return self.binds[name]
        except KeyError:
            known = ", ".join(repr(b) for b in self.binds) or "none"
            raise ConfigError(f"no bind {name!r} in HYPERTABLE_BINDS (configured: {known})") from None

    def every(self) -> list[Any]:
        """Return the main cluster, then every bind."""
        return [self, *self.binds.values()]


class ExtensionState(BindTable, AppState):
    """What ``app.extensions['hypertable']`` holds: the main cluster (this object) and the binds.

    :param binds: ``{bind name: AppState}`` of ``HYPERTABLE_BINDS``.
    """

    def __init__(self, owner: object, settings: Settings, cluster: Any,
                 binds: Optional[dict[str, AppState]] = None) -> None:
        super().__init__(owner, settings, cluster)
        self.binds: dict[str, AppState] = dict(binds or {})
        #: The watcher of ``HYPERTABLE_HOSTS_FILE`` (:mod:`htcluster._flask.hostsfile`), or ``None``.
        self.hosts_file: Optional[HostsFile] = None
        self.recorder: Any = None  # the query recorder when HYPERTABLE_RECORD_QUERIES is on

    def close(self) -> None:
        """Close the idle connections of every cluster, the binds' too."""
        errors = []
        for state in self.every():
            try:
                state.cluster.close()
            except Exception as exc:  # close the others anyway
                errors.append(exc)
        if errors:
            raise errors[0]


class BoundNamespace(NamespaceCalls):
    """Broker calls with one namespace filled in, each routed by the app's strategy.

    Every broker method that runs in a namespace is a typed method (generated
    from the IDL: :class:`~htcluster._routing.typed.NamespaceCalls`), so an IDE
    completes ``ht.namespace('logs').get_cells(...)`` and mypy checks it;
    :meth:`call` stays for names given at run time.

    ``ht.namespace('logs').get_row('LogDb', 'r1')`` is
    ``get_row(<id of logs>, 'LogDb', 'r1')`` on a connection the strategy
    picks (for replicas: a read host, failing over to another; a write host
    for writes).  Each call checks a connection out and back in; no app
    context is needed once the object exists.
    """

    def __init__(self, state: AppState, name: str, key: Optional[str] = None) -> None:
        super().__init__(self._routed, name)
        self._state = state
        self.key = key

    def _routed(self, method: str, *args: Any, namespace: Optional[str] = None) -> Any:
        return self._state.route(method, args, namespace, self.key)

    def call(self, method: str, *args: Any) -> Any:
        """Call broker ``method`` (:ref:`broker-methods`) with the namespace id put before ``args``.

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
        """Return a streamed JSON array of the scan (see :func:`htcluster._flask.stream.stream_cells`).

        :param by_row: one object per row (made by ``row_json``) instead of one per cell.
        :returns: a Flask ``Response`` (``application/json``, streamed).
        """
        return stream_cells(self.scan(table, scan_spec), by_row=by_row, row_json=row_json)

    def __repr__(self) -> str:
        key = f" key={self.key!r}" if self.key is not None else ""
        bind = f" bind={self._state.bind_name!r}" if self._state.bind_name is not None else ""
        return f"<BoundNamespace {self.name!r}{key}{bind} via {self._state.settings.strategy}>"
