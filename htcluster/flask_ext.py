"""The Flask extension: per-request broker connections from a pool, a shard map or replicas.

Use :class:`Hypertable` in new apps; :class:`FlaskHypertable` (a new
connection per request) and :class:`FlaskPooledHypertable` (one pooled host)
are drop-in replacements for the classes of Flask-Hypertable 0.3.0, so an app
written for it runs after changing its import line::

    from htcluster.flask_ext import Hypertable

    ht = Hypertable()

    def create_app():
        app = Flask(__name__)
        app.config["HYPERTABLE_HOSTS"] = "ht1,ht2,ht3"       # replicas
        app.config["HYPERTABLE_NAMESPACE"] = "logs"
        app.config["HYPERTABLE_OPTIONS"] = {"idle_ping": 30.0}
        app.config["HYPERTABLE_BINDS"] = {"analytics": {"hosts": "ht7,ht8", "namespace": "stats"}}
        ht.init_app(app)

        @app.get("/rows/<row>")
        def row(row):
            return jsonify(ht.namespace().get_row("LogDb", row))   # routed, with failover

        @app.get("/rows")
        def rows():
            return ht.stream("LogDb", by_row=True)           # chunked JSON array

        @app.get("/hits")
        def hits():
            return jsonify(ht.namespace(bind="analytics").hql_query("SELECT * FROM hits"))

        return app

Per-app state lives in ``app.extensions['hypertable']``; the extension never
keeps an app, so one instance serves any number of apps (app factories,
tests).  The keys are listed in :mod:`htcluster._flask.config`, which
checks them, and explained in the Flask guide (:doc:`/guide/flask`).  ``flask hypertable status`` prints the
health and counters of every bind.  The helpers are in :mod:`htcluster._flask`.
"""
from __future__ import annotations

import atexit
import logging
import threading
import weakref
from typing import Any, Optional

from flask import Flask, Response, current_app, g, has_app_context

from .errors import ConfigError
from ._flask.cli import hypertable_cli
from ._flask.commands import EXTENSION_KEY
from ._flask.config import Settings
from ._flask.encoding import install_json
from ._flask.hostsfile import HostsFile, file_port
from ._flask.queries import QueryRecorder, RecordedQuery, get_recorded_queries
from ._flask.routing import (
    AppState,
    BoundNamespace,
    ExtensionState,
    Lease,
    build_cluster,
)
from ._flask.setup import app_settings, build_state, record_calls, refuse_second, state_of
from ._flask.stream import RowJson, row_to_json
from ._call.attempt import Pool
from ._io.resource import Resource
from .types import ScanSpec

__all__ = ["EXTENSION_KEY", "BoundNamespace", "FlaskHypertable", "FlaskPooledHypertable", "Hypertable",
           "RecordedQuery", "get_recorded_queries"]

log = logging.getLogger(__name__)

_LEASES = "_htcluster_leases"  # attribute of ``flask.g``: this app context's checkouts
_EXTENSIONS: "weakref.WeakSet[Hypertable]" = weakref.WeakSet()


@atexit.register
def _close_at_exit() -> None:
    """Close the idle connections of every extension's apps when the interpreter exits (as upstream)."""
    for ext in list(_EXTENSIONS):
        try:
            ext.close_app()
        except Exception:  # at exit: report, close the others
            log.exception("closing the Hypertable connections of %r at exit", ext)


