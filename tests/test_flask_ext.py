"""The Flask extension against real local brokers, through Flask's test client."""
from __future__ import annotations

import threading
import time

import pytest
from flask import Flask, jsonify, request
from test_flask_config import INVALID, with_hosts

from htcluster import Replicas, Resources, Shards
from htcluster.errors import (
    BrokerUnavailable,
    ConfigError,
    NoHostAvailable,
    PoolTimeout,
)
from htcluster.flask_ext import (
    EXTENSION_KEY,
    FlaskHypertable,
    FlaskPooledHypertable,
    Hypertable,
)
from htcluster.hosts import Host
from htcluster import Pool
from htcluster import Resource
from htcluster.testing import LocalCluster, free_port
from htcluster.types import Cell, Key

NS = "flask_ext"
TABLE = "t"


def ensure_schema(address: str) -> None:
    with Resource(address) as r:
        if not r.namespace_exists(NS):
            r.namespace_create(NS)
        if not r.table_exists(r.mns[NS], TABLE):
            r.hql_query(r.mns[NS], f"CREATE TABLE {TABLE} (a, b)")


@pytest.fixture(scope="module")
def broker(broker_address):
    ensure_schema(broker_address)
    return broker_address


@pytest.fixture(scope="module")
def replicas():
    with LocalCluster(3, shared_data=True) as cluster:
        ensure_schema(cluster.hosts[0])
        yield cluster


def build(ext: Hypertable, **config) -> Flask:
    """An app with routes exercising each way of reaching the brokers."""
    app = Flask(f"app{id(config)}")
    app.config.update(HYPERTABLE_NAMESPACE=NS, **config)
    ext.init_app(app)
    app.register_error_handler(BrokerUnavailable, lambda e: (f"unavailable: {e}", 503))
    app.register_error_handler(NoHostAvailable, lambda e: (f"no host: {e}", 503))

    @app.put("/cell/<row>")
    def put(row):
        ext.namespace().set_cell(TABLE, Cell(Key(row, "a", "", None, None, 255), request.get_data()))
        return "", 204

    @app.get("/cell/<row>")
    def get(row):
        r = ext.connection
        assert ext.connection is r  # one checkout per app context
        return r.get_cell(r.mns[NS], TABLE, row, "a")

    @app.get("/read/<row>")
    def read(row):
        r = ext.read_connection
        return r.get_cell(r.mns[NS], TABLE, row, "a")

    @app.get("/ns/<row>")
    def via_namespace(row):
        return ext.namespace().get_cell(TABLE, row, "a")

    return app


def in_use(ext: Hypertable, app: Flask) -> dict[str, int]:
    with app.app_context():
        return {host: pool.in_use for host, pool in ext.pools().items()}


# ------------------------------------------------------------------ configuration


@pytest.mark.parametrize("config, words", INVALID, ids=[repr(c) for c, _ in INVALID])
def test_init_app_rejects_every_invalid_value(config, words):
    app = Flask("bad")
    app.config.update(with_hosts(config))
    with pytest.raises(ConfigError) as info:
        Hypertable(app)
    assert all(word in str(info.value) for word in words)
    assert EXTENSION_KEY not in app.extensions


def test_init_app_sets_defaults_without_overriding():
    app = Flask("defaults")
    app.config["HYPERTABLE_POOL_SIZE"] = 2
    app.config["HYPERTABLE_HOSTS"] = "127.0.0.1:1"
    Hypertable(app)
    assert app.config["HYPERTABLE_POOL_SIZE"] == 2
    assert app.config["HYPERTABLE_MAX_OVERFLOW"] == 10
    assert app.config["HYPERTABLE_PORT"] == 15867 and app.config["HYPERTABLE_HOST"] == "localhost"
    assert app.config["HYPERTABLE_TIMEOUT_MSECS"] == 5000


