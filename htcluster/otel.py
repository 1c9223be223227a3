"""OpenTelemetry traces and metrics for htcluster, built on :mod:`htcluster.events`.

Install the extra (``pip install htcluster[otel]``), then::

    import htcluster, htcluster.otel

    replicas = htcluster.Replicas(["ht1", "ht2"])
    instrumentation = htcluster.otel.instrument(replicas)   # or instrument() for every client
    replicas.call("status")          # one CLIENT span, one db.client.operation.duration point
    instrumentation.uninstrument()

What is recorded follows the OpenTelemetry database client semantic
conventions (``docs/db/database-spans.md`` and ``database-metrics.md`` of
open-telemetry/semantic-conventions):

* a ``CLIENT`` span per broker call attempt, named by ``db.query.summary``
  for HQL naming a table (``SELECT hits``), else ``{db.operation.name}
  {target}`` where the target is the table when the method names one, else
  the namespace, else ``server.address:server.port``;
* attributes ``db.system.name`` = ``hypertable``, ``db.operation.name`` (the
  broker method, or the HQL verb such as ``SELECT`` for the ``hql_*``
  methods), ``db.namespace``, ``db.collection.name``, ``server.address``,
  ``server.port``, and on failure ``error.type`` (the broker's error code for a
  ``ClientException``, which also goes in ``db.response.status_code``; else
  the exception's qualified class name) with the span status set to ERROR;
* ``db.query.text`` only with ``record_query_text=True``: HQL carries its
  literal values inline and htcluster does not sanitize it, so the
  conventions advise against collecting it by default;
* metrics ``db.client.operation.duration`` (histogram, seconds, the
  conventions' bucket boundaries), ``db.client.connection.count`` (by
  ``db.client.connection.state`` ``idle``/``used``),
  ``db.client.connection.pending_requests``, ``db.client.connection.timeouts``
  and ``db.client.connection.wait_time``; the pool name
  (``db.client.connection.pool.name``) is the pool's ``host:port``.

Failover, host down/up, hedge and budget events become span events
(``htcluster.failed_over``, ...) on the caller's current span, if it records.

A span covers one attempt on one host, not the whole logical call: a retry or
a failover to another replica shows up as one more span (a departure from the
conventions' advice, since the events describe attempts).
"""
from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, Callable, Optional

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import SpanKind, Status, StatusCode

from . import events
from ._thrift import ClientService, HqlService
from ._thrift.ttypes import ClientException
from .errors import ConfigError
from .events import Event, Listeners

__all__ = ["DB_SYSTEM", "DURATION_BUCKETS", "Instrumentation", "error_type", "instrument", "operation_name",
           "query_summary"]

#: The ``db.system.name`` of every span and metric point.
DB_SYSTEM = "hypertable"
#: Histogram bucket boundaries (seconds) the conventions give for ``db.client.operation.duration``.
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)

_SCOPE = "htcluster"
#: The conventions release in which the database conventions became stable.
_SCHEMA_URL = "https://opentelemetry.io/schemas/1.33.0"
_HQL_METHODS = frozenset({"hql_query", "hql_exec", "hql_query_as_arrays", "hql_exec_as_arrays",
                          "hql_query2", "hql_exec2"})
#: First words of the HQL statements (:ref:`hql`); anything else keeps the method name.
_HQL_VERBS = frozenset({"ALTER", "COMPACT", "CREATE", "DELETE", "DESCRIBE", "DROP", "DUMP", "EXISTS",
                        "GET", "INSERT", "LOAD", "RENAME", "SELECT", "SHOW", "USE"})


def _table_methods() -> frozenset[str]:
    """The methods whose first argument after the namespace id is a table name,
    read from the generated Thrift argument specs (:ref:`broker-methods`)."""
    found = set()
    for module in (ClientService, HqlService):
        for name in dir(module):
            if name.endswith("_args"):
                params = [field[2] for field in getattr(module, name).thrift_spec or () if field]
                if params[:1] == ["ns"] and params[1:2] in (["table_name"], ["name"]):
                    found.add(name[:-len("_args")])
    return frozenset(found)


_TABLE_METHODS = _table_methods()


def _split_host(host: str) -> tuple[str, Optional[int]]:
    """``'h:15867'`` or ``'[::1]:15867'`` to ``('h', 15867)``; no port gives ``None``."""
    name, sep, port = host.rpartition(":")
    if not sep or not port.isdigit():
        return host, None
    return name.strip("[]"), int(port)


def _text(value: Any) -> Optional[str]:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def _hql_command(event: events.CallStarted) -> Optional[str]:
    """The HQL text of an ``hql_*`` call: the first text argument (after the namespace id if any)."""
    for arg in event.args[:2]:
        text = _text(arg)
        if text is not None:
            return text
    return None


