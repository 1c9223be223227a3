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
    pool = htcluster.from_url("hypertable://a:7?strategy=pool&pool_timeout=2")
    assert isinstance(pool, Pool) and pool.pool_timeout == 2.0 and pool.address == "a:7"


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
    ("hypertable://a?size=2.5", "size='2.5' must be a whole number"),  # once truncated to 2 without a word
    ("hypertable://a?min_size=1.9", "whole number"),
    ("hypertable://a?consecutive_gateway_failure=2.5", "whole number"),
    ("hypertable://a?balance=p2c&decay_time=0", "decay_time must be > 0 seconds"),
    ("hypertable://a?decay_time=5", "decay_time=5 tunes balance='p2c' only"),
])
def test_bad_urls_are_config_errors(url, message):
    with pytest.raises(ConfigError, match=message):
        htcluster.from_url(url)


def make_table(address: str) -> None:
    """Namespace ``url_default`` with a table ``t`` holding one cell ``r1`` = ``v``."""
    with Pool(address) as admin:
        if not admin.call("namespace_exists", "url_default"):
            admin.call("namespace_create", "url_default")
        admin.call("hql_query", "DROP TABLE IF EXISTS t", namespace="url_default")
        admin.call("hql_query", "CREATE TABLE t (a)", namespace="url_default")
        admin.call("hql_query", "INSERT INTO t VALUES ('r1', 'a', 'v')", namespace="url_default")


def test_the_path_is_the_default_namespace_of_calls_that_name_none(local_broker):
    make_table(local_broker.address)
    replicas = htcluster.from_url(f"hypertable://{local_broker.address}/url_default?socket_timeout=30")
    replicas.call("set_cells", "t", [Cell(Key("r1", "a", ""), b"v")])  # no namespace= needed
    assert replicas.call("get_cell", "t", "r1", "a") == b"v"
    assert {c.key.row for c in replicas.scan("t", ScanSpec())} == {"r1"}
    assert replicas.call("status") is not None  # a call without a namespace id still takes none
    replicas.close()
    with pytest.raises(ConfigError, match="needs a namespace"):
        list(Replicas([local_broker.address]).scan("t"))


def test_flask_reads_hypertable_url(local_broker):
    from flask import Flask

    from htcluster.flask_ext import Hypertable

    make_table(local_broker.address)
    app = Flask("url_app")
    app.config["HYPERTABLE_URL"] = f"hypertable://{local_broker.address}/url_default?strategy=resources&hedge=0.05"
    ht = Hypertable(app)
    with app.app_context():
        assert isinstance(ht.cluster, Resources) and ht.cluster.hedge == 0.05
        assert ht.namespace().get_cell("t", "r1", "a") == b"v"  # the URL's path is the namespace
    clash = Flask("clash")
    clash.config.update(HYPERTABLE_URL="hypertable://a", HYPERTABLE_HOSTS="b")
    with pytest.raises(ConfigError, match="HYPERTABLE_URL replaces HYPERTABLE_HOSTS"):
        Hypertable(clash)
    bad = Flask("bad")
    bad.config["HYPERTABLE_URL"] = "http://a"
    with pytest.raises(ConfigError, match="HYPERTABLE_URL: a htcluster URL starts with"):
        Hypertable(bad)


def test_the_command_takes_url_and_its_environment_variable(local_broker):
    from click.testing import CliRunner

    from htcluster.cli import main

    make_table(local_broker.address)
    url = f"hypertable://{local_broker.address}/url_default?socket_timeout=20"
    done = CliRunner().invoke(main, ["hql", "--url", url, "SELECT * FROM t"])
    assert done.exit_code == 0, done.output
    assert "r1" in done.output  # the URL's path is the namespace
    done = CliRunner().invoke(main, ["status"], env={"HYPERTABLE_URL": url})
    assert done.exit_code == 0 and local_broker.address in done.output, done.output
    done = CliRunner().invoke(main, ["status", "--url", url, "--hosts", "elsewhere:1"])
    assert done.exit_code != 0 and "not both" in done.output
    done = CliRunner().invoke(main, ["status", "--url", "hypertable://h?hegde=1"])
    assert done.exit_code != 0 and "did you mean hedge" in done.output
