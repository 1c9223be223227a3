"""The Quart extension: the Flask extension's settings over :mod:`htcluster.aio`, awaited in async views.

Quart is Flask's API on asyncio, so the extension reads the same
``HYPERTABLE_*`` keys with the same checks (:ref:`flask-settings`) and builds
the ``htcluster.aio`` twin of the Flask extension's routing object
(``AsyncPool``, ``AsyncResources``, ``AsyncShards`` or ``AsyncReplicas``)::

    from quart import Quart, jsonify
    from htcluster.quart_ext import Hypertable

    ht = Hypertable()

    def create_app():
        app = Quart(__name__)
        app.config["HYPERTABLE_HOSTS"] = "ht1,ht2,ht3"       # replicas
        app.config["HYPERTABLE_NAMESPACE"] = "logs"
        ht.init_app(app)

        @app.get("/rows/<row>")
        async def row(row):
            return jsonify(await ht.namespace().get_row("LogDb", row))   # routed, with failover

        @app.get("/rows")
        async def rows():
            return await ht.stream("LogDb", by_row=True)     # a JSON array from an async generator

        return app

The routing objects are built in :meth:`Hypertable.init_app`, before any
loop runs, and bind to the loop that serves the app on their first call;
they are closed after serving (``app.after_serving``).  Per request (more
exactly, per app context) ``await ht.connection()`` checks a connection out
on first use and the extension gives it back when the app context is torn
down (``teardown_appcontext``), discarded if it failed or if the request was
cancelled in the middle of a call.  ``quart hypertable status`` prints the
health and counters of every cluster, as ``flask hypertable status`` does.
Everything that is not I/O is the Flask
extension's (:mod:`htcluster._flask`); the awaitable parts are in
:mod:`htcluster._quart`.  See :doc:`/guide/aio`.
"""
from __future__ import annotations

import inspect
import logging
import weakref
from typing import Any, Optional

from quart import Quart, Response, current_app, g, has_app_context

from .errors import ConfigError
from ._flask.encoding import install_json
from ._flask.hostsfile import HostsFile, file_port
from ._flask.queries import QueryRecorder, RecordedQuery
from ._flask.config import Settings
from ._flask.setup import app_settings, build_state, record_calls, refuse_second, state_of
from ._flask.stream import RowJson, row_to_json
from ._quart.cli import hypertable_cli
from ._quart.queries import get_recorded_queries, quart_g
from ._quart.routing import AsyncAppState, AsyncBoundNamespace, AsyncExtensionState, AsyncLease, build_async_cluster
from ._quart.stream import stream_cells
from .types import ScanSpec

__all__ = ["AsyncBoundNamespace", "Hypertable", "RecordedQuery", "get_recorded_queries"]

log = logging.getLogger(__name__)

_LEASES = "_htcluster_leases"  # attribute of ``quart.g``: this app context's checkouts


def _close_now(state: AsyncExtensionState) -> None:
    """Close what ``init_app`` built when it fails: nothing has run on a loop yet, so nothing awaits."""
    for cluster in state.every():
        close = getattr(cluster.cluster, "close", None)
        try:
            result: Any = close() if close is not None else None
            if inspect.iscoroutine(result):
                result.close()  # never awaited: before first use there is nothing to release
        except Exception:  # report, close the others
            log.exception("closing %r", cluster.cluster)


