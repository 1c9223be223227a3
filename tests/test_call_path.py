"""The call path: bad arguments, checked replies, one frame limit, deadlines, fair checkout.

Each test reproduces a defect measured against the earlier call path (issue 7)
against real brokers, or against :class:`htcluster.faults.MisbehavingBroker`
where a broker must misbehave.
"""
from __future__ import annotations

import math
import os
import threading
import time

import pytest

from htcluster import Pool, Replicas, Resource, Resources
from htcluster.errors import (BrokerProtocolError, BrokerUnavailable, ConfigError, DeadlineExceeded,
                              InvalidRequest, NoHostAvailable)
from htcluster.faults import MISBEHAVIOURS
from htcluster import Backoff
from htcluster.types import Cell, ColumnFamilySpec, Key, Schema, ScanSpec

#: Generous limits where a timeout is not what is tested (loaded 2-core machines).
SLOW_OK = dict(socket_timeout=30.0, connect_timeout=10.0)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture(scope="module")
def table(local_broker) -> str:
    """A namespace ``callpath`` with table ``t (f)`` on the module's broker."""
    with Resource(local_broker.address, socket_timeout=30.0) as r:
        if not r.namespace_exists("callpath"):
            r.namespace_create("callpath")
        ns = r.mns["callpath"]
        if not r.table_exists(ns, "t"):
            r.table_create(ns, "t", Schema(column_families={"f": ColumnFamilySpec(name="f")}))
    return "t"


BAD_CALLS = {
    "i32 overflow": ("get_cells", "t", ScanSpec(row_limit=2 ** 40)),
    "int in a list of str": ("get_cells", "t", ScanSpec(columns=[123])),
    "lone surrogate": ("get_cells", "t", ScanSpec(row_regexp="\ud800")),
    "int where bytes belong": ("set_cells", "t", [Cell(Key("r", "f", ""), 123)]),
}


@pytest.mark.parametrize("what", sorted(BAD_CALLS))
def test_a_bad_argument_is_invalid_request_and_the_connection_stays_usable(local_broker, table, what):
    method, *args = BAD_CALLS[what]
    with Pool(local_broker.address, size=1, max_overflow=0, **SLOW_OK) as pool:
        pool.call("status")
        with pytest.raises(InvalidRequest, match=method) as excinfo:
            pool.call(method, *args, namespace="callpath")
        assert isinstance(excinfo.value, ValueError) and excinfo.value.method == method
        assert pool.call("get_cells", table, ScanSpec(row_limit=1), namespace="callpath") is not None
        stats = pool.stats()
        assert (stats["opened"], stats["closed"]) == (1, 0)  # the same connection served the next call


def test_a_bad_argument_marks_no_host_down_and_does_not_fail_over(local_cluster_factory):
    cluster = local_cluster_factory(2)
    with Replicas(cluster.hosts, **SLOW_OK) as replicas:
        replicas.call("status")
        for method, *args in BAD_CALLS.values():
            with pytest.raises(InvalidRequest):
                replicas.call(method, *args, namespace="/")
        assert replicas.health.down() == {} and replicas.failovers == 0
        assert replicas.call("status").code == 0


def test_a_request_over_the_frame_limit_is_refused_before_sending(local_cluster_factory):
    cluster = local_cluster_factory(3)
    with Replicas(cluster.hosts, max_frame_size=1 << 20, **SLOW_OK) as replicas:
        replicas.call("status")
        cells = [Cell(Key(f"r{i}", "f", ""), b"x" * 1000) for i in range(2000)]  # ~2 MB
        with pytest.raises(InvalidRequest, match="max_frame_size"):
            replicas.call("set_cells", "t", cells, namespace="/")
        assert replicas.health.down() == {} and replicas.failovers == 0


def test_a_value_over_thrifts_default_string_limit_is_written_and_read_back(local_broker, table):
    """17 MB > Thrift's 16,384,000-byte default: both sides share the 64 MiB frame limit now."""
    value = os.urandom(17 * 1000 * 1000)
    with Resource(local_broker.address, socket_timeout=60.0) as r:
        ns = r.mns["callpath"]
        r.set_cell(ns, table, Cell(Key("big", "f", ""), value))
        assert r.get_cell(ns, table, "big", "f") == value
        assert r.status().code == 0


