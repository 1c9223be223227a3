"""The Flask extension: per-request broker connections from a pool, a shard map or replicas.

Use :class:`Hypertable` in new apps; :class:`FlaskHypertable` (a new
connection per request) and :class:`FlaskPooledHypertable` (one pooled host)
are drop-in replacements for the classes of the old Flask-Hypertable
extension, so an app written for it runs after changing its import line::

    from htcluster.flask_ext import Hypertable

    ht = Hypertable()

    def create_app():
        app = Flask(__name__)
        app.config["HYPERTABLE_HOSTS"] = "ht1,ht2,ht3"       # replicas
        app.config["HYPERTABLE_NAMESPACE"] = "logs"
        ht.init_app(app)

        @app.get("/rows/<row>")
        def row(row):
            cells = ht.namespace().get_row("LogDb", row)     # routed, with failover
            return {c.key.column_family: c.value.decode() for c in cells}

        @app.get("/rows")
        def rows():
            return ht.stream("LogDb", by_row=True)           # chunked JSON array

        return app

Per-app state lives in ``app.extensions['hypertable']``; the extension never
keeps an app, so one instance serves any number of apps (app factories,
tests).  ``flask hypertable status`` prints the health of the configured
hosts.  Helpers: :mod:`htcluster.flask_config` (the settings),
:mod:`htcluster.flask_routing` (strategies, checkouts, ``ht.namespace()``),
:mod:`htcluster.flask_stream` (streamed JSON).
"""
from __future__ import annotations

import threading
from typing import Any, Optional

import click
from flask import Flask, Response, current_app, g, has_app_context
from flask.cli import AppGroup

from .errors import ConfigError
from .flask_config import Settings, read_settings, set_defaults
from .flask_routing import AppState, BoundNamespace, Lease, build_cluster, pools_of
from .flask_stream import RowJson, row_to_json
from .pool import Pool
from .resource import Resource
from .status import check_hosts, down_message, format_status
from .types import ScanSpec

__all__ = ["EXTENSION_KEY", "BoundNamespace", "FlaskHypertable", "FlaskPooledHypertable", "Hypertable"]

#: Where the per-app state is kept: ``app.extensions[EXTENSION_KEY]``.
EXTENSION_KEY = "hypertable"
_LEASES = "_htcluster_leases"  # attribute of ``flask.g``: this app context's checkouts

# ------------------------------------------------------------------ extension