def operation_name(method: str, command: Optional[str]) -> str:
    """The ``db.operation.name`` of a call: the HQL verb (``'SELECT'``) of an
    ``hql_*`` call whose statement starts with a known one, else ``method``."""
    if command is not None and method in _HQL_METHODS:
        words = command.split(None, 1)
        if words and words[0].upper() in _HQL_VERBS:
            return words[0].upper()
    return method


# Where the one table of an HQL statement is named (:ref:`hql`).
_HQL_TABLE = re.compile(
    r"""\b(?:FROM|INTO(?:\s+TABLE)?|TABLE(?:\s+WITH\s+IDS)?(?:\s+IF\s+(?:NOT\s+)?EXISTS)?)\s+
        (?!(?:IF|WITH|FILE)\b)([A-Za-z_][\w./-]*)""", re.IGNORECASE | re.VERBOSE)


def query_summary(operation: str, command: Optional[str]) -> Optional[str]:
    """The ``db.query.summary`` of an HQL statement: its verb and its table
    (``'SELECT hits'``), or ``None`` when no table is named (``SHOW TABLES``).

    Only names go in (no literal values), so it is low-cardinality and safe to
    record by default.
    """
    if command is None or operation not in _HQL_VERBS:
        return None
    found = _HQL_TABLE.search(command)
    return f"{operation} {found.group(1)}" if found else None


def error_type(error: BaseException) -> str:
    """The ``error.type`` of a failure: a ``ClientException``'s numeric code
    (:ref:`error-codes`) as text, else the exception's qualified class name."""
    if isinstance(error, ClientException) and error.code is not None:
        return str(error.code)
    cls = type(error)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _pools(target: Any) -> Optional[dict[str, Any]]:
    """``{'host:port': Pool}`` of a Pool or a routing object (its ``pools``),
    or ``None`` when ``target`` has no pools to read."""
    from ._call.attempt import Pool
    if isinstance(target, Pool):
        return {str(target.host): target}
    inner = getattr(target, "pools", None)
    if isinstance(inner, Mapping):
        target = inner
    if isinstance(target, Mapping):
        found = {str(getattr(pool, "host", key)): pool for key, pool in target.items() if isinstance(pool, Pool)}
        return found or None
    return None


