"""Resources over real local brokers: choice, failover, parallel broadcast, dead and paused hosts."""
from __future__ import annotations

import random
import threading
import time

import pytest

from brokertest import stop_gracefully
from htcluster import Resources
from htcluster.errors import (BroadcastError, BrokerUnavailable, ClientException, ConfigError, NoHostAvailable,
                              PoolTimeout)
from htcluster import Backoff
from htcluster.testing import FaultProxy, LocalCluster, ManualClock, free_port
from htcluster.types import ScanSpec

#: Short socket timeouts and backoffs keep the fault tests fast (seconds).
#: Settings where no timeout is under test: generous, so that a loaded 2-core machine cannot fail a test
#: (a first HQL query took 0.4-0.84 s there, against the 1 s socket timeout these tests once had).
FAST = dict(socket_timeout=30.0, connect_timeout=5.0, backoff=Backoff(base=0.5, cap=2.0, jitter=0.0))
#: For the tests where a host that never answers must time out: the timeout is what is tested.
# Only where a hung broker is waited for; 3 s leaves a busy machine room for every other call.
SHORT = dict(FAST, socket_timeout=3.0)


def nowhere(n: int) -> list[str]:
    """``n`` loopback addresses nothing listens on: connecting is refused at once."""
    return [f"127.0.0.1:{free_port()}" for _ in range(n)]


def test_all_hosts_dead_names_each_host_and_its_cause():
    hosts = nowhere(3)
    with Resources(hosts, **FAST) as rs:
        with pytest.raises(NoHostAvailable) as info:
            rs.unicast("status")
        assert list(info.value.errors) != [] and set(info.value.errors) == set(hosts)
        for host, exc in info.value.errors.items():
            assert isinstance(exc, BrokerUnavailable) and not exc.sent
            assert host in str(info.value)
        assert "refused" in str(info.value).lower()
        assert set(rs.health.down()) == set(hosts)
        with pytest.raises(NoHostAvailable) as again:  # still dead: tried anyway, soonest first
            rs.unicast("status")
        assert set(again.value.errors) == set(hosts)


def test_dead_hosts_are_tried_soonest_first():
    clock = ManualClock()
    hosts = nowhere(2)
    with Resources(hosts, clock=clock, **FAST) as rs:
        rs.health.failed(hosts[0])
        clock.advance(0.1)
        rs.health.failed(hosts[1])
        assert rs.priority(hosts[0]) is None and rs.choice(hosts) == hosts[0]
        clock.advance(0.45)  # hosts[0] is back (0.5 s), hosts[1] not yet
        assert rs.priority(hosts[0]) == 0 and rs.priority(hosts[1]) is None
        assert rs.choice(hosts) == hosts[0]


def test_retry_limits_the_hosts_tried():
    hosts = nowhere(3)
    with Resources(hosts, retry=1, **FAST) as rs:
        with pytest.raises(NoHostAvailable) as info:
            rs.unicast("status")
        assert len(info.value.errors) == 2 and len(rs.health.down()) == 2  # one host, then one other
        assert rs.failovers == 1


def test_bad_arguments_are_config_errors():
    with Resources(nowhere(1)) as rs:
        with pytest.raises(ConfigError, match="errors must be one of"):
            rs.broadcast("status", errors="ignore")
        with pytest.raises(ConfigError, match="is not one of the hosts"):
            rs.unicast("status", hosts=["elsewhere:1"])
    with pytest.raises(ConfigError):
        Resources([])
    with pytest.raises(ConfigError, match="unknown option.*max_workers"):  # broadcasts use no threads
        Resources(nowhere(1), max_workers=3)
    with pytest.raises(ConfigError, match="unknown option.*sockettimeout"):
        Resources(nowhere(1), sockettimeout=1.0)


