"""Shards: smallest covering host sets, rendezvous placement, and routing over real brokers."""
from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brokertest import stop_gracefully
from htcluster import Shards
from htcluster.errors import BroadcastError, BrokerUnavailable, ConfigError
from htcluster import Backoff
from htcluster._policy.cover import EXACT_COVER_LIMIT, greedy_cover
from htcluster.testing import FaultProxy, ManualClock
from htcluster.types import Cell, Key, ScanSpec

HOSTS = [f"h{i}:1" for i in range(8)]


def brute_force_minimum(mapping: dict[str, set[str]], keys: list[str]) -> int:
    hosts = sorted(set().union(*(mapping[k] for k in keys)))
    for size in range(1, len(hosts) + 1):
        for combo in itertools.combinations(hosts, size):
            if all(mapping[k] & set(combo) for k in keys):
                return size
    raise AssertionError("no cover")


mappings = st.dictionaries(
    keys=st.sampled_from([f"k{i}" for i in range(10)]),
    values=st.sets(st.sampled_from(HOSTS), min_size=1, max_size=4),
    min_size=1,
)


@settings(max_examples=150, deadline=None)
@given(mapping=mappings, data=st.data())
def test_cover_is_a_smallest_cover(mapping, data):
    keys = data.draw(st.lists(st.sampled_from(sorted(mapping)), min_size=1, unique=True))
    shards = Shards((host, key) for key, hosts in mapping.items() for host in hosts)
    chosen = shards.cover(keys)
    assert len(chosen) == len(set(chosen))
    assert all(mapping[k] & set(chosen) for k in keys), "every key is served"
    assert len(chosen) == brute_force_minimum(mapping, keys)


@settings(max_examples=100, deadline=None)
@given(needs=st.lists(st.sets(st.integers(0, 19), min_size=1, max_size=5), min_size=1, max_size=12))
def test_greedy_cover_covers_within_its_bound(needs):
    """Above EXACT_COVER_LIMIT hosts the greedy cover is used: it covers, within ln(k)+1 of the minimum."""
    candidates = sorted({f"h{i}" for hs in needs for i in hs})
    masks = {h: sum(1 << j for j, hs in enumerate(needs) if int(h[1:]) in hs) for h in candidates}
    rank = {h: (True, 0, 0.0) for h in candidates}
    chosen = greedy_cover(candidates, masks, (1 << len(needs)) - 1, rank)
    assert all(any(int(h[1:]) in hs for h in chosen) for hs in needs)
    if len(candidates) <= 14:
        mapping = {str(j): {f"h{i}" for i in hs} for j, hs in enumerate(needs)}
        best = brute_force_minimum(mapping, list(mapping))
        assert len(chosen) <= best * (math.log(len(needs)) + 1)


def test_many_hosts_use_thegreedy_cover():
    n = EXACT_COVER_LIMIT + 8
    shards = Shards([(f"h{i}:1", f"k{i}") for i in range(n)] + [("h0:1", f"k{i}") for i in range(1, n, 2)])
    chosen = shards.cover(shards)
    assert "h0:1" in chosen and len(chosen) == n // 2  # h0 (k0 and the odd keys), then each even key's host


def test_cover_prefers_live_hosts_then_the_soonest_back():
    clock = ManualClock()
    shards = Shards([("all:1", "a"), ("all:1", "b"), ("one:1", "a"), ("two:1", "b")],
                    **dict(clock=clock, backoff=Backoff(base=1.0, jitter=0.0)))
    health = shards.resources.health
    assert shards.cover(["a", "b"]) == ["all:1"]
    health.failed("all:1")
    assert sorted(shards.cover(["a", "b"])) == ["one:1", "two:1"]
    clock.advance(0.5)
    health.failed("one:1")  # a has dead hosts only: all:1 comes back first; b keeps its live host
    assert sorted(shards.cover(["a", "b"])) == ["all:1", "two:1"]
    health.succeeded("all:1")
    clock.advance(0.2)
    health.failed("all:1")  # now one:1 comes back first: it serves a, two:1 serves b
    assert sorted(shards.cover(["a", "b"])) == ["one:1", "two:1"]


