"""Probes, not user calls, bring failed hosts back: a paused broker costs user calls one timeout, once."""
from __future__ import annotations

import math
import time

import pytest

from htcluster import Replicas, Resources
from htcluster.errors import BrokerUnavailable, ConfigError
from htcluster.events import CallStarted, HostDown
from htcluster import Backoff
from htcluster.testing import LocalCluster, ManualClock
from htcluster.types import Cell, Key

#: A socket timeout that is what the first failure costs (long beside the 0.25 s probe, so that a loaded
#: machine cannot blur the two); a short, constant backoff so that probes come often.
SHORT = dict(socket_timeout=3.0, connect_timeout=5.0, probe_timeout=0.25,
             backoff=Backoff(base=0.2, factor=1.0, cap=0.2, jitter=0.0))


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(3, shared_data=False) as c:
        with Resources(c.hosts, socket_timeout=60.0) as rs:
            rs.broadcast("hql_query", "CREATE NAMESPACE probetest IF NOT EXISTS", namespace="/")
            rs.broadcast("hql_query", "CREATE TABLE t (c)", namespace="probetest")
        yield c


def user_calls(rs: Resources) -> dict[str, int]:
    """Count, per host, the user calls that started there (probes are not calls)."""
    counts: dict[str, int] = {}

    def on_event(event: object) -> None:
        if isinstance(event, CallStarted):
            counts[event.host] = counts.get(event.host, 0) + 1

    rs.listeners.register(on_event)
    return counts


def test_a_paused_broker_gets_no_user_call_after_its_first_failure_until_a_probe_answers(cluster):
    paused, live = cluster[0], cluster[1]
    with Resources([paused.address, live.address], **SHORT) as rs:
        rs.broadcast("status")  # both warm
        counts = user_calls(rs)
        downs = []
        rs.listeners.register(lambda e: downs.append(e) if isinstance(e, HostDown) else None)
        paused.pause()
        try:
            slow = 0
            end = time.monotonic() + 5.0  # the first failure (3 s), then backoffs of 0.2 s: many probes
            while time.monotonic() < end:
                start = time.monotonic()
                assert rs.unicast("namespace_exists", "probetest") is True
                slow += time.monotonic() - start >= 2.5
            assert counts.get(paused.address, 0) == 1  # the first failure only: probes took the others
            assert slow <= 1  # one call waited for the 3 s socket timeout, no other
            assert len(downs) >= 3  # the first failure, then failed probes
            assert "probe" in str(rs.health.state(paused.address).error)
        finally:
            paused.resume()
        before = counts.get(paused.address, 0)
        deadline = time.monotonic() + 30
        while rs.health.state(paused.address).failures and time.monotonic() < deadline:
            rs.unicast("namespace_exists", "probetest")  # some call claims it after its backoff: a probe answers
            time.sleep(0.01)
        assert rs.health.down() == {}
        assert rs.unicast("namespace_exists", "probetest", hosts=[paused.address]) is True
        assert counts[paused.address] > before  # user calls reach it again


def test_a_paused_primary_costs_replicas_writes_one_timeout_then_only_probes(cluster):
    primary, second = cluster[0], cluster[2]
    with Replicas([primary.address, second.address], **SHORT) as replicas:
        replicas.call("status", write=True)
        counts = user_calls(replicas)
        primary.pause()
        try:
            gaps = []
            end = time.monotonic() + 4.5
            i = 0
            while time.monotonic() < end:
                start = time.monotonic()
                replicas.call("set_cell", "t", Cell(Key(f"r{i}", "c", ""), b"v"), namespace="probetest")
                gaps.append(time.monotonic() - start)
                i += 1
            assert counts.get(primary.address, 0) == 1
            assert sum(g >= 2.5 for g in gaps) == 1  # the first write on the paused primary only
            assert max(sorted(gaps)[:-1]) < 2.5  # the others: at most a probe (0.25 s) each
        finally:
            primary.resume()


def test_a_broadcast_probes_hosts_whose_backoff_ended_all_at_once(cluster):
    clock = ManualClock()
    with Resources(cluster.hosts, clock=clock, **dict(SHORT, socket_timeout=30.0)) as rs:
        for host in cluster.hosts[:2]:
            rs.health.failed(host, BrokerUnavailable("marked by the test", host=host))
        counts = user_calls(rs)
        results, errors = rs.broadcast("status", errors="return")
        assert list(results) == [cluster.hosts[2]] and set(errors) == set(cluster.hosts[:2])  # in backoff
        clock.advance(0.25)
        cluster.pause(1)
        try:
            start = time.monotonic()
            results, errors = rs.broadcast("status", errors="return")
            took = time.monotonic() - start
        finally:
            cluster.resume(1)
        assert sorted(results) == sorted([cluster.hosts[0], cluster.hosts[2]])  # the probe of host 0 answered
        assert list(errors) == [cluster.hosts[1]] and "probe" in str(errors[cluster.hosts[1]])
        assert took < 10.0  # the paused host cost a probe (0.25 s), not the 30 s socket timeout
        assert counts.get(cluster.hosts[1], 0) == 0  # no user call went to it
        assert rs.health.state(cluster.hosts[0]).live and rs.health.state(cluster.hosts[1]).failures == 2


def test_router_probe_verdicts(cluster):
    with Resources(cluster.hosts + ["127.0.0.1:1"], **SHORT) as rs:
        verdicts = rs.router.probe([*cluster.hosts, "127.0.0.1:1"])
        assert all(verdicts[h] is None for h in cluster.hosts)
        refused = verdicts["127.0.0.1:1"]
        assert isinstance(refused, BrokerUnavailable) and not refused.sent and "probe" in str(refused)
        assert all(rs[h].idle == 1 for h in cluster.hosts)  # a probe connection that answered is kept, warm
        assert all(rs[h].stats()["calls"] == 0 for h in cluster.hosts)  # probes are not calls


@pytest.mark.parametrize("value", [math.nan, math.inf, -0.1, 0, True, "0.2"])
def test_probe_timeout_is_validated(value):
    with pytest.raises(ConfigError, match="probe_timeout"):
        Resources("127.0.0.1:1", probe_timeout=value)
    with pytest.raises(ConfigError, match="probe_timeout"):
        Replicas("127.0.0.1:1", probe_timeout=value)


def test_a_host_revived_by_a_probe_keeps_its_strikes_until_a_call_succeeds():
    from htcluster import HostHealth

    clock = ManualClock()
    health = HostHealth(["h:1"], backoff=Backoff(base=1.0, factor=2.0, cap=30.0, jitter=0.0), clock=clock)
    assert health.failed("h:1") == 1.0
    clock.advance(1.0)
    assert health.claim("h:1") and health.is_trial("h:1")
    health.succeeded("h:1", probe=True)  # the probe answered: calls may go there again ...
    assert health.state("h:1").live and health.usable("h:1") and not health.is_trial("h:1")
    assert health.failed("h:1") == 2.0  # ... but a call failing before any succeeds backs off further
    clock.advance(2.0)
    health.claim("h:1")
    health.succeeded("h:1", probe=True)
    health.succeeded("h:1")  # a call answered: the strikes are gone
    assert health.failed("h:1") == 1.0