def test_broadcast_errors_return_shape():
    hosts = nowhere(2)
    with Resources(hosts, **FAST) as rs:
        results, errors = rs.broadcast("status", errors="return")
        assert results == {} and list(errors) == hosts
        with pytest.raises(BroadcastError) as info:
            rs.broadcast("status")
        assert info.value.results == {} and set(info.value.errors) == set(hosts)


# ---------------------------------------------------------------- real brokers


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(4, shared_data=True) as c:
        yield c
        stop_gracefully(c)


@pytest.fixture
def resources(cluster):
    with Resources(cluster.hosts, **FAST) as rs:
        yield rs


def test_unicast_and_broadcast(cluster, resources):
    assert resources.unicast("status").code == 0
    answers = resources.broadcast("status")
    assert list(answers) == cluster.hosts and all(s.code == 0 for s in answers.values())
    assert resources.unicast("namespace_exists", "/") is True
    with pytest.raises(ClientException):  # an answer: passes through, the host stays live
        resources.unicast("hql_query", "SELECT * FROM no_such_table", namespace="/")
    assert resources.health.down() == {}
    assert "4 hosts, 0 down" in repr(resources)


def test_choice_prefers_warm_pools(cluster, resources):
    warm = cluster.hosts[2]
    with resources.connection(warm):
        pass
    assert resources.priority(warm) == 1
    assert {resources.choice(cluster.hosts) for _ in range(20)} == {warm}


def test_choice_is_random_among_equals(cluster):
    with Resources(cluster.hosts, rng=random.Random(5), **FAST) as rs:
        assert {rs.choice(cluster.hosts) for _ in range(60)} == set(cluster.hosts)  # all cold: any host
        for host in cluster.hosts[:2]:
            with rs.connection(host):
                pass
        assert {rs.choice(cluster.hosts) for _ in range(60)} == set(cluster.hosts[:2])  # the warm ones only


def test_pool_timeout_is_not_a_host_failure(cluster):
    host = cluster.hosts[0]
    with Resources([host], size=1, max_overflow=0, pool_timeout=0.2, **FAST) as rs:
        with rs.connection():
            with pytest.raises(PoolTimeout):
                rs.unicast("status")
        assert rs.health.down() == {} and rs.failovers == 0
        assert rs.unicast("status").code == 0


def test_broadcast_runs_in_parallel(cluster):
    latency = 0.1
    proxies = [FaultProxy(host, latency=latency) for host in cluster.hosts]
    try:
        with Resources([p.address for p in proxies], **dict(FAST, socket_timeout=5.0)) as rs:
            rs.broadcast("status")  # connections opened
            start = time.perf_counter()
            rs.unicast("status")
            one = time.perf_counter() - start
            start = time.perf_counter()
            answers = rs.broadcast("status")
            elapsed = time.perf_counter() - start
        n = len(proxies)
        assert len(answers) == n
        assert one >= 2 * latency and elapsed >= 2 * latency
        assert elapsed < 0.6 * n * (2 * latency), f"broadcast took {elapsed:.3f} s, one call {one:.3f} s"
    finally:
        for p in proxies:
            p.close()


def test_broadcast_multiplexes_in_the_calling_thread(cluster):
    """Twelve hosts behind a round trip of 2 x 50 ms: about one round trip, and no thread is started."""
    latency = 0.05
    proxies = [FaultProxy(cluster.hosts[i % len(cluster.hosts)], latency=latency) for i in range(12)]
    try:
        with Resources([p.address for p in proxies], **dict(FAST, socket_timeout=5.0)) as rs:
            rs.broadcast("status")  # connections opened
            threads = threading.active_count()
            start = time.perf_counter()
            answers = rs.broadcast("get_tables", namespace="/")
            elapsed = time.perf_counter() - start
            assert threading.active_count() == threads
        assert len(answers) == 12
        # the namespace is opened on all twelve at once, then the call: two round trips, not 24
        assert elapsed < 12 * 2 * latency, f"{elapsed:.3f} s: the hosts were called one after another"
    finally:
        for p in proxies:
            p.close()


