"""htcluster.otel: spans and metrics from events, checked with the SDK's in-memory exporters."""
from __future__ import annotations

import asyncio

import threading
import time

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402

from htcluster import events, otel  # noqa: E402
from htcluster.errors import BrokerUnavailable, ConfigError  # noqa: E402
from htcluster.events import (CallFailed, CallStarted, CallSucceeded, ConnectionClosed,  # noqa: E402
                              ConnectionOpened, ConnectionReplaced, Listeners, PoolCheckedIn,
                              PoolCheckedOut, PoolTimedOut)
from htcluster import Pool  # noqa: E402
from htcluster.types import ClientException  # noqa: E402

HOST = "127.0.0.1:15867"


class Telemetry:
    """An SDK tracer and meter provider writing to memory, and an instrumented registry."""

    def __init__(self, **options):
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.registry = Listeners(parent=None)
        target = options.pop("target", self.registry)
        providers = dict(tracer_provider=self.tracer_provider, meter_provider=self.meter_provider)
        if "pools" in options:  # a registry plus pools to read, as instrument(pool_owner) makes
            self.instrumentation = otel.Instrumentation(self.registry, **providers, **options)
        else:
            self.instrumentation = otel.instrument(target, **providers, **options)

    def call(self, method="status", namespace=None, args=(), host=HOST, attempt=1, duration=0.25,
             error=None):
        self.registry.emit(CallStarted(host, method, namespace, attempt, args))
        if error is None:
            self.registry.emit(CallSucceeded(host, method, namespace, attempt, duration, args))
        else:
            self.registry.emit(CallFailed(host, method, namespace, attempt, duration, error, args))

    def finished(self):
        return self.spans.get_finished_spans()

    def points(self, name):
        data = self.reader.get_metrics_data()
        found = []
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def metric(self, name):
        data = self.reader.get_metrics_data()
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        return metric
        raise AssertionError(f"no metric {name}")

    def close(self):
        self.instrumentation.uninstrument()
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


@pytest.fixture
def telemetry():
    made = []

    def make(**options):
        made.append(Telemetry(**options))
        return made[-1]

    yield make
    for t in made:
        t.close()


def by_state(points):
    return {(p.attributes["db.client.connection.pool.name"], p.attributes["db.client.connection.state"]): p.value
            for p in points}


# -- spans --------------------------------------------------------------------

def test_a_call_is_one_client_span_with_the_database_attributes(telemetry):
    t = telemetry()
    t.call("status", duration=0.25)
    [span] = t.finished()
    assert span.name == "status 127.0.0.1:15867"  # {operation} {server.address:server.port}
    assert span.kind is SpanKind.CLIENT
    assert dict(span.attributes) == {"db.system.name": "hypertable", "db.operation.name": "status",
                                     "server.address": "127.0.0.1", "server.port": 15867}
    assert span.status.status_code is StatusCode.UNSET
    assert span.end_time - span.start_time == 250_000_000  # exactly the measured duration
    assert span.instrumentation_scope.name == "htcluster"


def test_hql_operation_is_the_verb_and_the_text_is_opt_in(telemetry):
    t = telemetry()
    t.call("hql_query", namespace="logs", args=('select * from hits where row = "secret"',))
    t.call("hql_exec", namespace="logs", args=("FROBNICATE all", False, False))
    select, unknown = t.finished()
    assert select.name == "SELECT hits"  # the query summary: verb and table, no values
    assert select.attributes["db.operation.name"] == "SELECT"
    assert select.attributes["db.query.summary"] == "SELECT hits"
    assert select.attributes["db.collection.name"] == "hits"
    assert select.attributes["db.namespace"] == "logs"
    assert "db.query.text" not in select.attributes
    assert "secret" not in repr(dict(select.attributes)) + select.name
    assert unknown.attributes["db.operation.name"] == "hql_exec"  # no known verb: the method

    t2 = telemetry(record_query_text=True)
    t2.call("hql_query", namespace="logs", args=('SELECT * FROM hits WHERE ROW = "r1"',))
    [span] = t2.finished()
    assert span.attributes["db.query.text"] == 'SELECT * FROM hits WHERE ROW = "r1"'