@pytest.mark.parametrize("mode", ["stale", "double"])
def test_an_extra_reply_is_never_taken_for_the_next_answer(local_broker, misbehaving_broker_factory, mode):
    bad = misbehaving_broker_factory(mode, upstream=local_broker.address)
    wrong = errors = 0
    with Pool(bad.address, size=1, max_overflow=0, **SLOW_OK) as pool:
        for i in range(20):
            name = "callpath" if i % 2 else "no_such_namespace"
            try:
                answer = pool.call("namespace_exists", name)
            except BrokerProtocolError as exc:
                assert exc.sent is True
                errors += 1
                continue
            wrong += answer is not bool(i % 2)
    assert wrong == 0
    if mode == "double":
        assert errors == 20  # two replies in one frame: refused every time


def test_garbage_replies_are_protocol_errors_and_reads_fail_over(local_broker, misbehaving_broker_factory):
    for mode in ("garbage", "framed_garbage", "huge_frame"):
        bad = misbehaving_broker_factory(mode, delay=0.01)
        with Resource(bad.address, socket_timeout=5.0) as r:
            with pytest.raises(BrokerUnavailable) as excinfo:
                r.status()
            assert excinfo.value.sent is True and not r.is_open, mode
        with Replicas([bad.address, local_broker.address], backoff=Backoff(base=30.0, cap=30.0),
                      **dict(SLOW_OK, socket_timeout=5.0)) as replicas:
            for _ in range(3):  # reads: answered by the good host, whatever the order tried
                assert replicas.call("namespace_exists", "callpath") is True
            assert bad.address in replicas.health.down() or replicas[bad.address].stats()["calls"] == 0, mode


@pytest.mark.parametrize("mode", sorted(MISBEHAVIOURS))
def test_every_misbehaviour_is_a_typed_error_in_bounded_time_without_leaking(local_broker, misbehaving_broker_factory,
                                                                            mode):
    before = open_fds()
    bad = misbehaving_broker_factory(mode, upstream=local_broker.address, delay=0.1)
    with Pool(bad.address, size=2, max_overflow=0, socket_timeout=1.0, connect_timeout=5.0) as pool:
        start = time.monotonic()
        try:
            pool.call("status")
        except (BrokerUnavailable, DeadlineExceeded):
            pass  # a typed error: no plain Thrift exception escapes
        else:
            assert mode in ("stale",), f"{mode} answered"
        assert time.monotonic() - start < 8.0, mode  # the 1 s budget of the whole call, with slack
    bad.close()  # its own sockets live in this process too: close them, then count
    settle = time.monotonic() + 10
    while open_fds() > before and time.monotonic() < settle:
        time.sleep(0.05)
    assert open_fds() <= before, mode  # the pool closed what it opened
    assert Resource(local_broker.address, socket_timeout=30.0).status().code == 0


def test_a_trickling_answer_is_bounded_by_the_call_timeout_not_per_read(local_broker, misbehaving_broker_factory):
    """One byte per 100 ms: each read is fast, the whole answer is not (it once "succeeded" after 11 s)."""
    bad = misbehaving_broker_factory("trickle", upstream=local_broker.address, delay=0.1)
    r = Resource(bad.address, socket_timeout=1.0)
    start = time.monotonic()
    with pytest.raises(BrokerUnavailable, match="timed out after 1 s") as excinfo:
        r.status()
    assert time.monotonic() - start < 5.0 and excinfo.value.sent is True and not r.is_open


def test_a_routed_call_never_runs_past_its_timeout(misbehaving_broker_factory):
    silent = [misbehaving_broker_factory("silent") for _ in range(3)]
    with Resources([s.address for s in silent], socket_timeout=2.0, connect_timeout=5.0) as rs:
        start = time.monotonic()
        with pytest.raises(DeadlineExceeded) as excinfo:
            rs.unicast("status", timeout=1.0)
        took = time.monotonic() - start
    assert isinstance(excinfo.value, TimeoutError) and took < 4.0  # not 3 x 2 s of socket timeouts
    assert "status" in str(excinfo.value)
    assert rs.health.down() == {}  # the deadline is the caller's, not the hosts' fault