class Hypertable:
    """Give a Flask app pooled, routed connections to its ThriftBrokers.

    :param app: the app, or ``None`` to call :meth:`init_app` later (app factory).

    Configuration, read and checked once by :meth:`init_app` (defaults set with
    ``setdefault``; an invalid value raises :class:`~htcluster.errors.ConfigError`
    naming the key and the allowed values):

    ``HYPERTABLE_HOSTS``
        the brokers: a list of ``'host[:port]'`` or one comma-separated string
        (default ``None``: use ``HYPERTABLE_HOST`` and ``HYPERTABLE_PORT``).
    ``HYPERTABLE_HOST``, ``HYPERTABLE_PORT``
        Flask-Hypertable's single host, used when ``HYPERTABLE_HOSTS`` is unset
        (``'localhost'``, 15867).  ``HYPERTABLE_PORT`` is also the port of
        ``HYPERTABLE_HOSTS`` entries that name none.  15867 is the broker's
        port since Hypertable 0.9.8.0; older brokers (and Flask-Hypertable's
        default) used 38080 (protocol.md section 7).
    ``HYPERTABLE_STRATEGY``
        ``'pool'`` (one host), ``'resources'`` (any host, chosen by idle
        connections), ``'shards'`` (``HYPERTABLE_SHARDS``) or ``'replicas'``
        (brokers in front of the same data: writes to the first healthy host,
        reads balanced, failover).  Default ``None``: ``'shards'`` when
        ``HYPERTABLE_SHARDS`` is set, else ``'pool'`` for one host and
        ``'replicas'`` for several.
    ``HYPERTABLE_SHARDS``
        ``{shard key: hosts}`` (each a list or comma-separated string) for
        ``'shards'``; then ``HYPERTABLE_HOSTS`` stays unset (default ``None``).
    ``HYPERTABLE_POOL_SIZE``
        idle connections kept per host, an integer >= 0 (5).
    ``HYPERTABLE_MAX_OVERFLOW``
        connections per host beyond the pool size under load, >= 0 (10).
    ``HYPERTABLE_TIMEOUT_MSECS``
        socket timeout in **milliseconds**, kept in ms for compatibility and
        converted to seconds here (5000).
    ``HYPERTABLE_POOL_TIMEOUT``
        seconds a request waits for a free connection before ``PoolTimeout`` (10.0).
    ``HYPERTABLE_NAMESPACE``
        namespace of ``ht.namespace()`` without a name (``None``).

    Per request (more exactly, per app context): :attr:`connection` is a
    :class:`~htcluster.resource.Resource` checked out on first use and given
    back at teardown, or discarded when it failed in transport; calls through
    :meth:`namespace` are routed one by one (with failover for replicas);
    :attr:`cluster` is the routing object itself (``broadcast``, ``scan``, ...).
    """

    def __init__(self, app: Optional[Flask] = None) -> None:
        self._local = threading.local()  # stacks of ``with ht as client`` checkouts
        self._loose: dict[int, Lease] = {}  # connect() checkouts awaiting put_back()
        self._lock = threading.Lock()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Read and check the app's ``HYPERTABLE_*`` settings, build its routing object, register teardown.

        :param app: the Flask app; its state goes to ``app.extensions['hypertable']``.
        :raises ConfigError: a setting is invalid (nothing is registered then).
        :raises RuntimeError: a Hypertable extension is already registered on ``app``.
        """
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(f"a Hypertable extension is already registered on app {app.name!r}; "
                               "call init_app once per app")
        set_defaults(app.config)
        settings = read_settings(app.config)
        app.extensions[EXTENSION_KEY] = AppState(self, settings, self._make_cluster(settings))
        app.teardown_appcontext(self._teardown)
        app.cli.add_command(hypertable_cli)

    def _make_cluster(self, settings: Settings) -> Any:
        return build_cluster(settings)

    def _state(self, app: Optional[Flask] = None) -> AppState:
        """Return the state of ``app`` (default: the current app) that :meth:`init_app` registered.

        :raises RuntimeError: no ``app`` and no app context, or not registered on the app.
        """
        if app is None and not has_app_context():
            raise RuntimeError("Hypertable used outside of an application context: use it in a request, "
                               "a CLI command, or inside 'with app.app_context():'")
        target: Flask = app if app is not None else current_app  # type: ignore[assignment]
        state = target.extensions.get(EXTENSION_KEY)
        if state is None or state.owner is not self:
            raise RuntimeError(f"this Hypertable extension is not registered on app {target.name!r}: "
                               "call ht.init_app(app) first")
        return state

    @property
    def settings(self) -> Settings:
        """The current app's checked settings."""
        return self._state().settings

    @property
    def cluster(self) -> Any:
        """The current app's routing object: a ``Pool``, ``Resources``, ``Shards`` or ``Replicas``."""
        return self._state().cluster

    def pools(self) -> dict[str, Pool]:
        """Return the current app's pools, ``{'host:port': Pool}``."""
        return pools_of(self.cluster)

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

    def call(self, method: str, *args: Any, namespace: Optional[str] = None, key: Optional[str] = None) -> Any:
        """Call broker ``method`` through the current app's strategy (failover included).

        The call shape of every routing layer, so ``ht.call`` fits where one is
        expected (e.g. :func:`htcluster.logload.ensure_logdb`).

        :param method: a broker method (protocol.md section 2), e.g. ``'get_cell'``.
        :param args: its arguments after the namespace id.
        :param namespace: a namespace name whose per-connection id is put before ``args``.
        :param key: the shard key (``'shards'`` only).
        :returns: the broker's answer.
        :raises RuntimeError: outside an app context, or before :meth:`init_app`.
        :raises NoHostAvailable: every host the call could use failed.
        :raises ClientException: the broker refused the call.
        """
        return self._state().route(method, args, namespace, key)

    def namespace(self, name: Optional[str] = None, *, key: Optional[str] = None) -> BoundNamespace:
        """Return calls bound to namespace ``name``, routed by the app's strategy.

        :param name: the namespace; ``None`` takes ``HYPERTABLE_NAMESPACE``.
        :param key: the shard key (``'shards'`` only).
        :returns: a :class:`~htcluster.flask_routing.BoundNamespace`; it keeps no
            connection, so it may be kept for the life of the app.
        :raises ConfigError: no name given and ``HYPERTABLE_NAMESPACE`` is unset.
        :raises RuntimeError: outside an app context, or before :meth:`init_app`.
        """
        state = self._state()
        name = name if name is not None else state.settings.namespace
        if name is None:
            raise ConfigError("no namespace given and HYPERTABLE_NAMESPACE is not set: "
                              "call ht.namespace('name') or set HYPERTABLE_NAMESPACE")
        return BoundNamespace(state, name, key)

    def stream(self, table: str, scan_spec: Optional[ScanSpec] = None, *, namespace: Optional[str] = None,
               by_row: bool = False, key: Optional[str] = None,
               row_json: RowJson = row_to_json) -> Response:
        """Return a streamed JSON array of a scan of ``table``, one object per cell (or per row).

        The scan pulls one batch at a time on its own connection, which is
        given back (and the scanner closed) when the body ends or the client
        goes away.  See :func:`htcluster.flask_stream.stream_cells`.

        :param table: the table to scan.
        :param scan_spec: what to read; ``None`` reads everything.
        :param namespace: the namespace; ``None`` takes ``HYPERTABLE_NAMESPACE``.
        :param by_row: one object per row instead of one per cell.
        :param key: the shard key (``'shards'`` only).
        :param row_json: with ``by_row``, turns ``(row, cells)`` into the object sent.
        :returns: a Flask ``Response`` (``application/json``, streamed).
        :raises ConfigError: no namespace given and ``HYPERTABLE_NAMESPACE`` is unset.
        """
        return self.namespace(namespace, key=key).stream(table, scan_spec, by_row=by_row, row_json=row_json)

    def _teardown(self, exc: Optional[BaseException]) -> None:
        leases: dict[bool, Lease] = g.pop(_LEASES, {})
        for lease in leases.values():
            lease.release()

    # Flask-Hypertable's names, kept for its users.
    teardown = _teardown

    def connect(self) -> Resource:
        """Check out a connection outside the per-context one; it stays out until :meth:`put_back`.

        :returns: a :class:`~htcluster.resource.Resource` (for replicas: to a write host).
        :raises RuntimeError: outside an app context, or before :meth:`init_app`.
        :raises NoHostAvailable: no host could give a connection.
        :raises PoolTimeout: no pooled connection became free in time.
        """
        lease = Lease(self._state().connection(True))
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
        stack.append(Lease(self._state().connection(True)))
        return stack[-1].resource

    def __exit__(self, exc_type: Any, exc: Optional[BaseException], tb: Any) -> None:
        self._local.leases.pop().release()

    def close_app(self, app: Optional[Flask] = None) -> None:
        """Close the idle pooled connections of ``app``; later checkouts open new ones.

        Connections checked out at the time are closed when they come back.

        :param app: the app; default the current app (then an app context is needed).
        :raises RuntimeError: no ``app`` outside an app context, or not registered on it.
        """
        self._state(app).cluster.close()