def test_hql_without_a_table_is_named_by_verb_and_namespace(telemetry):
    t = telemetry()
    t.call("hql_query", namespace="logs", args=("SHOW TABLES",))
    [span] = t.finished()
    assert span.name == "SHOW logs"
    assert "db.query.summary" not in span.attributes and "db.collection.name" not in span.attributes


@pytest.mark.parametrize("command, summary", [
    ('SELECT * FROM hits WHERE ROW = "x"', "SELECT hits"),
    ("select cf:q from LogDb limit 1", "SELECT LogDb"),
    ("INSERT INTO t VALUES ('r', 'c', 'FROM x')", "INSERT t"),
    ('DELETE * FROM t WHERE ROW = "r"', "DELETE t"),
    ("CREATE TABLE IF NOT EXISTS t8 (a)", "CREATE t8"),
    ("DROP TABLE IF EXISTS t2", "DROP t2"),
    ("DESCRIBE TABLE WITH IDS t3", "DESCRIBE t3"),
    ("SHOW CREATE TABLE t4", "SHOW t4"),
    ('LOAD DATA INFILE "x.tsv" INTO TABLE t5', "LOAD t5"),
    ('LOAD DATA INFILE "x.tsv" INTO FILE f', None),
    ('SELECT * FROM t INTO FILE "out"', "SELECT t"),
    ("SHOW TABLES", None),
    ("CREATE NAMESPACE n", None),
    ("GET LISTING", None),
])
def test_query_summary_is_verb_and_table(command, summary):
    assert otel.query_summary(otel.operation_name("hql_query", command), command) == summary


def test_hql_with_a_positional_namespace_id_still_finds_the_verb(telemetry):
    t = telemetry(record_query_text=True)
    t.call("hql_query", args=(12345, b"show tables"))
    [span] = t.finished()
    assert span.attributes["db.operation.name"] == "SHOW"
    assert span.attributes["db.query.text"] == "show tables"
    assert "db.namespace" not in span.attributes


def test_table_methods_name_the_collection(telemetry):
    t = telemetry()
    t.call("get_cell", namespace="logs", args=("hits", "row1", "c"))
    t.call("namespace_exists", args=("logs",))
    cell, ns = t.finished()
    assert cell.name == "get_cell hits"
    assert cell.attributes["db.collection.name"] == "hits"
    assert "db.collection.name" not in ns.attributes


def test_ipv6_host_splits_into_address_and_port(telemetry):
    t = telemetry()
    t.call("status", host="[::1]:15868")
    [span] = t.finished()
    assert span.attributes["server.address"] == "::1" and span.attributes["server.port"] == 15868


def test_broker_error_sets_error_type_status_code_and_error_status(telemetry):
    t = telemetry()
    t.call("namespace_open", args=("nope",), error=ClientException(code=40, message="namespace does not exist"))
    t.call("status", error=BrokerUnavailable("connection refused by 127.0.0.1:15867", host=HOST, sent=False))
    t.call("status", error=TimeoutError("slow"))
    broker, transport, builtin = t.finished()
    assert broker.attributes["error.type"] == "40"
    assert broker.attributes["db.response.status_code"] == "40"
    assert broker.status.status_code is StatusCode.ERROR
    assert "namespace does not exist" in broker.status.description
    assert [e.name for e in broker.events] == ["exception"]
    assert transport.attributes["error.type"] == "htcluster.errors.BrokerUnavailable"
    assert "db.response.status_code" not in transport.attributes
    assert builtin.attributes["error.type"] == "TimeoutError"