def test_construction_shapes():
    shards = Shards([("ht1", "eu"), ("ht2:15867", "us"), ("ht3:15867", "eu"), ("ht3:15867", "us"),
                     ("ht1:15867", "de")])
    assert dict(shards) == {"eu": {"ht1:15867", "ht3:15867"}, "us": {"ht2:15867", "ht3:15867"}, "de": {"ht1:15867"}}
    assert Shards({"ht1": ["eu", "de"], "ht2:15867": ["us"], "ht3:15867": ["eu", "us"]}) == shards
    assert sorted(shards.pools) == ["ht1:15867", "ht2:15867", "ht3:15867"]
    assert shards.cover(["eu", "us"]) == ["ht3:15867"]
    assert shards.cover([]) == []
    with pytest.raises(KeyError, match="unknown shard key 'asia'"):
        shards.cover(["asia"])
    with pytest.raises(ConfigError):
        Shards([])
    with pytest.raises(ConfigError):
        Shards([("ht1:0", "eu")])
    with pytest.raises(ConfigError, match=r"as a list, e.g. \{'ht1': \['eu'\]\}"):
        Shards({"ht1": "eu"})  # would otherwise be the keys 'e' and 'u'
    for item in ("ht1", ("ht1", "eu", "us"), 7):
        with pytest.raises(ConfigError, match="must be \\(host, key\\) pairs"):
            Shards([item])


def test_locate_moves_about_one_nth_of_keys_to_the_new_shard():
    rows = [f"row{i:05d}" for i in range(10_000)]
    before = Shards([(f"h{i}:1", f"s{i}") for i in range(4)])
    after = Shards([(f"h{i}:1", f"s{i}") for i in range(5)])
    placed = {row: before.locate(row) for row in rows}
    counts = {key: sum(1 for v in placed.values() if v == key) for key in before}
    assert all(2000 < c < 3000 for c in counts.values()), counts  # balanced
    moved = [row for row in rows if after.locate(row) != placed[row]]
    assert all(after.locate(row) == "s4" for row in moved), "keys only move to the new shard"
    assert 0.16 < len(moved) / len(rows) < 0.24  # ~1/5


def test_locate_is_stable_across_processes():
    rows = [f"r{i}" for i in range(50)] + ["é", ""]
    keys = ["s1", ("eu", 1), b"raw"]
    here = [Shards([(f"h{i}:1", k) for i, k in enumerate(keys)]).locate(r) for r in rows]
    code = ("from htcluster import Shards; "
            f"s = Shards([(f'h{{i}}:1', k) for i, k in enumerate({keys!r})]); "
            f"print([s.locate(r) for r in {rows!r}])")
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.stdout.strip() == str(here)


def test_shard_keys_without_a_stable_encoding_are_refused():
    with pytest.raises(ConfigError, match="frozenset"):
        Shards([("h1:1", frozenset({"a", "b"}))])


# ---------------------------------------------------------------- real brokers


@pytest.fixture(scope="module")
def cluster():
    from htcluster.testing import LocalCluster
    with LocalCluster(3, shared_data=False) as c:
        yield c
        stop_gracefully(c)


@pytest.fixture
def shards(cluster):
    a, b, c = cluster.hosts
    s = Shards([(a, "eu"), (b, "us"), (c, "eu"), (c, "us")], **dict(socket_timeout=5.0, backoff=0.2))
    for host in cluster.hosts:  # the same namespace and table on each separate cluster
        s.resources.unicast("hql_query", "CREATE NAMESPACE shardtest IF NOT EXISTS", namespace="/", hosts=[host])
        s.resources.unicast("hql_query", "DROP TABLE IF EXISTS t", namespace="shardtest", hosts=[host])
        s.resources.unicast("hql_query", "CREATE TABLE t (c)", namespace="shardtest", hosts=[host])
    yield s
    s.close()


