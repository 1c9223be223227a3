"""``htcluster.from_url``: one string for the hosts, the default namespace and the options."""
from __future__ import annotations

import pytest

import htcluster
from htcluster import ConfigError, Pool, Replicas, Resources, Shards
from htcluster.types import Cell, Key, ScanSpec


def test_the_url_builds_the_routing_object_with_its_options():
    r = htcluster.from_url("hypertable://127.0.0.1:1,[::1]:2/logs?hedge=0.05&socket_timeout=5&retry=1&size=2")
    assert isinstance(r, Replicas) and list(r) == ["127.0.0.1:1", "[::1]:2"]
    assert r.hedge == 0.05 and r.default_namespace == "logs" and r.retry.total == 1
    assert r["127.0.0.1:1"].socket_timeout == 5.0 and r["127.0.0.1:1"].size == 2
    shards = htcluster.from_url("hypertable://a:1,b:2?strategy=shards&retry=false")
    assert isinstance(shards, Shards) and dict(shards) == {"a:1": {"a:1"}, "b:2": {"b:2"}}
    assert isinstance(htcluster.from_url("hypertable://a?strategy=resources"), Resources)
    pool = htcluster.from_url("hypertable://a:7?strategy=pool&timeout=2")
    assert isinstance(pool, Pool) and pool.timeout == 2.0 and pool.address == "a:7"


@pytest.mark.parametrize("url, message", [
    ("http://a", "starts with hypertable://"),
    ("hypertable:///ns", "no hosts"),
    ("hypertable://a?sockettimeout=1", "did you mean socket_timeout"),
    ("hypertable://a?strategy=ring", "choose one of"),
    ("hypertable://a,b?strategy=pool", "takes one host"),
    ("hypertable://a?hedge=soon", "must be a number"),
    ("hypertable://a?hedge=-1", "hedge"),
    ("hypertable://a?hedge=1&hedge=2", "once"),
    ("hypertable://u:p@a", "passwords"),
])
def test_bad_urls_are_config_errors(url, message):
    with pytest.raises(ConfigError, match=message):
        htcluster.from_url(url)


def test_the_path_is_the_default_namespace_of_calls_that_name_none(local_broker):
    with Pool(local_broker.address) as admin:
        if not admin.call("namespace_exists", "url_default"):
            admin.call("namespace_create", "url_default")
        admin.call("hql_query", "CREATE TABLE t (a)", namespace="url_default")
    replicas = htcluster.from_url(f"hypertable://{local_broker.address}/url_default?socket_timeout=30")
    replicas.call("set_cells", "t", [Cell(Key("r1", "a", ""), b"v")])  # no namespace= needed
    assert replicas.call("get_cell", "t", "r1", "a") == b"v"
    assert [c.key.row for c in replicas.scan("t", ScanSpec())] == ["r1"]
    assert replicas.call("status") is not None  # a call without a namespace id still takes none
    replicas.close()
    with pytest.raises(ConfigError, match="needs a namespace"):
        list(Replicas([local_broker.address]).scan("t"))
