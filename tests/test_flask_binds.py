"""HYPERTABLE_OPTIONS reach the routing objects; HYPERTABLE_BINDS give more clusters; status shows them all."""
from __future__ import annotations

import pytest
from flask import Flask
from test_flask_config import with_hosts

from htcluster.errors import ConfigError
from htcluster.flask_ext import EXTENSION_KEY, FlaskHypertable, Hypertable
from htcluster import Backoff, Retry
from htcluster import Pool
from htcluster import Replicas
from htcluster import Resource
from htcluster import Shards
from htcluster.testing import free_port
from htcluster.types import Cell, Key

NS = "flask_binds"
TABLE = "t"


def app_with(**config) -> tuple[Flask, Hypertable]:
    app = Flask(f"binds{id(config)}")
    app.config.update(config)
    ext = Hypertable(app)
    return app, ext


def ensure_schema(address: str) -> None:
    with Resource(address, socket_timeout=30.0) as r:
        if not r.namespace_exists(NS):
            r.namespace_create(NS)
        if not r.table_exists(r.mns[NS], TABLE):
            r.hql_query(r.mns[NS], f"CREATE TABLE {TABLE} (a)")


@pytest.fixture(scope="module")
def two_clusters():
    """Two brokers over separate files: two clusters that share nothing."""
    from htcluster.testing import LocalCluster
    with LocalCluster(2, shared_data=False) as cluster:
        for host in cluster.hosts:
            ensure_schema(host)
        yield cluster


# ------------------------------------------------------------------ HYPERTABLE_OPTIONS


def test_pool_options_reach_the_pool():
    """idle_ping, max_age and connect_timeout could not be set from Flask config before."""
    app, ext = app_with(HYPERTABLE_HOSTS="127.0.0.1:1", HYPERTABLE_POOL_SIZE=3,
                        HYPERTABLE_OPTIONS={"idle_ping": 30.0, "max_age": 600.0, "connect_timeout": 1.5,
                                            "max_overflow": 2})
    with app.app_context():
        pool = ext.cluster
        assert isinstance(pool, Pool)
        assert (pool.idle_ping, pool.max_age, pool.connect_timeout) == (30.0, 600.0, 1.5)
        assert (pool.size, pool.max_overflow) == (3, 2)  # the dedicated key, and the option that wins


def test_routing_options_reach_replicas_and_shards():
    retry, backoff = Retry(total=7), Backoff(base=0.5, cap=4.0)
    app, ext = app_with(HYPERTABLE_HOSTS="127.0.0.1:1,127.0.0.1:2",
                        HYPERTABLE_OPTIONS={"retry": retry, "backoff": backoff, "probe_timeout": 3.0,
                                            "idle_ping": 5.0})
    with app.app_context():
        replicas = ext.cluster
        assert isinstance(replicas, Replicas)
        assert replicas.retry == retry and replicas.health.backoff == backoff and replicas.probe_timeout == 3.0
        assert {pool.idle_ping for pool in replicas.values()} == {5.0}
    app, ext = app_with(HYPERTABLE_SHARDS={"eu": "127.0.0.1:1"}, HYPERTABLE_OPTIONS={"retry": 2, "max_age": 9.0})
    with app.app_context():
        assert isinstance(ext.cluster, Shards) and ext.cluster.resources.retry == Retry.from_int(2)
        assert ext.pools()["127.0.0.1:1"].max_age == 9.0


def test_flask_hypertable_takes_options_too():
    app = Flask("basic")
    app.config.update(HYPERTABLE_HOST="127.0.0.1", HYPERTABLE_PORT=1, HYPERTABLE_OPTIONS={"connect_timeout": 2.0})
    ext = FlaskHypertable(app)
    with app.app_context():
        assert ext.cluster.connect_timeout == 2.0 and ext.cluster.size == 0


