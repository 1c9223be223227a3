"""Gray failures against real local brokers: a slow replica, transient broker errors, ejection, slow start.

Slow and failing hosts come from :mod:`htcluster.faults` (a latency proxy, a
broker that answers every call with a transient error).  Shares are asserted
with generous bounds; nothing is timed.
"""
from __future__ import annotations

import random

import pytest

from htcluster import Backoff, Replicas, Resources, Shards, codes, from_url
from htcluster._policy.balance import P2CBalancer
from htcluster.errors import ClientException, ConfigError, NoHostAvailable
from htcluster.events import HostEjected
from htcluster.faults import FaultProxy, ManualClock, MisbehavingBroker
from htcluster.testing import LocalCluster
from htcluster.types import Cell, Key, ScanSpec

FAST = dict(socket_timeout=30.0, connect_timeout=5.0, backoff=Backoff(base=0.5, cap=2.0, jitter=0.0))
NS, TABLE = "gray", "t"
SPEC = ScanSpec(row_limit=1)


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(3, shared_data=True) as c:
        with Replicas(c.hosts, **FAST) as setup:
            setup.call("hql_query", f"CREATE NAMESPACE {NS} IF NOT EXISTS", namespace="/")
            setup.call("hql_query", f"DROP TABLE IF EXISTS {TABLE}", namespace=NS)
            setup.call("hql_query", f"CREATE TABLE {TABLE} (c)", namespace=NS)
            setup.call("set_cell", TABLE, Cell(Key("row", "c", ""), b"v"), namespace=NS)
        yield c


@pytest.fixture
def slow(cluster):
    with FaultProxy(cluster.hosts[2], latency=0.01) as proxy:  # +20 ms a round trip
        yield proxy


def served(routed, hosts):
    return {h: routed.pools[h].stats()["calls"] for h in hosts}


def test_p2c_sends_few_reads_to_a_slow_replica_and_never_marks_it_down(cluster, slow):
    hosts = [cluster.hosts[0], cluster.hosts[1], slow.address]
    with Replicas(hosts, balance="p2c", rng=random.Random(1), **FAST) as replicas:
        for _ in range(300):
            assert replicas.call("get_cells", TABLE, SPEC, namespace=NS)[0].value == b"v"
        calls = served(replicas, hosts)
        assert calls[slow.address] <= 30, calls  # a third would be 100; it is measured, then avoided
        stats = replicas.stats()
        assert all(s["health"]["live"] for s in stats.values())  # slow is not dead
        scores = {h: s["health"]["score"] for h, s in stats.items()}
        assert scores[slow.address] > max(scores[cluster.hosts[0]], scores[cluster.hosts[1]])
        assert stats[slow.address]["health"]["cost"] >= 0.015


def test_cached_stays_the_default_and_shows_no_score(cluster):
    with Replicas(cluster.hosts, **FAST) as replicas:
        replicas.call("status")
        health = replicas.stats()[cluster.hosts[0]]["health"]
        assert "score" not in health and health["ejected_for"] == 0.0 and health["ramp"] == 1.0


def test_the_option_reaches_every_routing_class_and_the_url(cluster):
    with Resources(cluster.hosts, balance="p2c") as rs:
        assert isinstance(rs.router.balancer, P2CBalancer)
    shards = Shards([(h, "k") for h in cluster.hosts], balance="p2c", max_ejection=0.3, slow_start=2.0)
    assert isinstance(shards.resources.router.balancer, P2CBalancer)
    assert shards.health.outliers.max_ejection == 0.3 and shards.health.outliers.slow_start == 2.0
    shards.close()
    url = f"hypertable://{','.join(cluster.hosts)}/{NS}?balance=p2c&max_ejection=0.25&slow_start=5"
    with from_url(url) as replicas:
        assert isinstance(replicas.router.balancer, P2CBalancer)
        assert replicas.health.outliers.max_ejection == 0.25
        assert replicas.call("get_cells", TABLE, SPEC)[0].value == b"v"
    with pytest.raises(ConfigError, match="cached, p2c"):
        from_url(f"hypertable://{cluster.hosts[0]}?balance=fastest")
    with pytest.raises(ConfigError, match="max_ejection"):
        Resources(cluster.hosts, max_ejection=1.5)


KNOBS = dict(decay_time=2.5, consecutive_gateway_failure=3, base_ejection_time=1.5, max_ejection_time=6.0)


def knobs_of(routed) -> tuple:
    outliers = routed.health.outliers
    return (routed.router.balancer.decay_time, outliers.consecutive_gateway_failure, outliers.base_ejection_time,
            outliers.max_ejection_time)


