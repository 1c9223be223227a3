"""Balanced reads: one thread's reads spread over every replica; busy hosts rank below free ones."""
from __future__ import annotations

import random

import pytest

from htcluster._policy.plans import Plan

from htcluster import Replicas, Resources
from htcluster import Backoff
from htcluster.testing import LocalCluster

FAST = dict(socket_timeout=30.0, connect_timeout=5.0, backoff=Backoff(base=0.5, cap=2.0, jitter=0.0))


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(3, shared_data=True) as c:
        yield c


def test_a_single_thread_spreads_its_reads_over_every_replica(cluster):
    with Replicas(cluster.hosts, rng=random.Random(7), **FAST) as replicas:
        for _ in range(3000):
            replicas.call("namespace_exists", "/")
        calls = {h: replicas[h].stats()["calls"] for h in cluster.hosts}
        assert sum(calls.values()) == 3000
        assert all(800 <= n <= 1200 for n in calls.values()), calls  # a fair share: 1,000 each
        assert all(replicas[h].stats()["opened"] == 1 for h in cluster.hosts)  # one warm connection each


def test_writes_still_go_to_the_first_replica(cluster):
    with Replicas(cluster.hosts, **FAST) as replicas:
        for _ in range(20):
            replicas.call("status", write=True)
        assert replicas[cluster.hosts[0]].stats()["calls"] == 20


def test_busy_hosts_rank_below_free_ones(cluster):
    with Resources(cluster.hosts, rng=random.Random(3), **FAST) as rs:
        busy = cluster.hosts[0]
        rs.broadcast("status")  # every host has one idle connection: all rank 1
        assert [rs.rank(h) for h in cluster.hosts] == [1, 1, 1]
        with rs[busy].connection():  # its only connection is in use: a call there would open another
            assert rs.rank(busy) == 0
            chosen = {rs.router.claim(Plan(cluster.hosts), ()) for _ in range(60)}
            assert chosen == set(cluster.hosts[1:])
        assert rs.rank(busy) == 1
        # lupyne's bias stays in priority()/choice(): the idle count, warm hosts only
        assert rs.priority(busy) == 1


def test_a_lagging_host_comes_last(cluster):
    with Resources(cluster.hosts, rng=random.Random(3), **FAST) as rs:
        lagging = cluster.hosts[1]
        rs.health.lagged(lagging)
        assert {rs.router.claim(Plan(cluster.hosts), ()) for _ in range(60)} == {cluster.hosts[0], cluster.hosts[2]}
        assert rs.router.claim(Plan(cluster.hosts), (cluster.hosts[0], cluster.hosts[2])) == lagging
        assert rs.router.claim(Plan([lagging, cluster.hosts[2]], ordered=True), ()) == cluster.hosts[2]
        rs.health.succeeded(lagging)  # an answer ends the lag
        assert rs.router.claim(Plan([lagging, cluster.hosts[2]], ordered=True), ()) == lagging