class FlaskPooledHypertable(Hypertable):
    """Flask-Hypertable's pooled extension: the drop-in name of :class:`Hypertable`.

    With its configuration (``HYPERTABLE_HOST``, ``HYPERTABLE_PORT``,
    ``HYPERTABLE_POOL_SIZE``, ``HYPERTABLE_MAX_OVERFLOW``,
    ``HYPERTABLE_TIMEOUT_MSECS``) it keeps one pool to one host, and
    ``ht.connection``, ``with ht as client:``, ``connect()``,
    ``put_back(client)``, ``close_app()``, ``teardown``, ``client.mns['ns']``,
    ``client.mns.close_namespace('ns')`` and ``client.close()`` behave as they
    did.  What differs from Flask-Hypertable 0.3, name by name:

    * the default ``HYPERTABLE_PORT`` is 15867, not 38080 (set 38080 for
      brokers older than Hypertable 0.9.8, protocol.md section 7);
    * outside an app context ``ht.connection``, ``with ht`` and ``connect()``
      raise ``RuntimeError`` instead of returning ``None`` or using the last
      app; ``close_app(app)`` takes the app there, and is not registered
      with ``atexit`` (sockets close with the process);
    * a request waits at most ``HYPERTABLE_POOL_TIMEOUT`` seconds for a
      connection (``PoolTimeout``), never forever; overflow is counted under
      a lock, per app;
    * a connection is discarded when it failed in transport, not whenever the
      request ended with a ``TTransportException``; transport errors are
      :class:`~htcluster.errors.BrokerUnavailable`, a ``TTransportException``;
    * invalid settings raise ``ConfigError`` (a ``ValueError``, as before) at
      ``init_app``, also for the host, the port and the timeout;
    * ``__init__``'s ``local`` and ``init_app``'s ``local`` and ``qClass``
      arguments are gone; so are the attributes ``app``, ``host``, ``port``,
      ``timeout_msecs``, ``pool_size``, ``pool_overflow``, ``overflow_count``
      and ``data``: the values are per app, in :attr:`settings` and
      ``ht.cluster.stats()``;
    * ``put_back(client)`` takes only what ``connect()`` gave (``ValueError``);
    * the client is a :class:`~htcluster.resource.Resource`, not a
      ``ManagedThriftClient`` (``is_active``, ``mns.open_namespace`` and
      ``mns.close()`` are kept as aliases): ``open()`` takes no timeout
      (``timeout`` is in seconds), ``timeout_ms`` and ``transport`` are gone;
      in ``client.mns`` the ``namespaces`` dict is the mapping itself
      (``name in mns``, ``list(mns)``), ``close_namespace`` returns ``None``
      and forgets the closed id, and ``del mns[name]`` raises ``KeyError`` for
      a name that is not open.
    """