def test_broadcast_reports_partial_failures(cluster, resources):
    proxy = FaultProxy(cluster.hosts[0])
    try:
        with Resources([proxy.address, cluster.hosts[1]], **SHORT) as rs:
            rs.broadcast("status")
            proxy.blackhole()
            with pytest.raises(BroadcastError) as info:
                rs.broadcast("status")
            assert list(info.value.results) == [cluster.hosts[1]]
            assert isinstance(info.value.errors[proxy.address], BrokerUnavailable)
            results, errors = rs.broadcast("status", errors="return")  # the down host is skipped now
            assert list(results) == [cluster.hosts[1]] and "down after 1" in str(errors[proxy.address])
    finally:
        proxy.close()


def test_restarted_broker_stale_connections_are_replaced(cluster):
    broker = cluster[3]
    with Resources([broker.address], **FAST) as rs:
        with rs.connection() as r1, rs.connection() as r2:
            r1.status(), r2.status()
        assert rs[broker.address].idle == 2
        broker.restart()
        for _ in range(5):
            assert rs.unicast("namespace_exists", "/") is True
            assert rs.unicast("status").code == 0
        assert rs.health.down() == {}


def test_reads_fail_over_from_a_killed_broker(cluster):
    killed, live = cluster[3], cluster[0]
    with Resources([killed.address, live.address], **FAST) as rs:
        rs.broadcast("status")
        killed.kill()
        try:
            for _ in range(10):
                assert rs.unicast("namespace_exists", "/") is True
            assert list(rs.health.down()) in ([], [killed.address])
            assert rs.failovers == len(rs.health.down())  # at most one call met the dead host: it failed over
            with pytest.raises(NoHostAvailable, match="refused"):
                rs.unicast("status", hosts=[killed.address])
        finally:
            killed.start()


def test_paused_broker_costs_one_timeout_then_is_skipped_until_resumed(cluster):
    paused, live = cluster[1], cluster[2]
    clock = ManualClock()  # the backoff runs on this clock: it ends when the test says so
    with Resources([paused.address, live.address], clock=clock, **SHORT) as rs:
        rs.broadcast("status")
        paused.pause()
        try:
            start = time.perf_counter()
            for _ in range(20):
                assert rs.unicast("status").code == 0
            # at most one call waited for the 3 s socket timeout, not each of the 20 (60 s); loose for a busy machine
            assert time.perf_counter() - start < 30.0
            assert rs.health.state(paused.address).failures <= 1
        finally:
            paused.resume()
        clock.advance(0.5)  # the 0.5 s backoff ends: the next call is the paused host's trial
        rs.unicast("status", hosts=[paused.address])
        assert rs.health.down() == {}


def test_scan_and_connection(cluster, resources):
    host = cluster.hosts[0]
    resources.unicast("hql_query", "CREATE NAMESPACE restest IF NOT EXISTS", namespace="/")
    resources.unicast("hql_query", "DROP TABLE IF EXISTS t", namespace="restest")
    resources.unicast("hql_query", "CREATE TABLE t (c)", namespace="restest")
    resources.unicast("hql_query", "INSERT INTO t VALUES ('a', 'c', '1'), ('b', 'c', '2')", namespace="restest")
    cells = list(resources.scan("t", ScanSpec(), namespace="restest", host=host))
    assert [(c.key.row, c.value) for c in cells] == [("a", b"1"), ("b", b"2")]
    with resources.connection(host) as r:
        assert str(r.host) == host and r.table_exists(r.mns["restest"], "t")
    scan = resources.scan("t", namespace="restest", host=host)
    assert next(scan).key.row == "a"
    assert resources[host].in_use == 1
    scan.close()  # the consumer stops early: the scanner is closed and the connection given back
    assert resources[host].in_use == 0 and resources.health.down() == {}