class Hypertable:
    """Give a Flask app pooled, routed connections to its ThriftBrokers.

    :param app: the app, or ``None`` to call :meth:`init_app` later (app factory).

    :meth:`init_app` reads and checks the ``HYPERTABLE_*`` keys (:doc:`/guide/flask`;
    defaults set with ``setdefault``; an invalid value raises
    :class:`~htcluster.errors.ConfigError` naming the key; an app that names no
    broker is refused, see :attr:`hosts_required`).  Per request (more
    exactly, per app context): :attr:`connection` is a
    :class:`~htcluster._io.resource.Resource` checked out on first use and given
    back at teardown, or discarded when it failed in transport; calls through
    :meth:`namespace` are routed one by one (with failover for replicas);
    :attr:`cluster` is the routing object itself (``broadcast``, ``scan``, ...),
    :meth:`cluster_for` that of a bind.
    """

    #: Whether ``with ht`` and :meth:`connect` work outside an
    #: app context (taking the one app the extension serves), as in Flask-Hypertable.
    outside_app_context = False
    #: Whether :meth:`init_app` refuses an app that configures no broker (``HYPERTABLE_HOSTS``,
    #: ``HYPERTABLE_SHARDS``, ``HYPERTABLE_HOST`` or ``HYPERTABLE_PORT``) instead of assuming
    #: ``localhost:15867``; the Flask-Hypertable drop-in classes keep its default.
    hosts_required = True

    def __init__(self, app: Optional[Flask] = None) -> None:
        self._local = threading.local()  # stacks of ``with ht as client`` checkouts
        self._loose: dict[int, Lease] = {}  # connect() checkouts awaiting put_back()
        self._lock = threading.Lock()
        self._states: "weakref.WeakSet[ExtensionState]" = weakref.WeakSet()  # of the apps served
        _EXTENSIONS.add(self)
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Read and check the app's ``HYPERTABLE_*`` settings, build its routing objects, register teardown.

        :param app: the Flask app; its state goes to ``app.extensions['hypertable']``.
        :raises ConfigError: a setting is invalid, or (:attr:`hosts_required`) no
            broker is configured (nothing is registered then).
        :raises RuntimeError: a Hypertable extension is already registered on ``app``.
        :warns ConfigWarning: an unknown ``HYPERTABLE_*`` key (the message names the
            closest known one), a ``HYPERTABLE_TIMEOUT_MSECS`` below 100 (milliseconds).
        """
        refuse_second(app.extensions, app.name)
        settings = app_settings(app.config, hosts_required=self.hosts_required)
        state: ExtensionState = build_state(
            lambda: ExtensionState(self, settings, self._make_cluster(settings)),
            lambda name, bind: AppState(self, bind, build_cluster(bind), name), settings, ExtensionState.close)
        if settings.record_queries:
            try:
                record_calls(state, lambda bind: QueryRecorder(app.import_name, bind))
            except BaseException:
                state.close()
                raise
        if settings.json:
            install_json(app)
        app.extensions[EXTENSION_KEY] = state
        self._states.add(state)
        app.teardown_appcontext(self._teardown)
        if settings.hosts_file is not None:
            state.hosts_file = HostsFile(settings.hosts_file, settings.hosts_reload, file_port(app.config),
                                         state.set_hosts)
            app.before_request(self._check_hosts_file)
        app.cli.add_command(hypertable_cli)

    def _make_cluster(self, settings: Settings) -> Any:
        return build_cluster(settings)

    def _state(self, app: Optional[Flask] = None) -> ExtensionState:
        """Return the state of ``app`` (default: the current app) that :meth:`init_app` registered.

        :raises RuntimeError: no ``app`` and no app context, or not registered on the app.
        """
        target = app if app is not None else current_app if has_app_context() else None
        state: ExtensionState = state_of(self, target)
        return state

    def _loose_state(self) -> ExtensionState:
        """Return the current app's state; outside an app context, that of the one app served.

        Only for the Flask-Hypertable classes (:attr:`outside_app_context`).

        :raises RuntimeError: outside an app context when the extension serves no app or several.
        """
        if has_app_context() or not self.outside_app_context:
            return self._state()
        states = list(self._states)
        if len(states) != 1:
            raise RuntimeError(f"outside an application context this extension needs exactly one app, it "
                               f"serves {len(states)}: use it inside 'with app.app_context():'")
        return states[0]

    @property
    def settings(self) -> Settings:
        """The current app's checked settings (``settings.binds`` holds those of the binds)."""
        return self._state().settings

    @property
    def cluster(self) -> Any:
        """The current app's routing object: a ``Pool``, ``Resources``, ``Shards`` or ``Replicas``."""
        return self._state().cluster

    def cluster_for(self, bind: Optional[str] = None) -> Any:
        """Return the routing object of ``HYPERTABLE_BINDS[bind]`` (``None``: the main one, :attr:`cluster`).

        :raises ConfigError: ``bind`` is not configured.
        :raises RuntimeError: outside an app context, or before :meth:`init_app`.
        """
        return self._state().bind(bind).cluster

    def pools(self, bind: Optional[str] = None) -> dict[str, Pool]:
        """Return the pools of the main cluster (or of ``bind``), ``{'host:port': Pool}``."""
        pools: dict[str, Pool] = self._state().bind(bind).pools()
        return pools

    def _lease(self, write: bool) -> Resource:
        state = self._state()
        write = write or not state.separate_reads  # one kind of connection unless replicas
        leases: dict[bool, Lease] = g.setdefault(_LEASES, {})
        if write not in leases:
            leases[write] = Lease(state.connection(write))
        return leases[write].resource

    @property
    def connection(self) -> Resource:
        """This app context's connection (for replicas: to a write host), checked out on first use.

        :raises RuntimeError: outside an app context, or before :meth:`init_app`.
        :raises NoHostAvailable: no host could give a connection.
        :raises PoolTimeout: no pooled connection became free in time.
        """
        return self._lease(True)

    @property
    def read_connection(self) -> Resource:
        """This app context's connection to a read host (the same as :attr:`connection` but for replicas)."""
        return self._lease(False)

    def call(self, method: str, *args: Any, namespace: Optional[str] = None, key: Optional[str] = None,
             bind: Optional[str] = None) -> Any:
        """Call broker ``method`` through the strategy of the main cluster or of ``bind`` (failover included).

        The call shape of every routing layer, so ``ht.call`` fits where one is
        expected (e.g. :func:`htcluster.cli.logload.ensure_logdb`).

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
        return self._state().bind(bind).route(method, args, namespace, key)

    def namespace(self, name: Optional[str] = None, *, key: Optional[str] = None,
                  bind: Optional[str] = None) -> BoundNamespace:
        """Return calls bound to namespace ``name``, routed by the strategy of the main cluster or of ``bind``.

        :param name: the namespace; ``None`` takes ``HYPERTABLE_NAMESPACE`` (the bind's ``namespace``).
        :param key: the shard key (``'shards'`` only).
        :param bind: a ``HYPERTABLE_BINDS`` name; ``None``: the main cluster.
        :returns: a :class:`~htcluster._flask.routing.BoundNamespace`; it keeps no
            connection, so it may be kept for the life of the app.
        :raises ConfigError: no name given and no default namespace, or ``bind`` unknown.
        :raises RuntimeError: outside an app context, or before :meth:`init_app`.
        """
        state = self._state().bind(bind)
        name = name if name is not None else state.settings.namespace
        if name is None:
            where = "HYPERTABLE_NAMESPACE" if bind is None else f"HYPERTABLE_BINDS[{bind!r}]['namespace']"
            raise ConfigError(f"no namespace given and {where} is not set: "
                              f"call ht.namespace('name') or set {where}")
        return BoundNamespace(state, name, key)

    def stream(self, table: str, scan_spec: Optional[ScanSpec] = None, *, namespace: Optional[str] = None,
               by_row: bool = False, key: Optional[str] = None, bind: Optional[str] = None,
               row_json: RowJson = row_to_json) -> Response:
        """Return a streamed JSON array of a scan of ``table``, one object per cell (or per row).

        The first object is read before this returns, so an error before the
        first byte reaches the app's error handlers; the scan then pulls one
        batch at a time on its own connection, given back (and the scanner
        closed) when the body ends or the client goes away.  See
        :func:`htcluster._flask.stream.stream_cells`.

        :param table: the table to scan.
        :param scan_spec: what to read; ``None`` reads everything.
        :param namespace: the namespace; ``None`` takes the default namespace.
        :param by_row: one object per row instead of one per cell.
        :param key: the shard key (``'shards'`` only).
        :param bind: a ``HYPERTABLE_BINDS`` name; ``None``: the main cluster.
        :param row_json: with ``by_row``, turns ``(row, cells)`` into the object sent.
        :returns: a Flask ``Response`` (``application/json``, streamed).
        :raises ConfigError: no namespace given and no default namespace.
        :raises NoHostAvailable: no broker answered the first batch (also ``ClientException`` ...).
        """
        return self.namespace(namespace, key=key, bind=bind).stream(table, scan_spec, by_row=by_row,
                                                                    row_json=row_json)

    # -- membership (htcluster._routing.members) ------------------------------

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

    def _check_hosts_file(self) -> None:
        """Before each request: re-read ``HYPERTABLE_HOSTS_FILE`` if it changed (checked at most every
        ``HYPERTABLE_HOSTS_RELOAD`` seconds; :mod:`htcluster._flask.hostsfile`)."""
        watcher = self._state().hosts_file
        if watcher is not None:
            watcher.poll()

    @staticmethod
    def get_recorded_queries() -> list[RecordedQuery]:
        """Return the broker calls of the current request (``HYPERTABLE_RECORD_QUERIES``), oldest first."""
        return get_recorded_queries()

    def _teardown(self, exc: Optional[BaseException]) -> None:
        leases: dict[bool, Lease] = g.pop(_LEASES, {})
        for lease in leases.values():
            lease.release()

    # Flask-Hypertable's names, kept for its users.
    teardown = _teardown

    def connect(self) -> Resource:
        """Check out a connection outside the per-context one; it stays out until :meth:`put_back`.

        :returns: a :class:`~htcluster._io.resource.Resource` (for replicas: to a write host).
        :raises RuntimeError: outside an app context (but see :attr:`outside_app_context`),
            or before :meth:`init_app`.
        :raises NoHostAvailable: no host could give a connection.
        :raises PoolTimeout: no pooled connection became free in time.
        """
        lease = Lease(self._loose_state().connection(True))
        with self._lock:
            self._loose[id(lease.resource)] = lease
        return lease.resource

    def put_back(self, client: Resource) -> None:
        """Give back a connection from :meth:`connect` (discarded if it failed or was closed).

        A client from :meth:`connect` keeps its pool slot until it is put back,
        also after ``client.close()``.

        :param client: what :meth:`connect` returned.
        :raises ValueError: ``client`` did not come from :meth:`connect` of this extension.
        """
        with self._lock:
            lease = self._loose.pop(id(client), None)
        if lease is None:
            raise ValueError(f"{client!r} was not checked out with connect() of this extension")
        lease.release()

    def __enter__(self) -> Resource:
        """``with ht as client:`` checks a connection out (as :meth:`connect`) and back in at the end."""
        stack = self._local.__dict__.setdefault("leases", [])
        stack.append(Lease(self._loose_state().connection(True)))
        resource: Resource = stack[-1].resource
        return resource

    def __exit__(self, exc_type: Any, exc: Optional[BaseException], tb: Any) -> None:
        self._local.leases.pop().release()

    def close_app(self, app: Optional[Flask] = None) -> None:
        """Close the idle pooled connections of ``app`` (its binds' too); later checkouts open new ones.

        Connections checked out at the time are closed when they come back.
        Registered with :mod:`atexit` for every extension, as Flask-Hypertable did.

        :param app: the app; default the current app, or, outside an app
            context, every app this extension serves.
        :raises RuntimeError: ``app`` given but this extension is not registered on it.
        """
        if app is not None or has_app_context():
            self._state(app).close()
            return
        errors = []
        for state in list(self._states):
            try:
                state.close()
            except Exception as exc:  # close the other apps anyway
                errors.append(exc)
        if errors:
            raise errors[0]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} serving {len(self._states)} app(s)>"



class FlaskPooledHypertable(Hypertable):
    """Flask-Hypertable's pooled extension: :class:`Hypertable` under its old name.

    With its configuration (``HYPERTABLE_HOST``, ``HYPERTABLE_PORT``,
    ``HYPERTABLE_POOL_SIZE``, ``HYPERTABLE_MAX_OVERFLOW``,
    ``HYPERTABLE_TIMEOUT_MSECS``) it keeps one pool to one host, and
    ``ht.connection``, ``with ht as client:`` (also outside an app context),
    ``connect()``, ``put_back(client)``, ``close_app()`` (also outside an app
    context, and at exit), ``teardown``, ``client.mns['ns']``,
    ``client.mns.close_namespace('ns')`` and ``client.close()`` behave as they
    did.  What differs, and which of its bugs stay fixed, is listed in
    the migration guide (:doc:`/migration`, "From Flask-Hypertable 0.3.0").  With no host
    configured it connects to Flask-Hypertable's default, ``localhost:15867``.
    """

    outside_app_context = True
    hosts_required = False


class FlaskHypertable(Hypertable):
    """Flask-Hypertable's basic extension: a new connection per app context, closed at teardown.

    Same configuration and differences as :class:`FlaskPooledHypertable`,
    except that no connection outlives its request: each checkout opens one
    and each return closes it (at most ``HYPERTABLE_POOL_SIZE +
    HYPERTABLE_MAX_OVERFLOW`` at once).  It connects to one host.
    :meth:`connect` returns a connection of the caller's own, closed by
    ``client.close()`` as in Flask-Hypertable (or by :meth:`put_back`).
    """

    outside_app_context = True
    hosts_required = False

    def _make_cluster(self, settings: Settings) -> Any:
        if len(settings.hosts) != 1:
            raise ConfigError(f"FlaskHypertable connects to one host, {len(settings.hosts)} are configured: "
                              "use Hypertable (or FlaskPooledHypertable) for several")
        options = settings.cluster_options()
        options.update(size=0, max_overflow=settings.pool_size + settings.max_overflow)
        return Pool(settings.hosts[0], **options)

    def connect(self) -> Resource:
        """Open a new connection to the app's host; the caller closes it.

        :returns: an open :class:`~htcluster._io.resource.Resource` with the app's socket timeout.
        :raises RuntimeError: outside an app context when the extension serves no app or several.
        :raises BrokerUnavailable: the broker cannot be reached.
        """
        settings = self._loose_state().settings
        return Resource(settings.hosts[0], socket_timeout=settings.socket_timeout)

    def put_back(self, client: Resource) -> None:
        """Close ``client`` (and the namespaces it opened through ``mns``)."""
        client.close()