def test_routing_over_real_brokers(cluster, shards):
    a, b, c = cluster.hosts
    shards.broadcast("eu", "set_cells", "t", [Cell(Key("r-eu", "c", ""), b"1")], namespace="shardtest")
    results = shards.multicast(["eu", "us"], "get_cells", "t", ScanSpec(), namespace="shardtest")
    assert list(results) == [c]  # c alone serves both keys
    assert [cell.key.row for cell in results[c]] == ["r-eu"]
    by_host = shards.broadcast("us", "get_cells", "t", ScanSpec(), namespace="shardtest")
    assert by_host == {b: [], c: by_host[c]} and len(by_host[c]) == 1
    assert shards.unicast("us", "status").code == 0
    with shards.connection("us") as r:
        assert str(r.host) in (b, c)
    assert [cell.key.row for cell in shards.scan("eu", "t", namespace="shardtest")] == ["r-eu"]
    scan = shards.scan("asia", "t", namespace="shardtest")
    with pytest.raises(KeyError, match="unknown shard key"):
        next(scan)
    assert sum(pool.in_use for pool in shards.resources.values()) == 0  # every scan gave its connection back


@pytest.fixture
def proxied(cluster, shards):
    """Shards like ``shards``, whose host serving both keys sits behind a FaultProxy: yields ``(shards, proxy)``."""
    a, b, c = cluster.hosts
    with FaultProxy(c) as proxy:
        with Shards([(a, "eu"), (b, "us"), (proxy.address, "eu"), (proxy.address, "us")],
                    **dict(socket_timeout=3.0, backoff=0.2)) as s:
            yield s, proxy


def test_multicast_covers_the_keys_of_an_unreachable_host_with_other_hosts(cluster, proxied):
    (a, b, _), (s, proxy) = cluster.hosts, proxied
    assert list(s.multicast(["eu", "us"], "table_exists", "t", namespace="shardtest")) == [proxy.address]
    proxy.close()  # refused from now on
    assert s.multicast(["eu", "us"], "table_exists", "t", namespace="shardtest") == {a: True, b: True}
    assert s.resources.failovers == 1 and list(s.resources.health.down()) == [proxy.address]
    assert s.multicast(["eu", "us"], "status").keys() == {a, b}  # the dead host is not chosen
    assert s.resources.failovers == 1
    with pytest.raises(BroadcastError, match="reached no host for key"):
        s.multicast(["eu"], "hql_query", "SELECT * FROM no_such_table", namespace="shardtest")


def test_multicast_never_repeats_a_write_that_may_have_arrived(cluster, proxied):
    (a, b, _), (s, proxy) = cluster.hosts, proxied
    s.multicast(["eu", "us"], "status")  # connections open
    proxy.blackhole()  # the write leaves, no answer comes back
    results, errors = s.multicast(["eu", "us"], "set_cells", "t", [Cell(Key("r-x", "c", ""), b"1")],
                                  namespace="shardtest", errors="return")
    assert results == {} and list(errors) == [proxy.address]
    assert isinstance(errors[proxy.address], BrokerUnavailable) and errors[proxy.address].sent
    assert s.resources.failovers == 0
    for host in (a, b):  # not sent on to the other hosts of the keys
        cells = s.resources.unicast("get_cells", "t", ScanSpec(), namespace="shardtest", hosts=[host])
        assert "r-x" not in {cell.key.row for cell in cells}


def test_multicast_bad_arguments(shards):
    with pytest.raises(KeyError, match="unknown shard key"):
        shards.multicast(["eu", "asia"], "status")
    with pytest.raises(ConfigError, match="errors must be one of"):
        shards.multicast(["eu"], "status", errors="ignore")
    assert shards.multicast([], "status") == {}