def test_spans_are_matched_per_thread_host_and_attempt(telemetry):
    """Two threads call the same host with the same attempt number, interleaved
    as B starts, A starts, B ends, A ends: each span keeps its own thread's
    parent, duration and outcome."""
    t = telemetry()
    app = t.tracer_provider.get_tracer("app")
    b_started, a_started, b_ended = threading.Event(), threading.Event(), threading.Event()
    parents = {}

    def caller(name, before, after_start, before_end, duration, error):
        with app.start_as_current_span(f"request {name}") as parent:
            parents[name] = parent.get_span_context().span_id
            if before is not None:
                assert before.wait(30)
            t.registry.emit(CallStarted(HOST, "status", None, 1, ()))
            after_start.set()
            if before_end is not None:
                assert before_end.wait(30)
            if error is None:
                t.registry.emit(CallSucceeded(HOST, "status", None, 1, duration, ()))
            else:
                t.registry.emit(CallFailed(HOST, "status", None, 1, duration, error, ()))

    a = threading.Thread(target=caller, args=("A", b_started, a_started, b_ended, 2.0, OSError("x")))
    b = threading.Thread(target=caller, args=("B", None, b_started, a_started, 0.5, None))
    a.start()
    b.start()
    b.join(60)
    b_ended.set()
    a.join(60)
    check_paired(t, parents)


def check_paired(t, parents):
    """Span A (2 s, failed) and span B (0.5 s, answered), each the child of its caller's span."""
    calls = {s.parent.span_id: s for s in t.finished() if s.name.startswith("status")}
    assert set(calls) == set(parents.values())
    span_a, span_b = calls[parents["A"]], calls[parents["B"]]
    assert span_a.end_time - span_a.start_time == 2_000_000_000
    assert span_a.status.status_code is StatusCode.ERROR
    assert span_b.end_time - span_b.start_time == 500_000_000
    assert span_b.status.status_code is StatusCode.UNSET
    assert not t.instrumentation.open_spans()


@pytest.mark.asyncio
async def test_spans_are_matched_per_asyncio_task(telemetry):
    """The same interleaving as above by two tasks of one thread (htcluster.aio): B starts, A starts,
    B ends, A ends; each span keeps its own task's parent, duration and outcome."""
    t = telemetry()
    app = t.tracer_provider.get_tracer("app")
    b_started, a_started, b_ended = asyncio.Event(), asyncio.Event(), asyncio.Event()
    parents = {}

    async def caller(name, before, after_start, before_end, duration, error):
        with app.start_as_current_span(f"request {name}") as parent:
            parents[name] = parent.get_span_context().span_id
            if before is not None:
                await before.wait()
            t.registry.emit(CallStarted(HOST, "status", None, 1, ()))
            after_start.set()
            if before_end is not None:
                await before_end.wait()
            if error is None:
                t.registry.emit(CallSucceeded(HOST, "status", None, 1, duration, ()))
            else:
                t.registry.emit(CallFailed(HOST, "status", None, 1, duration, error, ()))
            if name == "B":
                b_ended.set()

    await asyncio.gather(caller("A", b_started, a_started, b_ended, 2.0, OSError("x")),
                         caller("B", None, b_started, a_started, 0.5, None))
    check_paired(t, parents)


def test_retry_on_the_same_thread_is_a_second_span(telemetry):
    t = telemetry()
    t.registry.emit(CallStarted(HOST, "status", None, 1, ()))
    t.registry.emit(CallStarted("10.0.0.2:15867", "status", None, 1, ()))  # interleaved, other host
    t.registry.emit(CallFailed(HOST, "status", None, 1, 0.1, BrokerUnavailable("x", sent=False), ()))
    t.registry.emit(CallStarted(HOST, "status", None, 2, ()))
    t.registry.emit(CallSucceeded(HOST, "status", None, 2, 0.2, ()))
    t.registry.emit(CallSucceeded("10.0.0.2:15867", "status", None, 1, 0.3, ()))
    spans = t.finished()
    assert [(s.attributes["server.address"], s.end_time - s.start_time) for s in spans] == [
        ("127.0.0.1", 100_000_000), ("127.0.0.1", 200_000_000), ("10.0.0.2", 300_000_000)]
    assert not t.instrumentation.open_spans(), "no span left open"