def test_every_key_reaches_the_pools():
    ext = Hypertable()
    app = Flask("keys")
    app.config.update(HYPERTABLE_HOST="ht9", HYPERTABLE_PORT=38080, HYPERTABLE_POOL_SIZE=3,
                      HYPERTABLE_MAX_OVERFLOW=4, HYPERTABLE_TIMEOUT_MSECS=1500,
                      HYPERTABLE_POOL_TIMEOUT=2.5, HYPERTABLE_NAMESPACE="web")
    ext.init_app(app)
    with app.app_context():
        pool = ext.cluster
        assert isinstance(pool, Pool) and pool.host == Host("ht9", 38080)
        assert (pool.size, pool.max_overflow, pool.socket_timeout, pool.pool_timeout) == (3, 4, 1.5, 2.5)
        assert ext.namespace().name == "web" and ext.namespace("other").name == "other"


@pytest.mark.parametrize("config, kind", [
    ({"HYPERTABLE_HOSTS": "127.0.0.1:1"}, Pool),
    ({"HYPERTABLE_HOSTS": "127.0.0.1:1,127.0.0.1:2"}, Replicas),
    ({"HYPERTABLE_HOSTS": ["127.0.0.1:1", "127.0.0.1:2"], "HYPERTABLE_STRATEGY": "resources"}, Resources),
    ({"HYPERTABLE_HOSTS": "127.0.0.1:1,127.0.0.1:2", "HYPERTABLE_STRATEGY": "replicas"}, Replicas),
    ({"HYPERTABLE_SHARDS": {"eu": "127.0.0.1:1", "us": ["127.0.0.1:2"]}}, Shards),
])
def test_strategy_choice(config, kind):
    ext = Hypertable()
    app = Flask("strategy")
    app.config.update(config)
    ext.init_app(app)
    with app.app_context():
        assert type(ext.cluster) is kind
        assert set(ext.pools()) == {"127.0.0.1:1", "127.0.0.1:2"} & {str(h) for h in ext.settings.hosts}
    if kind is Shards:
        with app.app_context():
            assert ext.cluster.hosts("us") == {"127.0.0.1:2"}
            with pytest.raises(RuntimeError, match="shard"):
                _ = ext.connection
            with pytest.raises(TypeError, match="key="):
                ext.namespace("x").get_cell("t", "r", "a")


def test_outside_app_context_and_before_init_app():
    ext = Hypertable()
    with pytest.raises(RuntimeError, match="application context"):
        _ = ext.connection
    app = Flask("late")
    app.config["HYPERTABLE_HOSTS"] = "127.0.0.1:1"
    with app.app_context():
        with pytest.raises(RuntimeError, match="init_app"):
            _ = ext.cluster
    ext.init_app(app)
    with pytest.raises(RuntimeError, match="already registered"):
        Hypertable(app)
    with pytest.raises(RuntimeError, match="application context"):
        ext.namespace()
    with app.app_context():
        with pytest.raises(ConfigError, match="HYPERTABLE_NAMESPACE"):
            ext.namespace()


def test_one_extension_many_apps(broker, replicas):
    ext = Hypertable()
    one = build(ext, HYPERTABLE_HOSTS=broker)
    many = build(ext, HYPERTABLE_HOSTS=replicas.hosts)
    assert not hasattr(ext, "app")
    for app, kind in ((one, Pool), (many, Replicas)):
        client = app.test_client()
        assert client.put("/cell/apps", data=app.name.encode()).status_code == 204
        assert client.get("/cell/apps").data == app.name.encode()
        with app.app_context():
            assert type(ext.cluster) is kind
    assert in_use(ext, one) == {broker: 0}


# ------------------------------------------------------------------ per-request connections


@pytest.mark.parametrize("strategy", ["pool", "replicas"])
def test_thousand_requests_leave_nothing_checked_out(broker, replicas, strategy):
    ext = Hypertable()
    app = build(ext, HYPERTABLE_HOSTS=broker if strategy == "pool" else replicas.hosts)
    client = app.test_client()
    assert client.put("/cell/k", data=b"v").status_code == 204
    paths = ("/cell/k", "/read/k", "/ns/k", "/cell/missing")
    for i in range(1000):
        response = client.get(paths[i % 4])
        assert response.status_code == 200
        assert response.data == (b"" if i % 4 == 3 else b"v")
    assert set(in_use(ext, app).values()) == {0}
    with app.app_context():
        opened = sum(p.stats()["opened"] for p in ext.pools().values())
    assert opened <= 6  # connections were reused, not opened per request


