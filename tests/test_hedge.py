"""Hedged requests: the first answer wins, the loser's connection is closed, hedges are capped."""
from __future__ import annotations

import math
import time

import pytest

from htcluster import Replicas, Resources
from htcluster.errors import ClientException, ConfigError
from htcluster.events import ConnectionClosed, Hedged
from htcluster import Backoff
from htcluster.testing import FaultProxy, LocalCluster, ManualClock
from htcluster.types import Cell, Key, ScanSpec

#: Seconds added per direction by the slow host's proxy: a round trip there costs at least 2 s.
SLOW = 1.0
FAST = dict(socket_timeout=30.0, connect_timeout=5.0, backoff=Backoff(base=0.5, factor=1.0, cap=0.5, jitter=0.0))
NS = "hedgetest"


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(2, shared_data=False) as c:
        with Resources(c.hosts, socket_timeout=60.0) as rs:
            rs.broadcast("hql_query", f"CREATE NAMESPACE {NS} IF NOT EXISTS", namespace="/")
            rs.broadcast("hql_query", "CREATE TABLE t (c)", namespace=NS)
        yield c


@pytest.fixture
def slow(cluster):
    proxy = FaultProxy(cluster.hosts[0], latency=SLOW)
    yield proxy
    proxy.close()


def recorder(rs: Resources, kind: type) -> list:
    seen: list = []
    rs.listeners.register(lambda e: seen.append(e) if isinstance(e, kind) else None)
    return seen


def test_the_first_answer_wins_and_the_losers_connection_is_closed(cluster, slow):
    fast = cluster.hosts[1]
    with Replicas([slow.address, fast], hedge=0.05, **FAST) as replicas:
        hedges, closed = recorder(replicas, Hedged), recorder(replicas, ConnectionClosed)
        start = time.monotonic()
        status = replicas.call("status", write=True)  # the slow host first, in order
        took = time.monotonic() - start
        assert status.code == 0
        assert took < 2 * SLOW  # the hedge answered; the slow host could not have (>= 2 s)
        assert [(h.host, h.method, h.after) for h in hedges] == [(fast, "status", 0.05)]
        assert [c.host for c in closed if c.reason == "failed"] == [slow.address]  # tainted, not pooled
        assert replicas[slow.address].idle == 0 and replicas[slow.address].in_use == 0
        assert replicas[fast].idle == 1
        assert replicas.health.down() == {}  # slow is not dead ...
        assert replicas.health.lagging(slow.address)  # ... but ranks last for a while
        assert replicas.stats()[slow.address]["health"]["lagging"] is True
        replicas.call("status", write=True)  # so the next call goes to the other host first: no hedge
        assert len(hedges) == 1 and replicas[fast].stats()["calls"] == 2
        assert replicas.budget_stats()["hedges"] == {fast: 1}


def test_without_hedging_the_slow_host_is_waited_for(cluster, slow):
    with Replicas([slow.address, cluster.hosts[1]], **FAST) as replicas:
        hedges = recorder(replicas, Hedged)
        start = time.monotonic()
        replicas.call("status", write=True)
        assert time.monotonic() - start >= 2 * SLOW and hedges == []
        replicas.call("status", write=True, hedge=0.05)  # per call
        assert len(hedges) == 1


def test_stamped_writes_are_hedged_other_writes_are_not(cluster, slow):
    fast = cluster.hosts[1]
    with Replicas([slow.address, fast], hedge=0.05, **FAST) as replicas:
        hedges = recorder(replicas, Hedged)
        start = time.monotonic()
        replicas.call("set_cell", "t", Cell(Key("stamped", "c", ""), b"v"), namespace=NS)
        assert time.monotonic() - start < 2 * SLOW and len(hedges) == 1
        replicas.health.succeeded(slow.address)  # end its lag: the next write goes to it first again
        start = time.monotonic()
        # a schema change cannot carry timestamps (an HQL INSERT can: Replicas sends it as stamped set_cells)
        replicas.call("hql_query", "DROP TABLE IF EXISTS never_made", namespace=NS)
        assert time.monotonic() - start >= 2 * SLOW and len(hedges) == 1  # waited, never sent twice


def test_a_broker_error_is_an_answer_too(cluster, slow):
    with Replicas([slow.address, cluster.hosts[1]], hedge=0.05, **FAST) as replicas:
        with pytest.raises(ClientException):
            replicas.call("get_cells", "no_such_table", ScanSpec(), namespace=NS, write=True)
        assert replicas.health.down() == {}