class Instrumentation:
    """A listener that turns htcluster events into OpenTelemetry spans and metrics.

    Made by :func:`instrument`; call :meth:`uninstrument` (or leave its
    ``with`` block) to stop.  Thread-safe: spans are matched to their call
    per thread (per asyncio task under ``htcluster.aio``), by ``(host, method, attempt)``.

    :param registry: the :class:`~htcluster.events.Listeners` it listens on.
    :param pools: ``{'host:port': Pool}`` whose ``stats()`` give the connection
        counts at each collection, or ``None`` to count from pool events
        (from the moment of instrumenting on).
    """

    def __init__(self, registry: Listeners, *, pools: Optional[Mapping[str, Any]] = None,
                 tracer_provider: Any = None, meter_provider: Any = None,
                 record_query_text: bool = False) -> None:
        from . import __version__
        self.registry = registry
        self.record_query_text = bool(record_query_text)
        #: ``{'host:port': Pool}`` whose counters the connection metrics read, or ``None``.
        self.pools = dict(pools) if pools else None
        self._local = threading.local()
        self._active = True
        self.tracer = trace.get_tracer(_SCOPE, __version__, tracer_provider, schema_url=_SCHEMA_URL)
        meter = metrics.get_meter(_SCOPE, __version__, meter_provider, schema_url=_SCHEMA_URL)
        self.duration = meter.create_histogram(
            "db.client.operation.duration", unit="s", description="Duration of database client operations.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS)
        self.wait_time = meter.create_histogram(
            "db.client.connection.wait_time", unit="s",
            description="The time it took to obtain an open connection from the pool.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS)
        self.timeouts = meter.create_counter(
            "db.client.connection.timeouts", unit="{timeout}",
            description="The number of connection timeouts that have occurred trying to obtain a connection "
                        "from the pool.")
        self.connections: Any = None
        if self.pools is not None:
            meter.create_observable_up_down_counter(
                "db.client.connection.count", callbacks=[self._observe_connections], unit="{connection}",
                description="The number of connections that are currently in state described by the state "
                            "attribute.")
            meter.create_observable_up_down_counter(
                "db.client.connection.pending_requests", callbacks=[self._observe_pending], unit="{request}",
                description="The number of current pending requests for an open connection.")
        else:
            self.connections = meter.create_up_down_counter(
                "db.client.connection.count", unit="{connection}",
                description="The number of connections that are currently in state described by the state "
                            "attribute.")
        self._handlers: dict[str, Callable[[Any], None]] = {
            "call_started": self._started,
            "call_succeeded": self._ended,
            "call_failed": self._ended,
            "pool_timed_out": self._timed_out,
            "pool_checked_out": self._checked_out,
            "failed_over": self._note,
            "host_down": self._note,
            "host_up": self._note,
            "host_ejected": self._note,
            "hedged": self._note,
            "budget_exhausted": self._note,
        }
        if self.connections is not None:
            self._handlers.update({
                "pool_checked_in": lambda e: self._move(e.host, "used", "idle"),
                "connection_opened": lambda e: self._move(e.host, None, "idle"),
                "connection_closed": lambda e: self._move(e.host, "idle", None),
                "connection_replaced": lambda e: self._move(e.host, "idle", None),
            })
        registry.register(self)

    def __repr__(self) -> str:
        state = "active" if self._active else "uninstrumented"
        return f"<htcluster.otel.Instrumentation {state} on {self.registry!r}>"

    def __call__(self, event: Event) -> None:
        handler = self._handlers.get(event.kind)
        if handler is not None:
            handler(event)

    def uninstrument(self) -> None:
        """Stop listening; spans still open are ended as they are; idempotent."""
        self._active = False
        self.registry.unregister(self)

    def __enter__(self) -> Instrumentation:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.uninstrument()

    # -- spans and the duration metric -------------------------------------------

    def open_spans(self) -> dict[tuple[str, str, int], list[tuple[Any, int, dict[str, Any]]]]:
        """Return the spans still open of this thread, or of the running asyncio task (``htcluster.aio``:
        concurrent tasks share a thread), by ``(host, method, attempt)`` (empty when every call ended)."""
        owners = getattr(self._local, "owners", None)
        if owners is None:
            owners = self._local.owners = {}
        try:
            owner = asyncio.current_task()
        except RuntimeError:  # no event loop runs in this thread
            owner = None
        spans = owners.get(owner)
        if spans is None:
            spans = owners[owner] = {}
        return spans

    def _done_with(self, spans: dict[Any, Any]) -> None:
        """Forget an owner (thread or task) whose spans all ended, so that ended tasks are not kept."""
        if not spans:
            owners = self._local.owners
            for owner, held in list(owners.items()):
                if held is spans:
                    del owners[owner]

    def _attributes(self, event: events.CallStarted) -> tuple[str, dict[str, Any], Optional[str]]:
        """The span name, the attributes shared by span and metric, and the HQL text."""
        command = _hql_command(event) if event.method in _HQL_METHODS else None
        operation = operation_name(event.method, command)
        address, port = _split_host(event.host)
        attrs: dict[str, Any] = {"db.system.name": DB_SYSTEM, "db.operation.name": operation,
                                 "server.address": address}
        if port is not None:
            attrs["server.port"] = port
        if event.namespace is not None:
            attrs["db.namespace"] = event.namespace
        target = event.namespace or (f"{address}:{port}" if port is not None else address)
        if event.method in _TABLE_METHODS and event.namespace is not None and event.args:
            table = _text(event.args[0])
            if table:
                attrs["db.collection.name"] = table
                target = table
        summary = query_summary(operation, command)
        if summary is not None:
            attrs["db.query.summary"] = summary
            attrs["db.collection.name"] = summary.split(" ", 1)[1]
            return summary, attrs, command
        return f"{operation} {target}", attrs, command

    def _started(self, event: events.CallStarted) -> None:
        name, attrs, command = self._attributes(event)
        span_attrs = dict(attrs)
        if self.record_query_text and command is not None:
            span_attrs["db.query.text"] = command
        start = time.time_ns()
        span = self.tracer.start_span(name, kind=SpanKind.CLIENT, attributes=span_attrs, start_time=start)
        key = (event.host, event.method, event.attempt)
        self.open_spans().setdefault(key, []).append((span, start, attrs))

    def _ended(self, event: Any) -> None:
        spans = self.open_spans()
        key = (event.host, event.method, event.attempt)
        stack = spans.get(key)
        if stack:
            span, start, attrs = stack.pop()
            if not stack:
                del spans[key]
                self._done_with(spans)
        else:  # instrumented mid-call: no span, but the duration still counts
            span, start = None, 0
            attrs = self._attributes(events.CallStarted(event.host, event.method, event.namespace,
                                                        event.attempt, event.args))[1]
        error = getattr(event, "error", None)
        if error is not None:
            attrs = dict(attrs, **{"error.type": error_type(error)})
            if isinstance(error, ClientException) and error.code is not None:
                attrs["db.response.status_code"] = str(error.code)
        self.duration.record(event.duration, attrs)
        if span is None:
            return
        if error is not None:
            span.set_attribute("error.type", attrs["error.type"])
            if "db.response.status_code" in attrs:
                span.set_attribute("db.response.status_code", attrs["db.response.status_code"])
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        # The span lasts exactly the measured duration, as the conventions ask of the metric.
        span.end(end_time=start + int(event.duration * 1e9))

    def _note(self, event: Any) -> None:
        """Routing events become events (``htcluster.<kind>``) on the caller's current span."""
        span = trace.get_current_span()
        if not span.is_recording():
            return
        attrs: dict[str, Any] = {}
        host = getattr(event, "host", None)
        if host is not None:
            address, port = _split_host(host)
            attrs["server.address"] = address
            if port is not None:
                attrs["server.port"] = port
        for name in ("what", "method", "failures", "backoff", "after", "ejected_for"):
            value = getattr(event, name, None)
            if value is not None:
                attrs[f"htcluster.{name}"] = value
        error = getattr(event, "error", None)
        if error is not None:
            attrs["error.type"] = error_type(error)
        span.add_event(f"htcluster.{event.kind}", attrs)

    # -- pool metrics ---------------------------------------------------------------

    def _timed_out(self, event: events.PoolTimedOut) -> None:
        self.timeouts.add(1, {"db.client.connection.pool.name": event.host})

    def _checked_out(self, event: events.PoolCheckedOut) -> None:
        self.wait_time.record(event.wait, {"db.client.connection.pool.name": event.host})
        if self.connections is not None:
            self._move(event.host, "idle", "used")

    def _move(self, host: str, from_state: Optional[str], to_state: Optional[str]) -> None:
        """Count one connection of pool ``host`` out of ``from_state`` into ``to_state``."""
        if from_state is not None:
            self.connections.add(-1, {"db.client.connection.pool.name": host,
                                      "db.client.connection.state": from_state})
        if to_state is not None:
            self.connections.add(1, {"db.client.connection.pool.name": host,
                                     "db.client.connection.state": to_state})

    def _stats(self) -> Iterable[tuple[str, Mapping[str, Any]]]:
        if not self._active or not self.pools:
            return
        for name, pool in self.pools.items():
            yield name, pool.stats()

    def _observe_connections(self, options: CallbackOptions) -> Iterable[Observation]:
        for name, stats in self._stats():
            yield Observation(stats.get("idle", 0), {"db.client.connection.pool.name": name,
                                                     "db.client.connection.state": "idle"})
            yield Observation(stats.get("in_use", 0), {"db.client.connection.pool.name": name,
                                                       "db.client.connection.state": "used"})

    def _observe_pending(self, options: CallbackOptions) -> Iterable[Observation]:
        for name, stats in self._stats():
            waiting = stats.get("waiting", stats.get("pending"))
            if waiting is not None:  # only pools that count their waiters
                yield Observation(waiting, {"db.client.connection.pool.name": name})


def instrument(target: Any = None, *, tracer_provider: Any = None, meter_provider: Any = None,
               record_query_text: bool = False) -> Instrumentation:
    """Record OpenTelemetry spans and metrics for the calls of ``target``.

    :param target: ``None`` for every htcluster client of the process (the
        global :data:`htcluster.events.listeners`), an object with a
        ``listeners`` registry (``Pool``, ``Resources``, ``Replicas``,
        ``Shards``), or a :class:`~htcluster.events.Listeners` itself.
    :param tracer_provider: an OpenTelemetry ``TracerProvider``; ``None`` uses the global one.
    :param meter_provider: an OpenTelemetry ``MeterProvider``; ``None`` uses the global one.
    :param record_query_text: put the HQL text in ``db.query.text`` (bool,
        default off: HQL carries its values inline, unsanitized).
    :returns: the :class:`Instrumentation`; ``.uninstrument()`` stops it.
    :raises ConfigError: ``target`` has no ``listeners`` registry.
    """
    if target is None:
        registry: Any = events.listeners
    elif isinstance(target, Listeners):
        registry = target
    else:
        registry = getattr(target, "listeners", None)
    if not isinstance(registry, Listeners):
        raise ConfigError(
            f"cannot instrument {target!r}: it has no .listeners registry (htcluster.events.Listeners); "
            "pass a Pool, Resources, Replicas or Shards, a Listeners, or None for every client")
    pools = _pools(target) if target is not None and not isinstance(target, Listeners) else None
    return Instrumentation(registry, pools=pools, tracer_provider=tracer_provider,
                           meter_provider=meter_provider, record_query_text=record_query_text)