def test_transport_failure_mid_request_discards_the_connection(broker, fault_proxy_factory):
    proxy = fault_proxy_factory(broker)
    ext = Hypertable()
    app = build(ext, HYPERTABLE_HOSTS=proxy.address)
    seen = []

    @app.get("/break")
    def broken():
        r = ext.connection
        seen.append(r)
        r.status()
        proxy.reset()
        try:
            r.status()
        except BrokerUnavailable:
            if request.args.get("catch"):
                return "handled", 200  # the app swallowed it: the connection must still go
            raise
        return "not reached", 500

    client = app.test_client()
    assert client.get("/cell/x").status_code == 200
    assert client.get("/break").status_code == 503
    assert client.get("/break?catch=1").status_code == 200
    with app.app_context():
        pool = ext.cluster
        stats = pool.stats()
    assert pool.in_use == 0 and stats["closed"] >= 2
    assert all(r.failed and not r.is_open for r in seen)
    assert client.get("/cell/x").status_code == 200  # a fresh connection, through the proxy


def test_socket_timeout_and_pool_timeout_keys(broker, fault_proxy_factory):
    proxy = fault_proxy_factory(broker)
    ext = Hypertable()
    app = build(ext, HYPERTABLE_HOSTS=proxy.address, HYPERTABLE_TIMEOUT_MSECS=300,
                HYPERTABLE_POOL_SIZE=1, HYPERTABLE_MAX_OVERFLOW=0, HYPERTABLE_POOL_TIMEOUT=0.2)
    with app.app_context():
        ext.connection.status()
        start = time.monotonic()
        with pytest.raises(PoolTimeout):  # the only connection is this context's
            with ext.cluster.connection():
                pass
        assert time.monotonic() - start < 5
        proxy.blackhole()
        start = time.monotonic()
        with pytest.raises(BrokerUnavailable, match="timed out"):
            ext.connection.status()
        assert time.monotonic() - start < 5
    assert in_use(ext, app) == {proxy.address: 0}