def test_an_end_without_a_start_records_the_duration_but_no_span(telemetry):
    t = telemetry()
    t.registry.emit(CallSucceeded(HOST, "status", None, 1, 0.02, ()))
    assert t.finished() == ()
    [point] = t.points("db.client.operation.duration")
    assert point.count == 1


# -- metrics --------------------------------------------------------------------

def test_operation_duration_histogram_in_seconds_with_the_convention_buckets(telemetry):
    t = telemetry()
    t.call("status", duration=0.003)
    t.call("status", duration=0.2)
    t.call("get_cell", namespace="logs", args=("hits", "r", "c"), duration=0.5,
           error=ClientException(code=9, message="bad key"))
    metric = t.metric("db.client.operation.duration")
    assert metric.unit == "s"
    points = {p.attributes["db.operation.name"]: p for p in metric.data.data_points}
    status = points["status"]
    assert status.count == 2 and status.sum == pytest.approx(0.203)
    assert tuple(status.explicit_bounds) == otel.DURATION_BUCKETS
    assert dict(status.attributes) == {"db.system.name": "hypertable", "db.operation.name": "status",
                                       "server.address": "127.0.0.1", "server.port": 15867}
    failed = points["get_cell"]
    assert failed.attributes["error.type"] == "9" and failed.attributes["db.namespace"] == "logs"
    assert failed.attributes["db.collection.name"] == "hits"
    assert "db.query.text" not in failed.attributes


def test_connection_count_by_state_from_pool_events(telemetry):
    t = telemetry()
    r = t.registry
    r.emit(ConnectionOpened(HOST))
    r.emit(PoolCheckedOut(HOST, 0.0))
    r.emit(ConnectionOpened(HOST))
    r.emit(PoolCheckedOut(HOST, 0.0))
    assert by_state(t.points("db.client.connection.count")) == {(HOST, "idle"): 0, (HOST, "used"): 2}
    r.emit(PoolCheckedIn(HOST))
    r.emit(PoolCheckedIn(HOST))
    r.emit(ConnectionClosed(HOST, "overflow"))
    assert by_state(t.points("db.client.connection.count")) == {(HOST, "idle"): 1, (HOST, "used"): 0}
    r.emit(ConnectionReplaced(HOST, "stale"))  # the idle one was found dead at checkout ...
    r.emit(ConnectionOpened(HOST))             # ... and a new one opened for it
    r.emit(PoolCheckedOut(HOST, 0.0))
    assert by_state(t.points("db.client.connection.count")) == {(HOST, "idle"): 0, (HOST, "used"): 1}
    assert t.metric("db.client.connection.count").unit == "{connection}"


def test_pool_timeouts_and_wait_time(telemetry):
    t = telemetry()
    t.registry.emit(PoolCheckedOut(HOST, 0.004))
    t.registry.emit(PoolTimedOut(HOST, 30.0))
    t.registry.emit(PoolTimedOut(HOST, 30.0))
    [timeouts] = t.points("db.client.connection.timeouts")
    assert timeouts.value == 2 and dict(timeouts.attributes) == {"db.client.connection.pool.name": HOST}
    [wait] = t.points("db.client.connection.wait_time")
    assert wait.count == 1 and wait.sum == pytest.approx(0.004)


def test_connection_count_and_pending_read_from_real_pool_stats(broker_address, telemetry):
    """With pools to read, the counts come from Pool.stats() at each collection,
    so connections opened before instrumenting count too."""
    pool = Pool(broker_address, size=2, socket_timeout=30.0, connect_timeout=30.0)
    try:
        pool.call("status")  # one idle connection before instrumenting
        t = telemetry(pools={broker_address: pool})
        assert by_state(t.points("db.client.connection.count")) == {
            (broker_address, "idle"): 1, (broker_address, "used"): 0}
        with pool.connection():
            assert by_state(t.points("db.client.connection.count")) == {
                (broker_address, "idle"): 0, (broker_address, "used"): 1}
        assert [p.value for p in t.points("db.client.connection.pending_requests")] == [0]
    finally:
        pool.close()