class FlaskHypertable(Hypertable):
    """Flask-Hypertable's basic extension: a new connection per app context, closed at teardown.

    Same configuration and differences as :class:`FlaskPooledHypertable`,
    except that no connection outlives its request: each checkout opens one
    and each return closes it (at most ``HYPERTABLE_POOL_SIZE +
    HYPERTABLE_MAX_OVERFLOW`` at once).  It connects to one host.
    :meth:`connect` returns a connection of the caller's own, closed by
    ``client.close()`` as in Flask-Hypertable (or by :meth:`put_back`).
    """

    def _make_cluster(self, settings: Settings) -> Any:
        if len(settings.hosts) != 1:
            raise ConfigError(f"FlaskHypertable connects to one host, {len(settings.hosts)} are configured: "
                              "use Hypertable (or FlaskPooledHypertable) for several")
        options = settings.pool_options()
        options.update(size=0, max_overflow=settings.pool_size + settings.max_overflow)
        return Pool(settings.hosts[0], **options)

    def connect(self) -> Resource:
        """Open a new connection to the app's host; the caller closes it.

        :returns: an open :class:`~htcluster.resource.Resource` with the app's socket timeout.
        :raises RuntimeError: outside an app context, or before :meth:`init_app`.
        :raises BrokerUnavailable: the broker cannot be reached.
        """
        settings = self._state().settings
        return Resource(settings.hosts[0], timeout=settings.socket_timeout)

    def put_back(self, client: Resource) -> None:
        """Close ``client`` (and the namespaces it opened through ``mns``)."""
        client.close()


# ----------------------------------------------------------------------- CLI

hypertable_cli = AppGroup("hypertable", help="The Hypertable brokers of this app.")


@hypertable_cli.command("status")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Seconds each host gets to answer (default: HYPERTABLE_TIMEOUT_MSECS).")
def status_command(timeout: Optional[float]) -> None:
    """Ping every configured broker in parallel and print a health table; exit 1 if any is down."""
    state = current_app.extensions.get(EXTENSION_KEY)
    if state is None:
        raise click.ClickException("the app has no Hypertable extension: call ht.init_app(app)")
    settings: Settings = state.settings
    statuses = check_hosts(settings.hosts, timeout=timeout or settings.socket_timeout)
    click.echo(format_status(statuses))
    problem = down_message(statuses)
    if problem:
        raise click.ClickException(problem)