def test_the_p2c_and_ejection_knobs_reach_every_routing_class_the_url_and_asyncio(cluster):
    from htcluster.aio import AsyncReplicas, AsyncResources, AsyncShards

    want = tuple(KNOBS.values())
    with Resources(cluster.hosts, balance="p2c", **KNOBS) as rs:
        assert knobs_of(rs) == want
    with Replicas(cluster.hosts, balance="p2c", **KNOBS) as replicas:
        assert knobs_of(replicas) == want
    shards = Shards([(h, "k") for h in cluster.hosts], balance="p2c", **KNOBS)
    assert knobs_of(shards.resources) == want
    shards.close()
    for cls in (AsyncReplicas, AsyncResources):
        assert knobs_of(cls(cluster.hosts, balance="p2c", **KNOBS)) == want
    assert knobs_of(AsyncShards([(h, "k") for h in cluster.hosts], balance="p2c", **KNOBS).resources) == want
    query = "&".join(f"{k}={v}" for k, v in KNOBS.items())
    with from_url(f"hypertable://{','.join(cluster.hosts)}/{NS}?balance=p2c&{query}") as replicas:
        assert knobs_of(replicas) == want
        assert isinstance(replicas.health.outliers.consecutive_gateway_failure, int)
    with Replicas(cluster.hosts, balance="p2c") as replicas:  # the defaults: Finagle's and Envoy's
        assert knobs_of(replicas) == (10.0, 5, 10.0, 300.0)


@pytest.mark.parametrize("options, message", [
    (dict(balance="p2c", decay_time=0), "decay_time must be > 0 seconds"),
    (dict(balance="p2c", decay_time=float("nan")), "decay_time must be a finite number"),
    (dict(balance="p2c", decay_time="10s"), "decay_time must be a number of seconds"),
    (dict(decay_time=5.0), "tunes balance='p2c' only"),
    (dict(balance="cached", decay_time=5.0), "add balance='p2c' or drop decay_time"),
    (dict(consecutive_gateway_failure=0), "consecutive_gateway_failure must be an int >= 1"),
    (dict(consecutive_gateway_failure=2.5), "consecutive_gateway_failure must be an int >= 1"),
    (dict(consecutive_gateway_failure=True), "consecutive_gateway_failure"),
    (dict(base_ejection_time=-1), "base_ejection_time must be > 0 seconds"),
    (dict(max_ejection_time=float("inf")), "max_ejection_time must be a finite number"),
    (dict(base_ejection_time=30.0, max_ejection_time=20.0), "must be >= base_ejection_time"),
])
def test_bad_knobs_are_config_errors_that_say_what_to_do(cluster, options, message):
    from htcluster.aio import AsyncReplicas

    for cls in (Resources, Replicas, AsyncReplicas):
        with pytest.raises(ConfigError, match=message):
            cls(cluster.hosts, **options)
    with pytest.raises(ConfigError, match=message):
        Shards([(h, "k") for h in cluster.hosts], **options)


def test_consecutive_gateway_failure_and_the_ejection_times_take_effect(cluster):
    clock = ManualClock()
    with MisbehavingBroker("error") as bad:
        hosts = [bad.address, cluster.hosts[0]]
        with Resources(hosts, clock=clock, rng=random.Random(2), consecutive_gateway_failure=2,
                       base_ejection_time=1.0, max_ejection_time=1.5, **FAST) as rs:
            for _ in range(40):
                assert rs.unicast("status") is not None
            assert bad.requests == 2  # two transient errors in a row ejected it (not five)
            assert 0.8 <= rs.stats()[bad.address]["health"]["ejected_for"] <= 1.0
            clock.advance(1.01)  # the first ejection (1 s, less jitter) is over
            for _ in range(40):
                rs.unicast("status")
            assert bad.requests == 4  # back, and out again after two more
            assert rs.stats()[bad.address]["health"]["ejected_for"] <= 1.5  # doubled, capped by max_ejection_time