def test_sixteen_threads(replicas):
    ext = Hypertable()
    app = build(ext, HYPERTABLE_HOSTS=replicas.hosts, HYPERTABLE_POOL_SIZE=4, HYPERTABLE_MAX_OVERFLOW=4)
    failures: list[str] = []

    def worker(n: int) -> None:
        client = app.test_client()
        for i in range(25):
            row, value = f"thread{n}", f"{n}-{i}".encode()
            if client.put(f"/cell/{row}", data=value).status_code != 204:
                failures.append(f"put {row}")
            for path in (f"/cell/{row}", f"/ns/{row}"):
                response = client.get(path)
                if response.status_code != 200 or response.data != value:
                    failures.append(f"{path}: {response.status_code} {response.data!r}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures
    assert set(in_use(ext, app).values()) == {0}


def test_replica_killed_between_requests(replicas):
    ext = Hypertable()
    app = build(ext, HYPERTABLE_HOSTS=replicas.hosts)
    client = app.test_client()
    try:
        for i in range(5):
            assert client.put(f"/cell/kill{i}", data=b"before").status_code == 204
            assert client.get(f"/cell/kill{i}").status_code == 200
        replicas.kill(0)  # SIGKILL the write host, between requests
        for i in range(30):
            assert client.put(f"/cell/kill{i}", data=b"after").status_code == 204, i
            for path in (f"/cell/kill{i}", f"/read/kill{i}", f"/ns/kill{i}"):
                response = client.get(path)
                assert (response.status_code, response.data) == (200, b"after"), (path, response.data)
        assert set(in_use(ext, app).values()) == {0}
    finally:
        replicas.start(0)


def test_namespace_hql_and_scan_on_replicas(replicas):
    ext = Hypertable()
    app = build(ext, HYPERTABLE_HOSTS=replicas.hosts)
    with app.app_context():
        ns = ext.namespace()
    ns.hql_query(f'INSERT INTO {TABLE} VALUES ("hql", "a", "x")')  # no app context needed any more
    assert [c.value for c in ns.hql_query(f'SELECT a FROM {TABLE} WHERE ROW = "hql"').cells] == [b"x"]
    assert [c.key.row for c in ns.scan(TABLE) if c.key.row == "hql"] == ["hql"]
    with app.app_context():
        with pytest.raises(TypeError, match="key="):
            ext.namespace(key="eu").scan(TABLE)
    assert set(in_use(ext, app).values()) == {0}


# ------------------------------------------------------------------ Flask-Hypertable users


def legacy_app(cls, host: str, port: int) -> tuple[Flask, object]:
    """An app written for Flask-Hypertable; only the import line (``cls``) changed."""
    app = Flask("legacy")
    app.config["HYPERTABLE_HOST"] = host
    app.config["HYPERTABLE_PORT"] = port
    app.config["HYPERTABLE_POOL_SIZE"] = 2
    app.config["HYPERTABLE_MAX_OVERFLOW"] = 1
    app.config["HYPERTABLE_TIMEOUT_MSECS"] = 5000
    ht = cls(app)

    @app.route("/insert/<row>/<value>")
    def insert(row, value):
        client = ht.connection
        client.hql_query(client.mns[NS], f'INSERT INTO {TABLE} VALUES ("{row}", "b", "{value}")')
        return "ok"

    @app.route("/select/<row>")
    def select(row):
        client = ht.connection
        res = client.hql_query(client.mns[NS], f'SELECT b FROM {TABLE} WHERE ROW = "{row}"')
        again = client.hql_query(client.mns[NS], f'SELECT b FROM {TABLE} WHERE ROW = "{row}"')
        assert len(again.cells) == len(res.cells)
        client.mns.close_namespace(NS)
        client.mns.close_namespace(NS)  # not open any more: nothing happens, as before
        return jsonify([c.value.decode() for c in res.cells])

    @app.route("/close/<row>")
    def close(row):
        client = ht.connection
        value = client.get_cell(client.mns[NS], TABLE, row, "b")
        client.close()  # closes its namespaces and the socket; teardown then drops it
        return value

    @app.route("/own/<row>")
    def own(row):
        client = ht.connect()
        value = client.get_cell(client.mns[NS], TABLE, row, "b")
        if isinstance(ht, FlaskHypertable):
            client.close()  # FlaskHypertable had no put_back: its connect() was closed by the caller
        else:
            ht.put_back(client)
        return value

    @app.route("/with/<row>")
    def with_block(row):
        with ht as client:
            ns = client.namespace_open(NS)  # the old unmanaged way works too
            value = client.get_cell(ns, TABLE, row, "b")
            client.close_namespace(ns)
        return value

    return app, ht


@pytest.mark.parametrize("cls", [FlaskPooledHypertable, FlaskHypertable])
def test_flask_hypertable_app_runs_unchanged(broker, cls):
    host, port = broker.rsplit(":", 1)
    app, ht = legacy_app(cls, host, int(port))
    client = app.test_client()
    row = cls.__name__
    assert client.get(f"/insert/{row}/v1").data == b"ok"
    rounds = 20  # more than HYPERTABLE_POOL_SIZE + HYPERTABLE_MAX_OVERFLOW: nothing may leak
    for _ in range(rounds):
        assert client.get(f"/select/{row}").json == ["v1"]
        assert client.get(f"/with/{row}").data == b"v1"
        assert client.get(f"/close/{row}").data == b"v1"
        assert client.get(f"/own/{row}").data == b"v1"
    with app.app_context():
        pool = ht.cluster
    stats = pool.stats()
    assert pool.in_use == 0
    if cls is FlaskHypertable:  # connect per request: nothing outlives it; connect() is not pooled
        assert pool.idle == 0 and stats["opened"] == stats["closed"] == 1 + 3 * rounds
    else:  # one connection per /close request, discarded after close(); the rest reused
        assert pool.idle >= 1 and stats["opened"] <= rounds + 2
        ht.close_app(app)  # outside an app context, as Flask-Hypertable's atexit call was
        assert pool.idle == 0
    assert client.get(f"/select/{row}").json == ["v1"]  # usable after close_app()
    ht.close_app()  # no app context, no app: every app it serves, as Flask-Hypertable's close_app()
    assert pool.idle == 0 and pool.in_use == 0


def test_put_back_refuses_a_stranger(broker):
    ext = FlaskPooledHypertable()
    app = build(ext, HYPERTABLE_HOSTS=broker)
    with app.app_context(), Resource(broker) as stranger:
        with pytest.raises(ValueError, match="connect"):
            ext.put_back(stranger)


def test_with_block_discards_a_failed_client(broker, fault_proxy_factory):
    proxy = fault_proxy_factory(broker)
    ht = FlaskPooledHypertable()
    app = build(ht, HYPERTABLE_HOSTS=proxy.address)
    with app.app_context():
        with pytest.raises(BrokerUnavailable):
            with ht as client:
                client.status()
                proxy.reset()
                client.status()
        assert ht.cluster.in_use == 0 and ht.cluster.idle == 0
        with ht as client:
            assert client.status().code == 0


def test_flask_hypertable_takes_one_host():
    with pytest.raises(ConfigError, match="one host"):
        FlaskHypertable(_config(Flask("x"), HYPERTABLE_HOSTS="a:1,b:2"))


def _config(app: Flask, **config) -> Flask:
    app.config.update(config)
    return app


# ------------------------------------------------------------------ CLI


def test_status_command(broker):
    dead = f"127.0.0.1:{free_port()}"
    ok = _config(Flask("status"), HYPERTABLE_HOSTS=broker)
    Hypertable(ok)
    result = ok.test_cli_runner().invoke(args=["hypertable", "status", "--timeout", "2"])
    assert result.exit_code == 0, result.output
    assert broker in result.output and " up " in result.output

    bad = _config(Flask("status2"), HYPERTABLE_HOSTS=[broker, dead])
    Hypertable(bad)
    result = bad.test_cli_runner().invoke(args=["hypertable", "status", "--timeout", "2"])
    assert result.exit_code == 1
    assert dead in result.output and "down" in result.output and "1 of 2 hosts down" in result.output


# ------------------------------------------------------------------ other strategies


def test_shards_route_by_key_and_stream(local_cluster_factory):
    cluster = local_cluster_factory(2, shared_data=False)  # two separate clusters
    for host in cluster.hosts:
        ensure_schema(host)
    ext = Hypertable()
    app = _config(Flask("shards"), HYPERTABLE_SHARDS={"eu": cluster.hosts[0], "us": [cluster.hosts[1]]},
                  HYPERTABLE_NAMESPACE=NS)
    ext.init_app(app)
    app.add_url_rule("/stream/<key>", "stream", lambda key: ext.stream(TABLE, key=key))
    with app.app_context():
        for key in ("eu", "us"):
            ext.namespace(key=key).set_cell(TABLE, Cell(Key(f"row-{key}", "a", "", None, None, 255), key.encode()))
        assert ext.namespace(key="eu").get_cell(TABLE, "row-eu", "a") == b"eu"
        assert ext.namespace(key="eu").get_cell(TABLE, "row-us", "a") == b""  # the other shard's row
        assert ext.call("get_cell", TABLE, "row-us", "a", namespace=NS, key="us") == b"us"
        statuses = ext.cluster.multicast(["eu", "us"], "status")
        assert set(statuses) == set(cluster.hosts)
    rows = app.test_client().get("/stream/us").json
    assert [r["row"] for r in rows] == ["row-us"]
    assert set(in_use(ext, app).values()) == {0}


def test_resources_strategy(replicas):
    ext = Hypertable()
    app = build(ext, HYPERTABLE_HOSTS=replicas.hosts, HYPERTABLE_STRATEGY="resources")
    client = app.test_client()
    assert client.put("/cell/res", data=b"r").status_code == 204
    for path in ("/cell/res", "/read/res", "/ns/res"):
        assert client.get(path).data == b"r"
    with app.app_context():
        assert set(ext.cluster.broadcast("status")) == set(replicas.hosts)
    assert set(in_use(ext, app).values()) == {0}