def test_a_deadline_covers_the_pool_wait(local_broker):
    with Pool(local_broker.address, size=1, max_overflow=0, pool_timeout=30.0, socket_timeout=30.0) as pool:
        with pool.connection():
            start = time.monotonic()
            with pytest.raises(DeadlineExceeded):
                pool.call("status", timeout=0.3)
            assert time.monotonic() - start < 5.0


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1.0, True])
def test_durations_refuse_nan_infinity_negatives_and_bools(bad):
    with pytest.raises(ConfigError):
        Pool("localhost", pool_timeout=bad)
    with pytest.raises(ConfigError):
        Resource("localhost", socket_timeout=bad, open=False)
    with pytest.raises(ConfigError):
        Resources("localhost", call_timeout=bad)
    with pytest.raises(ConfigError):
        Backoff(base=bad)
    with pytest.raises(ConfigError):
        Resources("localhost").unicast("status", timeout=bad)


def test_resource_second_argument_is_the_port_as_upstream():
    assert Resource("localhost", 15868, open=False).host.port == 15868
    with pytest.raises(ConfigError, match="port"):
        Resource("localhost", 2.5, open=False)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="port"):
        Resource("localhost:15867", 15868, open=False)


def test_checkout_is_first_come_first_served(local_broker):
    """A returned connection goes to the oldest waiter, never back to the thread that returned it."""
    with Pool(local_broker.address, size=1, max_overflow=0, pool_timeout=30.0, **SLOW_OK) as pool:
        order: list[str] = []
        holder = pool.connection()
        holder.__enter__()
        waiting = threading.Event()

        def waiter() -> None:
            waiting.set()
            with pool.connection():
                order.append("waiter")
                time.sleep(0.2)

        t = threading.Thread(target=waiter)
        t.start()
        waiting.wait(10)
        deadline = time.monotonic() + 10
        while pool.waiting == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        holder.__exit__(None, None, None)
        with pool.connection():  # the returning thread queues behind the waiter
            order.append("returner")
        t.join(30)
        assert order == ["waiter", "returner"]


def test_no_waiter_starves_while_connections_cycle(local_broker):
    """16 threads on 15 connections once left one checkout waiting the whole run; now every wait is short."""
    threads, rounds = 16, 150
    waits: list[float] = []
    lock = threading.Lock()
    with Pool(local_broker.address, size=15, max_overflow=0, pool_timeout=60.0, **SLOW_OK) as pool:
        def work() -> None:
            for _ in range(rounds):
                start = time.monotonic()
                with pool.connection() as r:
                    with lock:
                        waits.append(time.monotonic() - start)
                    r.status()

        pool_threads = [threading.Thread(target=work) for _ in range(threads)]
        for t in pool_threads:
            t.start()
        for t in pool_threads:
            t.join(120)
        assert pool.stats()["timeouts"] == 0
    waits.sort()
    # FIFO: a waiter waits about one call of each thread ahead of it, never the whole run
    assert len(waits) == threads * rounds and waits[-1] < 10.0


def test_no_plain_thrift_exception_escapes(misbehaving_broker_factory):
    from thrift.protocol.TProtocol import TProtocolException
    bad = misbehaving_broker_factory("framed_garbage")
    with Pool(bad.address, **SLOW_OK) as pool:
        for _ in range(5):
            with pytest.raises(BrokerProtocolError) as excinfo:
                pool.call("status")
            assert not isinstance(excinfo.value.__cause__, BrokerProtocolError)
            assert not isinstance(excinfo.value, TProtocolException)