def test_a_transient_error_fails_over_and_a_semantic_one_is_final(cluster):
    with MisbehavingBroker("error", code=codes.REQUEST_TIMEOUT) as bad:
        with Replicas([bad.address, cluster.hosts[0]], **FAST) as replicas:
            for _ in range(4):  # reads go to either; those on bad fail over to the good one
                assert replicas.call("get_cells", TABLE, SPEC, namespace=NS)[0].value == b"v"
            # a stamped write goes to bad first (write order), gets REQUEST_TIMEOUT, fails over
            replicas.call("set_cell", TABLE, Cell(Key("row2", "c", ""), b"w"), namespace=NS)
            assert replicas.failovers >= 1 and bad.requests >= 1
            assert replicas.health.state(bad.address).live  # it answered: not down
    with MisbehavingBroker("error", code=codes.COMM_BROKEN_CONNECTION) as bad:
        with Resources([bad.address, cluster.hosts[0]], **FAST) as rs:
            assert rs.unicast("status", hosts=[bad.address, cluster.hosts[0]]) is not None
            with pytest.raises(ClientException) as caught:  # not idempotent: the answer is final
                rs.unicast("set_cell", TABLE, Cell(Key("r", "c", ""), b"x"), namespace=NS, hosts=[bad.address])
            assert caught.value.code == codes.COMM_BROKEN_CONNECTION
    with MisbehavingBroker("error", code=codes.TABLE_NOT_FOUND) as bad:
        with Resources([bad.address], **FAST) as rs:
            with pytest.raises(ClientException) as caught:
                rs.unicast("get_cells", TABLE, SPEC, namespace=NS)
            assert caught.value.code == codes.TABLE_NOT_FOUND and rs.failovers == 0


def test_the_last_transient_answer_is_raised_when_no_host_is_left(cluster):
    with MisbehavingBroker("error") as one, MisbehavingBroker("error") as two:
        with Resources([one.address, two.address], **FAST) as rs:
            with pytest.raises(ClientException) as caught:
                rs.unicast("status")
            assert caught.value.code == codes.REQUEST_TIMEOUT
            assert one.requests >= 1 and two.requests >= 1  # both were asked


def test_a_host_whose_answers_keep_failing_is_ejected_within_the_cap(cluster):
    with MisbehavingBroker("error") as bad:
        hosts = [bad.address, cluster.hosts[0], cluster.hosts[1]]
        with Resources(hosts, rng=random.Random(2), **FAST) as rs:
            ejected = []
            rs.listeners.register(lambda e: ejected.append(e) if isinstance(e, HostEjected) else None)
            for _ in range(60):
                assert rs.unicast("status") is not None  # every one answered, failing over when needed
            asked = bad.requests
            assert asked == 5, asked  # five transient errors in a row eject it
            for _ in range(30):
                rs.unicast("status")
            assert bad.requests == asked  # ejected: not asked again for now
            assert rs.stats()[bad.address]["health"]["ejected_for"] > 0
            [event] = ejected
            assert event.host == bad.address and event.ejected_for > 0 and event.error.code == codes.REQUEST_TIMEOUT
            assert rs.health.state(bad.address).live  # ejected is not dead
    with MisbehavingBroker("error") as one, MisbehavingBroker("error") as two:
        with Resources([one.address, two.address], max_ejection=0.5, **FAST) as rs:
            for _ in range(6):
                with pytest.raises(ClientException):
                    rs.unicast("status")
            # both qualify, but half of two hosts is one: the other keeps serving (panic mode)
            assert len(rs.health.outliers.serving(rs.hosts, random.Random(1))) == 1


def test_a_host_back_from_a_probe_ramps_up(cluster):
    clock = ManualClock()
    proxy = FaultProxy(cluster.hosts[1])
    port = proxy.port
    hosts = [cluster.hosts[0], proxy.address]
    try:
        with Resources(hosts, clock=clock, slow_start=10.0, rng=random.Random(3), **FAST) as rs:
            proxy.close()
            with pytest.raises(NoHostAvailable):
                rs.unicast("status", hosts=[proxy.address])
            assert not rs.health.state(proxy.address).live
            proxy = FaultProxy(cluster.hosts[1], port=port)
            clock.advance(5.0)  # its backoff is over: the next call probes it
            before = served(rs, hosts)
            for _ in range(200):
                rs.unicast("status")
            first = served(rs, hosts)[proxy.address] - before[proxy.address]
            assert rs.health.state(proxy.address).live
            assert 2 <= first <= 50, first  # about 10 % of a half share at first, not 100
            clock.advance(10.0)  # the window is over: its full share again
            before = served(rs, hosts)
            for _ in range(200):
                rs.unicast("status")
            second = served(rs, hosts)[proxy.address] - before[proxy.address]
            assert second >= 60, second
    finally:
        proxy.close()