def test_a_paused_primary_costs_a_stamped_write_about_the_hedge_delay(cluster):
    with Replicas(cluster.hosts, hedge=0.05, **dict(FAST, socket_timeout=10.0)) as replicas:
        replicas.call("status", write=True)
        cluster.pause(0)
        try:
            start = time.monotonic()
            replicas.call("set_cell", "t", Cell(Key("paused", "c", ""), b"v"), namespace=NS)
            assert time.monotonic() - start < 5.0  # not the 10 s socket timeout
        finally:
            cluster.resume(0)
        assert replicas.budget_stats()["hedges"] == {cluster.hosts[1]: 1}


def test_hedges_are_capped(cluster, slow):
    clock = ManualClock()  # lags and budgets run on it: each call advances it past the 0.5 s lag
    fast = cluster.hosts[1]
    with Replicas([slow.address, fast], clock=clock, hedge=0.01, hedge_ratio=0.0, **FAST) as replicas:
        hedges = recorder(replicas, Hedged)
        for _ in range(12):
            replicas.call("status", write=True)
            clock.advance(0.6)
        # hedge_ratio 0: only the floor of 1 hedge per second over the 10 s window
        assert len(hedges) == 10
        stats = replicas.budget_stats()
        assert stats["hedge"]["granted"] == 10 and stats["hedge"]["refused"] == 2
        assert stats["retry"]["granted"] == 10  # each hedge also drew on the retry budget


@pytest.mark.parametrize("value", [math.nan, math.inf, -0.05, True, "0.05"])
def test_hedge_options_are_validated(value):
    with pytest.raises(ConfigError, match="hedge"):
        Resources("127.0.0.1:1", hedge=value)
    with pytest.raises(ConfigError, match="hedge_ratio"):
        Replicas("127.0.0.1:1", hedge_ratio=value)
    with Resources("127.0.0.1:1") as rs:
        with pytest.raises(ConfigError, match="hedge"):
            rs.unicast("status", hedge=value)
    with pytest.raises(ConfigError, match="hedge_ratio"):
        Resources("127.0.0.1:1", hedge_ratio=1.5)


def test_a_hedge_never_goes_to_a_dead_host(cluster, slow):
    clock = ManualClock()  # the dead host's backoff never ends
    dead = cluster.hosts[1]
    with Replicas([slow.address, dead], clock=clock, hedge=0.05, **FAST) as replicas:
        replicas.health.failed(dead)
        hedges = recorder(replicas, Hedged)
        start = time.monotonic()
        assert replicas.call("status", write=True).code == 0  # waited for the slow host
        assert time.monotonic() - start >= 2 * SLOW and hedges == []
        assert replicas[dead].stats()["opened"] == 0  # not even probed
        assert replicas.budget_stats()["retry"]["granted"] == 0


def test_shards_take_the_options(cluster):
    from htcluster import Shards

    shards = Shards([(cluster.hosts[0], "a"), (cluster.hosts[1], "a")],
                    **dict(hedge=0.05, probe_timeout=0.1, hedge_ratio=0.5, **FAST))
    with shards:
        assert (shards.resources.hedge, shards.resources.probe_timeout) == (0.05, 0.1)
        assert shards.unicast("a", "status").code == 0
    with pytest.raises(ConfigError, match="hedge"):
        Shards([(cluster.hosts[0], "a")], **dict(hedge=-1))


def test_many_threads_hedging_leave_every_pool_consistent(cluster):
    import threading

    proxy = FaultProxy(cluster.hosts[0], latency=0.05)
    try:
        with Resources([proxy.address, *cluster.hosts], hedge=0.02, hedge_ratio=0.5, size=2, max_overflow=2,
                       **FAST) as rs:
            hedges = recorder(rs, Hedged)
            failures: list[BaseException] = []

            def work() -> None:
                try:
                    for _ in range(40):
                        assert rs.unicast("namespace_exists", NS) is True
                except BaseException as exc:  # reported below
                    failures.append(exc)

            threads = [threading.Thread(target=work) for _ in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            assert not failures, failures[:3]
            assert hedges  # the slow host was hedged at least once
            for host, pool in rs.items():
                stats = pool.stats()
                assert stats["in_use"] == 0 and stats["opened"] - stats["closed"] == stats["idle"], (host, stats)
                leases = [pool.acquire() for _ in range(stats["idle"])]  # every idle connection, warm first
                try:
                    assert all(lease.reused and lease.resource.reusable for lease in leases)  # none mid-reply
                finally:
                    for lease in leases:
                        lease.release()
            assert rs.health.down() == {}
    finally:
        proxy.close()