def test_pending_requests_counts_a_thread_waiting_for_a_connection(broker_address, telemetry):
    pool = Pool(broker_address, size=1, max_overflow=0, pool_timeout=30.0, socket_timeout=30.0,
                connect_timeout=30.0)
    try:
        t = telemetry(pools={broker_address: pool})
        with pool.connection():
            waiter = threading.Thread(target=pool.call, args=("status",))
            waiter.start()
            deadline = time.monotonic() + 30
            while pool.stats()["waiting"] < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            [pending] = t.points("db.client.connection.pending_requests")
            assert pending.value == 1
            assert dict(pending.attributes) == {"db.client.connection.pool.name": broker_address}
        waiter.join(60)
        assert not waiter.is_alive()
        [pending] = t.points("db.client.connection.pending_requests")
        assert pending.value == 0
    finally:
        pool.close()


# -- instrument / uninstrument ---------------------------------------------------

def test_uninstrument_stops_recording_and_is_idempotent(telemetry):
    t = telemetry()
    assert t.instrumentation in t.registry
    t.call("status")
    t.instrumentation.uninstrument()
    t.instrumentation.uninstrument()
    assert not t.registry
    t.call("status")
    assert len(t.finished()) == 1
    assert "uninstrumented" in repr(t.instrumentation)


def test_instrument_none_listens_globally_and_a_with_block_ends_it():
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
    with otel.instrument(tracer_provider=provider, meter_provider=meters) as inst:
        assert inst in events.listeners
        local = Listeners()  # any per-object registry reaches the global one
        local.emit(CallStarted(HOST, "status", None, 1, ()))
        local.emit(CallSucceeded(HOST, "status", None, 1, 0.01, ()))
    assert inst not in events.listeners and not events.listeners
    assert len(spans.get_finished_spans()) == 1
    provider.shutdown()
    meters.shutdown()


def test_instrument_refuses_an_object_without_listeners():
    with pytest.raises(ConfigError, match="no .listeners registry"):
        otel.instrument(object())
    assert not events.listeners


def test_operation_name_and_error_type_helpers():
    assert otel.operation_name("hql_query", "  insert into t values ('r', 'c', 'v')") == "INSERT"
    assert otel.operation_name("hql_query", "") == "hql_query"
    assert otel.operation_name("get_cell", "SELECT") == "get_cell"
    assert otel.error_type(ClientException(code=48, message="x")) == "48"
    assert otel.error_type(ValueError("x")) == "ValueError"


# -- against real brokers -----------------------------------------------------------

def _has_listeners() -> bool:
    from htcluster import Replicas
    r = Replicas("127.0.0.1:1")
    try:
        return isinstance(getattr(r, "listeners", None), Listeners)
    finally:
        r.close()


@pytest.mark.skipif(not _has_listeners(), reason="Replicas has no .listeners yet (event emission not wired)")
def test_replicas_call_makes_a_span_and_a_duration_point(local_cluster_factory, telemetry):
    from htcluster import Replicas
    cluster = local_cluster_factory(2)
    replicas = Replicas(cluster.hosts, socket_timeout=30.0, connect_timeout=30.0)
    try:
        t = telemetry(target=replicas)
        replicas.call("status")
        spans = t.finished()
        assert spans, "no span for Replicas.call('status')"
        span = spans[-1]
        assert span.name.startswith("status ") and span.kind is SpanKind.CLIENT
        assert span.attributes["db.system.name"] == "hypertable"
        assert f"{span.attributes['server.address']}:{span.attributes['server.port']}" in cluster.hosts
        [point] = [p for p in t.points("db.client.operation.duration")
                   if p.attributes["db.operation.name"] == "status"]
        assert point.count == len(spans) and 0 < point.sum < 30
        counts = by_state(t.points("db.client.connection.count"))
        assert sum(v for (_, state), v in counts.items() if state == "idle") >= 1
    finally:
        replicas.close()