def test_a_host_added_mid_traffic_ramps_up_like_one_back_from_a_probe(cluster):
    clock = ManualClock()
    old, new = cluster.hosts[:2], cluster.hosts[2]
    with Replicas(old, clock=clock, slow_start=10.0, rng=random.Random(5), **FAST) as replicas:
        for _ in range(50):  # traffic before the change
            replicas.call("get_cells", TABLE, SPEC, namespace=NS)
        replicas.add(new)
        assert replicas.stats()[new]["health"]["ramp"] < 0.2

        def share() -> int:
            before = served(replicas, [new])[new]
            for _ in range(300):
                assert replicas.call("get_cells", TABLE, SPEC, namespace=NS)[0].value == b"v"
            return served(replicas, [new])[new] - before

        first = share()  # about 10 % of a third at first, not a third (100)
        clock.advance(6.0)
        second = share()  # about 60 % of it
        clock.advance(6.0)
        third = share()  # the window is over: its full share
        assert first <= 45, (first, second, third)
        assert first < second < third and third >= 60, (first, second, third)
        assert replicas.stats()[new]["health"]["ramp"] == 1.0
    with Replicas(old, slow_start=10.0, **FAST) as replicas:  # set_hosts warms the new hosts too
        replicas.set_hosts([*old, new])
        assert replicas.stats()[new]["health"]["ramp"] < 0.2
        assert all(replicas.stats()[h]["health"]["ramp"] == 1.0 for h in old)


def test_the_flask_extension_takes_the_options(cluster):
    from flask import Flask

    from htcluster.flask_ext import Hypertable

    ext = Hypertable()
    app = Flask("gray")
    app.config.update(HYPERTABLE_HOSTS=cluster.hosts, HYPERTABLE_NAMESPACE=NS,
                      HYPERTABLE_OPTIONS={"balance": "p2c", "max_ejection": 0.4, "slow_start": 3.0, **KNOBS})
    ext.init_app(app)
    with app.app_context():
        replicas = ext.cluster
        assert isinstance(replicas, Replicas) and isinstance(replicas.router.balancer, P2CBalancer)
        assert (replicas.health.outliers.max_ejection, replicas.health.outliers.slow_start) == (0.4, 3.0)
        assert knobs_of(replicas) == tuple(KNOBS.values())
        assert replicas.call("get_cells", TABLE, SPEC, namespace=NS)[0].value == b"v"
    url_app = Flask("gray-url")
    url_app.config["HYPERTABLE_URL"] = f"hypertable://{','.join(cluster.hosts)}/{NS}?balance=p2c"
    url_ext = Hypertable(url_app)
    with url_app.app_context():
        assert isinstance(url_ext.cluster.router.balancer, P2CBalancer)
    bad = Flask("gray-bad")
    bad.config.update(HYPERTABLE_HOSTS=cluster.hosts, HYPERTABLE_OPTIONS={"balance": "fastest"})
    with pytest.raises(ConfigError, match="HYPERTABLE_OPTIONS.*cached, p2c"):
        Hypertable(bad)  # checked at init_app, naming the key
    bad_knob = Flask("gray-bad-knob")
    bad_knob.config.update(HYPERTABLE_HOSTS=cluster.hosts,
                           HYPERTABLE_OPTIONS={"balance": "p2c", "base_ejection_time": 9.0, "max_ejection_time": 3.0})
    with pytest.raises(ConfigError, match="HYPERTABLE_OPTIONS.*max_ejection_time"):
        Hypertable(bad_knob)


def test_a_hedged_read_that_gets_a_transient_error_moves_on(cluster):
    with MisbehavingBroker("error", code=codes.COMM_NOT_CONNECTED) as bad:
        with Replicas([bad.address, cluster.hosts[0]], hedge=0.05, rng=random.Random(4), **FAST) as replicas:
            for _ in range(6):
                assert replicas.call("get_cells", TABLE, SPEC, namespace=NS)[0].value == b"v"
            assert bad.requests >= 1 and replicas.failovers >= 1


def test_a_replicas_scan_resumes_elsewhere_after_a_transient_error(cluster):
    with MisbehavingBroker("error") as bad:
        with Replicas([bad.address, cluster.hosts[0]], **FAST) as replicas:
            cells = list(replicas.scan(TABLE, SPEC, namespace=NS, host=bad.address))
            assert [c.value for c in cells] == [b"v"] and bad.requests >= 1
    with MisbehavingBroker("error", code=codes.TABLE_NOT_FOUND) as bad:
        with Replicas([bad.address, cluster.hosts[0]], **FAST) as replicas:
            with pytest.raises(ClientException):
                list(replicas.scan(TABLE, SPEC, namespace=NS, host=bad.address))