class Hypertable:
    """Give a Quart app pooled, routed ``htcluster.aio`` connections to its ThriftBrokers.

    :param app: the app, or ``None`` to call :meth:`init_app` later (app factory).

    The settings are those of the Flask extension (:ref:`flask-settings`),
    checked the same way: an invalid value is a
    :class:`~htcluster.errors.ConfigError` naming the key, an unknown
    ``HYPERTABLE_*`` key or a ``HYPERTABLE_TIMEOUT_MSECS`` below 100 is a
    :class:`~htcluster.errors.ConfigWarning`, and an app that names no broker
    is refused.  One instance serves any number of apps; per-app state lives
    in ``app.extensions['hypertable']``.  Every method that talks to a broker
    is awaited; the others (settings, membership, stats) are plain calls.
    """

    def __init__(self, app: Optional[Quart] = None) -> None:
        self._states: "weakref.WeakSet[AsyncExtensionState]" = weakref.WeakSet()  # of the apps served
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Quart) -> None:
        """Read and check the app's ``HYPERTABLE_*`` settings, build its routing objects, register the hooks.

        The routing objects are built here but open no connection: they bind
        to the serving loop on their first call.  Registered: a
        ``teardown_appcontext`` that gives the request's connections back, an
        ``after_serving`` that closes the routing objects, the command group
        ``quart hypertable`` (``status``, as in Flask) and (with
        ``HYPERTABLE_HOSTS_FILE``) a ``before_request`` that re-reads the file.

        :param app: the Quart app; its state goes to ``app.extensions['hypertable']``.
        :raises ConfigError: a setting is invalid, or no broker is configured (nothing is registered then).
        :raises RuntimeError: a Hypertable extension is already registered on ``app``.
        :warns ConfigWarning: an unknown ``HYPERTABLE_*`` key (the message names the
            closest known one), a ``HYPERTABLE_TIMEOUT_MSECS`` below 100 (milliseconds).
        """
        refuse_second(app.extensions, app.name)
        settings = app_settings(app.config, hosts_required=True)
        state: AsyncExtensionState = build_state(
            lambda: AsyncExtensionState(self, settings, build_async_cluster(settings)),
            lambda name, bind: AsyncAppState(self, bind, build_async_cluster(bind), name), settings, _close_now)
        if settings.record_queries:
            try:
                record_calls(state, lambda bind: QueryRecorder(app.import_name, bind, context=quart_g))
            except BaseException:
                _close_now(state)
                raise
        if settings.json:
            install_json(app)
        app.extensions["hypertable"] = state
        self._states.add(state)
        app.teardown_appcontext(self._teardown)
        app.after_serving(state.close)
        app.cli.add_command(hypertable_cli)
        if settings.hosts_file is not None:
            state.hosts_file = HostsFile(settings.hosts_file, settings.hosts_reload, file_port(app.config),
                                         state.set_hosts)
            app.before_request(self._check_hosts_file)

    def _state(self, app: Optional[Quart] = None) -> AsyncExtensionState:
        """Return the state of ``app`` (default: the current app) that :meth:`init_app` registered.

        :raises RuntimeError: no ``app`` and no app context, or not registered on the app.
        """
        target = app if app is not None else current_app if has_app_context() else None
        state: AsyncExtensionState = state_of(self, target, "async with app.app_context():")
        return state

    @property
    def settings(self) -> Settings:
        """The current app's checked settings (``settings.binds`` holds those of the binds)."""
        return self._state().settings

    @property
    def cluster(self) -> Any:
        """The current app's routing object: ``AsyncPool``, ``AsyncResources``, ``AsyncShards`` or ``AsyncReplicas``."""
        return self._state().cluster

    def cluster_for(self, bind: Optional[str] = None) -> Any:
        """Return the routing object of ``HYPERTABLE_BINDS[bind]`` (``None``: the main one, :attr:`cluster`).

        :raises ConfigError: ``bind`` is not configured.
        :raises RuntimeError: outside an app context, or before :meth:`init_app`.
        """
        return self._state().bind(bind).cluster

    def pools(self, bind: Optional[str] = None) -> dict[str, Any]:
        """Return the pools of the main cluster (or of ``bind``), ``{'host:port': AsyncPool}``."""
        pools: dict[str, Any] = self._state().bind(bind).pools()
        return pools

    def stats(self, bind: Optional[str] = None) -> Optional[dict[str, Any]]:
        """Return ``stats()`` of the main cluster (or of ``bind``): ``{host: {...}}``, or ``None``."""
        stats: Optional[dict[str, Any]] = self._state().bind(bind).stats()
        return stats

    async def _lease(self, write: bool) -> Any:
        state = self._state()
        write = write or not state.separate_reads  # one kind of connection unless replicas
        leases: dict[bool, AsyncLease] = g.setdefault(_LEASES, {})
        if write not in leases:
            leases[write] = await AsyncLease.enter(state.connection(write))
        return leases[write].resource

    async def connection(self) -> Any:
        """Return this app context's ``AsyncResource`` (for replicas: to a write host), checked out on first use.

        It is given back when the app context is torn down.  ``await
        r.call(...)`` on it, or its typed methods, as on any ``AsyncResource``.

        :raises RuntimeError: outside an app context, or before :meth:`init_app`;
            with ``shards`` (a connection depends on the shard key).
        :raises NoHostAvailable: no host could give a connection.
        :raises PoolTimeout: no pooled connection became free in time.
        """
        return await self._lease(True)

    async def read_connection(self) -> Any:
        """Return this app context's connection to a read host (the same as :meth:`connection` but for replicas)."""
        return await self._lease(False)

    async def call(self, method: str, *args: Any, namespace: Optional[str] = None, key: Optional[str] = None,
                   bind: Optional[str] = None) -> Any:
        """Call broker ``method`` through the strategy of the main cluster or of ``bind`` (failover included).

        :param method: a broker method (:ref:`broker-methods`), e.g. ``'get_cell'``.
        :param args: its arguments after the namespace id.
        :param namespace: a namespace name whose per-connection id is put before ``args``.
        :param key: the shard key (``'shards'`` only).
        :param bind: a ``HYPERTABLE_BINDS`` name; ``None``: the main cluster.
        :returns: the broker's answer.
        :raises RuntimeError: outside an app context, or before :meth:`init_app`.
        :raises NoHostAvailable: every host the call could use failed.
        :raises ClientException: the broker refused the call.
        """
        return await self._state().bind(bind).route(method, args, namespace, key)

    def namespace(self, name: Optional[str] = None, *, key: Optional[str] = None,
                  bind: Optional[str] = None) -> AsyncBoundNamespace:
        """Return awaitable calls bound to namespace ``name``, routed by the strategy of the main cluster or ``bind``.

        :param name: the namespace; ``None`` takes ``HYPERTABLE_NAMESPACE`` (the bind's ``namespace``).
        :param key: the shard key (``'shards'`` only).
        :param bind: a ``HYPERTABLE_BINDS`` name; ``None``: the main cluster.
        :returns: an :class:`~htcluster._quart.routing.AsyncBoundNamespace`
            (``await ns.get_cell(...)``, ``await ns.call('get_cell', ...)``,
            ``async with ns.scan(table) as cells``); it keeps no connection.
        :raises ConfigError: no name given and no default namespace, or ``bind`` unknown.
        :raises RuntimeError: outside an app context, or before :meth:`init_app`.
        """
        state = self._state().bind(bind)
        name = name if name is not None else state.settings.namespace
        if name is None:
            where = "HYPERTABLE_NAMESPACE" if bind is None else f"HYPERTABLE_BINDS[{bind!r}]['namespace']"
            raise ConfigError(f"no namespace given and {where} is not set: "
                              f"call ht.namespace('name') or set {where}")
        return AsyncBoundNamespace(state, name, key)

    async def stream(self, table: str, scan_spec: Optional[ScanSpec] = None, *, namespace: Optional[str] = None,
                     by_row: bool = False, key: Optional[str] = None, bind: Optional[str] = None,
                     row_json: RowJson = row_to_json) -> Response:
        """Return a streamed JSON array of a scan of ``table``, one object per cell (or per row).

        The first object is read before this returns, so an error before the
        first byte reaches the app's error handlers; the rest comes from an
        async generator that pulls one batch at a time on the scan's own
        connection, given back (and the scanner closed) when the body ends or
        the client goes away (:func:`htcluster._quart.stream.stream_cells`).
        For replicas, a scan that loses its replica resumes on another after
        its last complete row.

        :param table: the table to scan.
        :param scan_spec: what to read; ``None`` reads everything.
        :param namespace: the namespace; ``None`` takes the default namespace.
        :param by_row: one object per row instead of one per cell.
        :param key: the shard key (``'shards'`` only).
        :param bind: a ``HYPERTABLE_BINDS`` name; ``None``: the main cluster.
        :param row_json: with ``by_row``, turns ``(row, cells)`` into the object sent.
        :returns: a Quart ``Response`` (``application/json``, streamed).
        :raises ConfigError: no namespace given and no default namespace.
        :raises NoHostAvailable: no broker answered the first batch (also ``ClientException`` ...).
        """
        ns = self.namespace(namespace, key=key, bind=bind)
        return await stream_cells(ns.scan(table, scan_spec), by_row=by_row, row_json=row_json)

    # -- membership (htcluster._routing.members): no I/O, so plain calls -----

    def set_hosts(self, hosts: Any, *, bind: Optional[str] = None, drain: bool = True) -> None:
        """Make ``hosts`` the hosts of the main cluster (or of ``bind``): ``set_hosts`` of its routing object.

        :param hosts: ``'host[:port],...'`` or a list of hosts; for ``shards``, ``(host, key)``
            pairs or ``{host: [keys]}``.  For ``replicas`` the order is the new write order.
        :param bind: a ``HYPERTABLE_BINDS`` name; ``None``: the main cluster.
        :param drain: ``True``: calls in flight on removed hosts finish; ``False``: they are cut and fail over.
        :raises ConfigError: the strategy is ``pool``, or the hosts are malformed (nothing changes).
        :raises RuntimeError: outside an app context, or before :meth:`init_app`.
        """
        self._state().bind(bind).set_hosts(hosts, drain)

    def add_host(self, host: Any, *, key: Optional[str] = None, bind: Optional[str] = None) -> None:
        """Add ``host`` to the main cluster (or ``bind``); with ``shards``, as a host of shard ``key``.

        :raises ConfigError: the strategy is ``pool``, or the host is malformed.
        :raises TypeError: ``key`` missing with ``shards``, or given without.
        """
        self._state().bind(bind).add_host(host, key)

    def remove_host(self, host: Any, *, drain: bool = True, key: Optional[str] = None,
                    bind: Optional[str] = None) -> None:
        """Remove ``host`` from the main cluster (or ``bind``); with ``shards``, from shard ``key`` (``None``: all).

        :raises ConfigError: the strategy is ``pool``, the host is not there, or it is the last one.
        """
        self._state().bind(bind).remove_host(host, drain, key)

    async def _check_hosts_file(self) -> None:
        """Before each request: re-read ``HYPERTABLE_HOSTS_FILE`` if it changed (:mod:`htcluster._flask.hostsfile`).

        A coroutine, so that Quart runs it on the loop (a plain function would
        go to a worker thread); the check is one clock read, or one ``stat``
        when due.
        """
        watcher = self._state().hosts_file
        if watcher is not None:
            watcher.poll()

    @staticmethod
    def get_recorded_queries() -> list[RecordedQuery]:
        """Return the broker calls of the current request (``HYPERTABLE_RECORD_QUERIES``), oldest first."""
        return get_recorded_queries()

    async def _teardown(self, exc: Optional[BaseException]) -> None:
        leases: dict[bool, AsyncLease] = g.pop(_LEASES, {})
        for lease in leases.values():
            await lease.release(exc)

    async def close_app(self, app: Optional[Quart] = None) -> None:
        """Close the idle pooled connections of ``app`` (its binds' too); later checkouts open new ones.

        Done by the extension after serving (``app.after_serving``).

        :param app: the app; default the current app, or, outside an app
            context, every app this extension serves.
        :raises RuntimeError: ``app`` given but this extension is not registered on it.
        """
        if app is not None or has_app_context():
            await self._state(app).close()
            return
        errors = []
        for state in list(self._states):
            try:
                await state.close()
            except Exception as exc:  # close the other apps anyway
                errors.append(exc)
        if errors:
            raise errors[0]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} serving {len(self._states)} app(s)>"