@pytest.mark.parametrize("config, words", [
    ({"HYPERTABLE_OPTIONS": {"idle_ping": -1}}, ["HYPERTABLE_OPTIONS", "idle_ping"]),
    ({"HYPERTABLE_OPTIONS": {"connect_timeout": "fast"}}, ["HYPERTABLE_OPTIONS", "connect_timeout"]),
    ({"HYPERTABLE_HOSTS": "a,b", "HYPERTABLE_OPTIONS": {"probe_timeout": 0}}, ["HYPERTABLE_OPTIONS", "probe_timeout"]),
    ({"HYPERTABLE_HOSTS": "a,b", "HYPERTABLE_OPTIONS": {"max_workers": 3}}, ["HYPERTABLE_OPTIONS", "max_workers"]),
    ({"HYPERTABLE_HOSTS": "a,b", "HYPERTABLE_OPTIONS": {"backoff": "x"}}, ["HYPERTABLE_OPTIONS"]),
    ({"HYPERTABLE_BINDS": {"b": {"hosts": "h", "options": {"max_age": 0}}}},
     ["HYPERTABLE_BINDS['b']['options']", "max_age"]),
])
def test_option_values_are_checked_at_init_app(config, words):
    app = Flask("badopts")
    app.config.update(with_hosts(config))
    with pytest.raises(ConfigError) as info:
        Hypertable(app)
    assert all(w in str(info.value) for w in words), str(info.value)
    assert EXTENSION_KEY not in app.extensions


# ------------------------------------------------------------------ HYPERTABLE_BINDS


def test_binds_are_separate_clusters(two_clusters):
    main, other = two_clusters.hosts
    app, ext = app_with(HYPERTABLE_HOSTS=main, HYPERTABLE_NAMESPACE=NS,
                        HYPERTABLE_BINDS={"analytics": {"hosts": [other], "namespace": NS, "pool_size": 1},
                                          "bare": other})
    app.add_url_rule("/stream", "stream", lambda: ext.stream(TABLE, bind="analytics"))
    with app.app_context():
        assert isinstance(ext.cluster_for("analytics"), Pool) and ext.cluster_for() is ext.cluster
        assert set(ext.pools("analytics")) == {other} and set(ext.pools()) == {main}
        assert ext.settings.binds["analytics"].pool_size == 1
        ext.namespace(bind="analytics").set_cell(TABLE, Cell(Key("only-there", "a", "", None, None, 255), b"x"))
        assert ext.namespace(bind="analytics").get_cell(TABLE, "only-there", "a") == b"x"
        assert ext.call("get_cell", TABLE, "only-there", "a", namespace=NS, bind="bare") == b"x"
        assert ext.namespace().get_cell(TABLE, "only-there", "a") == b""  # the main cluster lacks it
        assert "bind='analytics'" in repr(ext.namespace(bind="analytics"))
        with pytest.raises(ConfigError, match="no bind 'nope'.*'analytics', 'bare'"):
            ext.namespace(bind="nope")
        with pytest.raises(ConfigError, match=r"HYPERTABLE_BINDS\['bare'\]\['namespace'\]"):
            ext.namespace(bind="bare")
    rows = app.test_client().get("/stream").get_json()
    assert [r["row"] for r in rows] == ["only-there"]
    with app.app_context():
        for bind in (None, "analytics", "bare"):
            assert {p.in_use for p in ext.pools(bind).values()} == {0}
    ext.close_app(app)
    with app.app_context():
        assert all(p.idle == 0 for bind in (None, "analytics", "bare") for p in ext.pools(bind).values())


def test_a_bad_bind_registers_nothing_and_closes_what_was_built():
    app = Flask("badbind")
    app.config.update(HYPERTABLE_HOSTS="127.0.0.1:1",
                      HYPERTABLE_BINDS={"ok": "127.0.0.1:2", "bad": {"hosts": "h", "options": {"idle_ping": -3}}})
    with pytest.raises(ConfigError, match=r"HYPERTABLE_BINDS\['bad'\]"):
        Hypertable(app)
    assert EXTENSION_KEY not in app.extensions


# ------------------------------------------------------------------ flask hypertable status


def test_status_shows_every_bind_and_the_counters(two_clusters):
    main, other = two_clusters.hosts
    dead = f"127.0.0.1:{free_port()}"
    app, ext = app_with(HYPERTABLE_HOSTS=main, HYPERTABLE_BINDS={"analytics": [other]})
    with app.app_context():
        assert ext.connection.status().code == 0  # one connection opened, so counters are non-zero
    result = app.test_cli_runner().invoke(args=["hypertable", "status", "--timeout", "10"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "main: pool, 1 host(s)" in out and "bind 'analytics': pool, 1 host(s)" in out
    assert main in out and other in out and " up " in out
    assert "counters:" in out and f"{main}  opened=1 closed=0" in out

    app, ext = app_with(HYPERTABLE_HOSTS=main, HYPERTABLE_BINDS={"archive": [other, dead]})
    result = app.test_cli_runner().invoke(args=["hypertable", "status", "--timeout", "5"])
    assert result.exit_code == 1
    assert "bind 'archive': replicas, 2 host(s)" in result.output
    assert f"bind 'archive': 1 of 2 hosts down: {dead}" in result.output