def test_routing_events_are_noted_on_the_callers_span(telemetry):
    t = telemetry()
    app = t.tracer_provider.get_tracer("app")
    with app.start_as_current_span("request"):
        t.registry.emit(events.FailedOver(HOST, "call status", BrokerUnavailable("refused", sent=False)))
        t.registry.emit(events.HostDown(HOST, None, 3, 2.5))
        t.registry.emit(events.BudgetExhausted("retry of set_cells"))
    t.registry.emit(events.HostUp(HOST))  # no current span: nothing to note it on, nothing raised
    [request] = t.finished()
    noted = {e.name: dict(e.attributes) for e in request.events}
    assert noted["htcluster.failed_over"] == {"server.address": "127.0.0.1", "server.port": 15867,
                                              "htcluster.what": "call status",
                                              "error.type": "htcluster.errors.BrokerUnavailable"}
    assert noted["htcluster.host_down"]["htcluster.failures"] == 3
    assert noted["htcluster.host_down"]["htcluster.backoff"] == 2.5
    assert noted["htcluster.budget_exhausted"] == {"htcluster.what": "retry of set_cells"}


def _event_counts(t, host):
    counts = by_state(t.points("db.client.connection.count"))
    return counts.get((host, "idle"), 0), counts.get((host, "used"), 0)


def test_counts_from_pool_events_match_the_pools_own_under_load(broker_address, telemetry):
    """Global instrumentation counts connections from events; after concurrent
    calls with overflow, its idle/used agree with Pool.stats()."""
    from htcluster import Pool
    t = telemetry(target=events.listeners)
    pool = Pool(broker_address, size=2, max_overflow=3, pool_timeout=30.0, socket_timeout=30.0,
                connect_timeout=30.0)
    try:
        barrier = threading.Barrier(5, timeout=30)
        errors = []

        def work():
            try:
                with pool.connection() as r:
                    barrier.wait()  # five connections out at once: two kept, three overflow
                    r.call("status")
                for _ in range(5):
                    pool.call("status")
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(5)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        assert not errors
        stats = pool.stats()
        assert (stats["idle"], stats["in_use"]) == (2, 0)
        assert _event_counts(t, broker_address) == (stats["idle"], stats["in_use"])
    finally:
        pool.close()


def test_counts_from_pool_events_drop_to_zero_when_the_pool_closes(broker_address, telemetry):
    from htcluster import Pool
    t = telemetry(target=events.listeners)
    pool = Pool(broker_address, size=2, socket_timeout=30.0, connect_timeout=30.0)
    pool.call("status")
    assert _event_counts(t, broker_address) == (1, 0)
    pool.close()
    assert _event_counts(t, broker_address) == (0, 0)


def test_instrument_finds_the_registry_and_pools_of_every_strategy(telemetry):
    from htcluster import Pool, Replicas, Resources, Shards
    hosts = ["127.0.0.1:1", "127.0.0.1:2"]
    made = [Pool(hosts[0]), Resources(hosts), Replicas(hosts), Shards([(hosts[0], "a"), (hosts[1], "b")])]
    try:
        for target in made:
            t = telemetry(target=target)
            assert t.instrumentation.registry is target.listeners
            assert t.instrumentation in target.listeners
            expected = hosts[:1] if isinstance(target, Pool) else hosts
            assert sorted(t.instrumentation.pools) == expected
            # nothing opened yet: both states read 0 from the pools' own counters
            assert set(by_state(t.points("db.client.connection.count")).values()) == {0}
            t.instrumentation.uninstrument()
            assert not target.listeners
    finally:
        for target in made:
            target.close()