def test_all_hosts_misbehaving_is_no_host_available(misbehaving_broker_factory):
    bad = [misbehaving_broker_factory(m) for m in ("close", "garbage", "framed_garbage")]
    with Resources([b.address for b in bad], **SLOW_OK) as rs:
        with pytest.raises(NoHostAvailable) as excinfo:
            rs.unicast("status")
        assert set(excinfo.value.errors) == {b.address for b in bad}


def test_one_bad_request_in_a_flask_app_does_not_fail_the_next(local_broker, table):
    """With one broker, a bad POST once left bytes in a pooled connection and made the next valid POST a 503."""
    flask = pytest.importorskip("flask")
    from htcluster.flask_ext import Hypertable

    app = flask.Flask(__name__)
    app.config.update(HYPERTABLE_HOSTS=local_broker.address, HYPERTABLE_NAMESPACE="callpath")
    ht = Hypertable(app)

    @app.post("/cell/<row>")
    def put(row: str):
        value = flask.request.get_json()["value"]
        try:
            ht.namespace().set_cells(table, [Cell(Key(row, "f", ""), value)])
        except InvalidRequest as exc:
            return {"error": str(exc)}, 422
        return {"ok": True}, 201

    client = app.test_client()
    assert client.post("/cell/a", json={"value": 123}).status_code == 422  # an int where bytes belong
    assert client.post("/cell/a", data='{"value": "x"}', content_type="application/json").status_code in (201, 422)
    for _ in range(3):
        response = client.post("/cell/b", json={"value": None})
        assert response.status_code in (201, 422)
    with app.app_context():
        stats = ht.cluster.stats()  # one host: the 'pool' strategy, a Pool
    assert (stats["opened"], stats["closed"]) == (1, 0)  # one connection served every request


@pytest.mark.parametrize("mode", sorted(MISBEHAVIOURS))
def test_replicas_and_flask_against_every_misbehaviour(local_broker, table, misbehaving_broker_factory, mode):
    """Replicas read past a misbehaving member; a Flask app on one bad host answers 503 in bounded time."""
    flask = pytest.importorskip("flask")
    from htcluster.flask_ext import Hypertable

    bad = misbehaving_broker_factory(mode, upstream=local_broker.address, delay=0.1)
    with Replicas([bad.address, local_broker.address], socket_timeout=1.0, connect_timeout=5.0,
                  backoff=Backoff(base=30.0, cap=30.0)) as replicas:
        for i in range(4):
            start = time.monotonic()
            assert replicas.call("namespace_exists", "callpath") is True, (mode, i)
            assert time.monotonic() - start < 8.0, mode

    app = flask.Flask(__name__)
    app.config.update(HYPERTABLE_HOSTS=bad.address, HYPERTABLE_TIMEOUT_MSECS=1000)
    ht = Hypertable(app)

    @app.get("/exists")
    def exists():
        try:
            return {"exists": ht.connection.namespace_exists("callpath")}
        except (BrokerUnavailable, DeadlineExceeded) as exc:
            return {"error": type(exc).__name__}, 503

    client = app.test_client()
    start = time.monotonic()
    response = client.get("/exists")
    assert time.monotonic() - start < 8.0, mode
    assert response.status_code == (200 if mode == "stale" else 503), (mode, response.get_json())
    app.config.update(HYPERTABLE_HOSTS=local_broker.address)


def test_calls_on_a_lent_connection_are_reported(local_broker, table):
    """Calls made on ``pool.connection()`` (scanners, mutators, ``ht.connection``) reach the listeners too."""
    from htcluster.events import CallStarted, CallSucceeded

    seen: list = []
    with Pool(local_broker.address, **SLOW_OK) as pool:
        pool.listeners.register(seen.append)
        with pool.connection() as r:
            ns = r.mns["callpath"]
            r.get_cells(ns, table, ScanSpec(row_limit=1))
        r.status()  # back in the pool's hands: no longer reported
    calls = [(type(e).__name__, e.method, e.namespace) for e in seen if isinstance(e, (CallStarted, CallSucceeded))]
    assert ("CallStarted", "namespace_open", None) in calls
    assert ("CallSucceeded", "get_cells", "callpath") in calls
    assert not any(method == "status" for _, method, _ in calls)
