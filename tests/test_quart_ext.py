"""The Quart extension (``htcluster.quart_ext``) against real local brokers, through Quart's test client."""
from __future__ import annotations

import asyncio
import json
import uuid
import warnings

import pytest

quart = pytest.importorskip("quart")

from quart import Quart, jsonify, request  # noqa: E402

from htcluster import Resource, aio  # noqa: E402
from htcluster.errors import BrokerUnavailable, ConfigError, ConfigWarning, NoHostAvailable  # noqa: E402
from htcluster.quart_ext import Hypertable, get_recorded_queries  # noqa: E402
from htcluster.testing import LocalCluster, free_port  # noqa: E402
from htcluster._thrift.ttypes import ClientException  # noqa: E402

NS = "quart_ext"
TABLE = "t"


def ensure_schema(address: str) -> None:
    with Resource(address) as r:
        if not r.namespace_exists(NS):
            r.namespace_create(NS)
        if not r.table_exists(r.mns[NS], TABLE):
            r.hql_query(r.mns[NS], f"CREATE TABLE {TABLE} (a, b)")


@pytest.fixture(scope="module")
def one(broker):
    ensure_schema(broker.address)
    return broker.address


@pytest.fixture(scope="module")
def three():
    with LocalCluster(3, shared_data=True) as cluster:
        ensure_schema(cluster.hosts[0])
        yield cluster


def build(ext: Hypertable, **config) -> Quart:
    """A Quart app whose routes reach the brokers each way the extension offers."""
    app = Quart(f"quart{uuid.uuid4().hex[:6]}")
    app.config.update({"HYPERTABLE_NAMESPACE": NS, **config})
    ext.init_app(app)

    @app.errorhandler(NoHostAvailable)
    @app.errorhandler(BrokerUnavailable)
    async def unavailable(e):
        return jsonify(error=str(e)), 503

    @app.errorhandler(ClientException)
    async def refused(e):
        return jsonify(error=e.message, code=e.code), 502

    @app.post("/rows/<row>")
    async def put(row):
        value = (await request.get_data()).decode()
        await ext.namespace().hql_query(f"INSERT INTO {TABLE} VALUES ('{row}', 'a', '{value}')")
        return jsonify(row=row), 201

    @app.get("/rows/<row>")
    async def get(row):
        return jsonify(value=(await ext.namespace().get_cell(TABLE, row, "a")).decode())

    @app.get("/stream/<table>")
    async def stream(table):
        return await ext.stream(table, by_row=request.args.get("by_row") == "1")

    @app.get("/connection")
    async def connection():
        first = await ext.connection()
        again = await ext.connection()
        status = await first.call("status")
        return jsonify(same=first is again, status=status.code, host=str(first.host))

    @app.get("/recorded")
    async def recorded():
        await ext.call("status")
        await ext.namespace().get_cell(TABLE, "nope", "a")
        return jsonify([(q.method, q.host, q.namespace) for q in get_recorded_queries()])

    return app


async def body(response) -> bytes:
    return await response.get_data()


# ---------------------------------------------------------------- settings (no broker needed)


def test_the_settings_are_the_flask_ones_and_build_the_aio_twins():
    ht = Hypertable()
    several = build(ht, HYPERTABLE_HOSTS="127.0.0.1:1,127.0.0.1:2",
                    HYPERTABLE_BINDS={"one": "127.0.0.1:3", "geo": {"shards": {"eu": "127.0.0.1:4"}}},
                    HYPERTABLE_OPTIONS={"hedge": 0.05})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a URL is a full configuration: no warning
        url = Hypertable()
        build(url, HYPERTABLE_URL="hypertable://127.0.0.1:5,127.0.0.1:6/logs?hedge=0.05",
              HYPERTABLE_NAMESPACE=None)

    async def check():
        async with several.app_context():
            assert isinstance(ht.cluster, aio.AsyncReplicas)
            assert isinstance(ht.cluster_for("one"), aio.AsyncPool)
            assert isinstance(ht.cluster_for("geo"), aio.AsyncShards)
            assert sorted(ht.pools()) == ["127.0.0.1:1", "127.0.0.1:2"]
            assert ht.settings.options == {"hedge": 0.05}
            with pytest.raises(ConfigError, match="no bind 'nope'"):
                ht.cluster_for("nope")

    asyncio.run(check())


def test_the_checks_are_as_strict_as_flasks():
    with pytest.raises(ConfigError, match="no Hypertable brokers configured"):
        build(Hypertable())
    with pytest.raises(ConfigError, match="HYPERTABLE_POOL_SIZE"):
        build(Hypertable(), HYPERTABLE_HOSTS="127.0.0.1:1", HYPERTABLE_POOL_SIZE=-1)
    with pytest.raises(ConfigError, match="unknown option"):
        build(Hypertable(), HYPERTABLE_HOSTS="127.0.0.1:1", HYPERTABLE_OPTIONS={"hegde": 0.1})
    with pytest.warns(ConfigWarning, match="did you mean HYPERTABLE_HOSTS"):
        build(Hypertable(), HYPERTABLE_HOSTS="127.0.0.1:1", HYPERTABLE_HOSTSS="x")
    with pytest.warns(ConfigWarning, match="milliseconds"):
        build(Hypertable(), HYPERTABLE_HOSTS="127.0.0.1:1", HYPERTABLE_TIMEOUT_MSECS=5)
    ht = Hypertable()
    app = build(ht, HYPERTABLE_HOSTS="127.0.0.1:1")
    with pytest.raises(RuntimeError, match="already registered"):
        ht.init_app(app)
    with pytest.raises(RuntimeError, match="outside of an application context"):
        ht.cluster  # noqa: B018


def test_set_hosts_is_exposed_like_the_flask_ones():
    ht = Hypertable()
    app = build(ht, HYPERTABLE_HOSTS="127.0.0.1:1,127.0.0.1:2")
    single = build(Hypertable(), HYPERTABLE_HOSTS="127.0.0.1:1")

    async def check():
        async with app.app_context():
            ht.set_hosts(["127.0.0.1:3", "127.0.0.1:1"])
            assert sorted(ht.pools()) == ["127.0.0.1:1", "127.0.0.1:3"]
            ht.add_host("127.0.0.1:4")
            ht.remove_host("127.0.0.1:1")
            assert sorted(ht.pools()) == ["127.0.0.1:3", "127.0.0.1:4"]
        async with single.app_context():
            with pytest.raises(ConfigError, match="'pool' has one fixed host"):
                single.extensions["hypertable"].owner.set_hosts(["127.0.0.1:2"])

    asyncio.run(check())


# ---------------------------------------------------------------- quart hypertable status


def test_status_command_prints_every_bind_and_exits_1_when_a_host_is_down(one):
    dead = f"127.0.0.1:{free_port()}"
    ht = Hypertable()
    app = build(ht, HYPERTABLE_HOSTS=one, HYPERTABLE_BINDS={"analytics": [one]})

    async def serve_once():  # one call opens a connection, so the counters are not all zero
        async with app.app_context():
            assert (await ht.call("status")).code == 0
            await ht.close_app(app)

    asyncio.run(serve_once())
    result = app.test_cli_runner().invoke(args=["hypertable", "status", "--timeout", "10"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "main: pool, 1 host(s)" in out and "bind 'analytics': pool, 1 host(s)" in out
    assert one in out and " up " in out and "down" not in out
    assert "counters:" in out and f"{one}  opened=1 closed=1" in out

    app = build(Hypertable(), HYPERTABLE_HOSTS=[one, dead], HYPERTABLE_BINDS={"archive": [one, dead]})
    result = app.test_cli_runner().invoke(args=["hypertable", "status", "--timeout", "5"])
    assert result.exit_code == 1, result.output
    assert "main: replicas, 2 host(s)" in result.output and "bind 'archive': replicas, 2 host(s)" in result.output
    assert dead in result.output and "down" in result.output
    assert f"1 of 2 hosts down: {dead}; bind 'archive': 1 of 2 hosts down: {dead}" in result.output

    result = app.test_cli_runner().invoke(args=["hypertable", "status", "--timeout", "0"])
    assert result.exit_code == 2 and "--timeout" in result.output  # the option is checked as in Flask


def test_the_status_command_is_the_flask_ones():
    from htcluster._flask.cli import hypertable_cli as flask_group
    from htcluster._quart.cli import hypertable_cli as quart_group

    for group in (flask_group, quart_group):
        status = group.commands["status"]
        assert status.callback.__module__ == "htcluster._flask.commands"
        assert [p.name for p in status.params] == ["timeout"]


# ---------------------------------------------------------------- requests against brokers


@pytest.mark.asyncio
async def test_requests_write_read_and_stream(one):
    app = build(Hypertable(), HYPERTABLE_HOSTS=one)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        for i in range(3):
            assert (await client.post(f"/rows/r{i}", data=f"v{i}")).status_code == 201
        got = await client.get("/rows/r1")
        assert got.status_code == 200 and (await got.get_json()) == {"value": "v1"}
        cells = json.loads(await body(await client.get(f"/stream/{TABLE}")))
        assert {c["row"]: c["value"] for c in cells if c["row"] in ("r0", "r1", "r2")} == {
            "r0": "v0", "r1": "v1", "r2": "v2"}
        rows = json.loads(await body(await client.get(f"/stream/{TABLE}?by_row=1")))
        assert [r["row"] for r in rows] == sorted({c["row"] for c in cells})


@pytest.mark.asyncio
async def test_an_error_before_the_first_byte_reaches_the_error_handlers(one):
    app = build(Hypertable(), HYPERTABLE_HOSTS=one)
    async with app.test_app() as test_app:
        answer = await test_app.test_client().get("/stream/no_such_table")
        assert answer.status_code == 502 and "code" in await answer.get_json()


@pytest.mark.asyncio
async def test_the_request_connection_is_checked_out_once_and_given_back(one):
    ht = Hypertable()
    app = build(ht, HYPERTABLE_HOSTS=one)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        for _ in range(3):
            answer = await client.get("/connection")
            assert (await answer.get_json())["same"] is True
        async with app.app_context():
            stats = ht.stats()
        assert stats is not None
        (counters,) = stats.values()
        assert counters.get("in_use", 0) == 0


@pytest.mark.asyncio
async def test_recorded_queries_list_the_requests_calls(one):
    app = build(Hypertable(), HYPERTABLE_HOSTS=one, HYPERTABLE_RECORD_QUERIES=True)
    async with app.test_app() as test_app:
        recorded = await (await test_app.test_client().get("/recorded")).get_json()
    assert [q[0] for q in recorded] == ["status", "get_cell"]
    assert recorded[1][1] == one and recorded[1][2] == NS


@pytest.mark.asyncio
async def test_requests_are_answered_while_a_replica_is_killed(three):
    app = build(Hypertable(), HYPERTABLE_HOSTS=three.hosts, HYPERTABLE_TIMEOUT_MSECS=2000)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        assert (await client.post("/rows/before", data="b")).status_code == 201

        async def traffic(n: int) -> list[int]:
            codes = []
            for i in range(n):
                codes.append((await client.post(f"/rows/k{n}-{i}", data=str(i))).status_code)
                codes.append((await client.get("/rows/before")).status_code)
            return codes

        first = asyncio.create_task(traffic(10))
        await asyncio.sleep(0.05)
        await asyncio.to_thread(three.kill, 0)  # SIGKILL the write replica while requests run
        codes = await first + await traffic(10)
        assert set(codes) == {200, 201}
        rows = json.loads(await body(await client.get(f"/stream/{TABLE}?by_row=1")))
        assert {"before", "k10-9"} <= {r["row"] for r in rows}
    await asyncio.to_thread(three.start, 0)


@pytest.mark.asyncio
async def test_the_hosts_file_is_read_again_before_a_request(one, tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1:1\n")
    ht = Hypertable()
    app = build(ht, HYPERTABLE_HOSTS_FILE=str(hosts), HYPERTABLE_HOSTS_RELOAD=0)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        assert (await client.get("/rows/r0")).status_code == 503
        replacement = tmp_path / "hosts.new"
        replacement.write_text(f"{one}  # the live broker\n")
        replacement.replace(hosts)
        assert (await client.get("/rows/r0")).status_code in (200, 502)  # reached a broker
        async with app.app_context():
            assert list(ht.pools()) == [one]


def slow_app(ht: Hypertable, address: str) -> Quart:
    """An app on one host (strategy ``resources``, so the host has a health to keep) with a slow route."""
    app = build(ht, HYPERTABLE_HOSTS=address, HYPERTABLE_STRATEGY="resources")

    @app.get("/slow")
    async def slow():
        r = await ht.connection()
        return jsonify(code=(await r.call("status")).code)

    return app


def host_stats(ht: Hypertable, app: Quart) -> dict:
    (stats,) = app.extensions["hypertable"].stats().values()
    return stats


@pytest.mark.asyncio
async def test_a_request_cut_in_the_middle_of_a_call_gives_its_connection_back_and_leaves_the_host_up(
        one, fault_proxy_factory):
    proxy = fault_proxy_factory(one, latency=0.3)  # each call takes >= 0.6 s
    ht = Hypertable()
    app = slow_app(ht, proxy.address)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        async with client.request("/slow") as connection:
            await connection.send_complete()
            await asyncio.sleep(0.25)  # the view is waiting for the broker's answer
            await connection.disconnect()  # the client goes away: Quart cancels the request's task
        stats = host_stats(ht, app)
        assert stats["pool"]["in_use"] == 0  # the lease was released at teardown
        assert stats["health"]["live"] is True  # the caller left; the host did not fail
        assert stats["pool"]["idle"] == 0  # the cut connection was closed, not pooled
        answer = await client.get("/slow")  # the next request gets a clean connection
        assert answer.status_code == 200 and (await answer.get_json()) == {"code": 0}


@pytest.mark.asyncio
async def test_a_client_that_leaves_a_stream_closes_its_scan(one):
    ht = Hypertable()
    app = build(ht, HYPERTABLE_HOSTS=one, HYPERTABLE_STRATEGY="resources")
    async with app.test_app() as test_app:
        client = test_app.test_client()
        for i in range(5):
            await client.post(f"/rows/left{i}", data="x" * 40_000)  # a few chunks of 32 KiB
        async with client.request(f"/stream/{TABLE}") as connection:
            await connection.send_complete()
            first = await connection.receive()
            assert first.startswith(b"[")
            await connection.disconnect()
        for _ in range(100):  # the generator is closed as the response task ends
            if host_stats(ht, app)["pool"]["in_use"] == 0:
                break
            await asyncio.sleep(0.02)
        assert host_stats(ht, app)["pool"]["in_use"] == 0
        assert (await client.get("/rows/left0")).status_code == 200


@pytest.mark.asyncio
async def test_binds_and_shards_route_as_in_flask(one):
    ht = Hypertable()
    app = build(ht, HYPERTABLE_SHARDS={"eu": one}, HYPERTABLE_BINDS={"plain": {"hosts": one, "namespace": NS}})

    @app.get("/shard/<key>/<row>")
    async def shard(key, row):
        value = await ht.namespace(key=key).get_cell(TABLE, row, "a")
        plain = await ht.namespace(bind="plain").get_cell(TABLE, row, "a")
        return jsonify(value=value.decode(), plain=plain.decode(), status=(await ht.call("status", key=key)).code)

    @app.get("/shard-stream/<key>")
    async def shard_stream(key):
        return await ht.stream(TABLE, key=key)

    @app.get("/no-key")
    async def no_key():
        await ht.call("status")

    async with app.test_app() as test_app:
        client = test_app.test_client()
        async with app.app_context():
            await ht.call("hql_query", f"INSERT INTO {TABLE} VALUES ('s1', 'a', 'sv')", namespace=NS, key="eu")
        got = await (await client.get("/shard/eu/s1")).get_json()
        assert got == {"value": "sv", "plain": "sv", "status": 0}
        cells = json.loads(await body(await client.get("/shard-stream/eu")))
        assert {"row": "s1", "value": "sv"}.items() <= next(c for c in cells if c["row"] == "s1").items()
        assert (await client.get("/no-key")).status_code == 500  # TypeError: name the shard


@pytest.mark.asyncio
async def test_the_tls_settings_reach_a_tls_broker(tmp_path):
    trustme = pytest.importorskip("trustme")
    from htcluster.testing import LocalBroker

    ca = trustme.CA()
    ca_file, server = tmp_path / "ca.pem", tmp_path / "server.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(server))
    with LocalBroker(tls_cert=server) as broker:
        app = build(Hypertable(), HYPERTABLE_HOSTS=broker.address, HYPERTABLE_SSL_CA=str(ca_file))
        async with app.test_app() as test_app:
            answer = await test_app.test_client().get("/connection")
            assert (await answer.get_json())["status"] == 0
        plain = build(Hypertable(), HYPERTABLE_HOSTS=broker.address, HYPERTABLE_TIMEOUT_MSECS=2000)
        async with plain.test_app() as test_app:  # a plaintext client against a TLS broker: no answer
            assert (await test_app.test_client().get("/rows/r0")).status_code == 503


@pytest.mark.asyncio
async def test_replicas_lend_a_write_and_a_read_connection_per_app_context(three, one):
    ht = Hypertable()
    app = build(ht, HYPERTABLE_HOSTS=three.hosts)
    async with app.app_context():
        write, read = await ht.connection(), await ht.read_connection()
        assert write is not read
        assert await ht.connection() is write and await ht.read_connection() is read  # one of each per context
        assert str(write.host) == three.hosts[0]  # writes: the first healthy replica
        assert (await read.call("status")).code == 0
        assert sum(s["pool"]["in_use"] for s in ht.stats().values()) == 2
    async with app.app_context():
        assert sum(s["pool"]["in_use"] for s in ht.stats().values()) == 0  # both given back when the context ended
    single = Hypertable()
    one_app = build(single, HYPERTABLE_HOSTS=one)
    async with one_app.app_context():
        assert await single.read_connection() is await single.connection()  # one kind of connection for a pool


@pytest.mark.asyncio
async def test_a_namespace_must_be_named_when_none_is_configured(one):
    ht = Hypertable()
    app = build(ht, HYPERTABLE_HOSTS=one, HYPERTABLE_NAMESPACE=None, HYPERTABLE_BINDS={"other": one})
    async with app.app_context():
        with pytest.raises(ConfigError, match="HYPERTABLE_NAMESPACE is not set"):
            ht.namespace()
        with pytest.raises(ConfigError, match=r"HYPERTABLE_BINDS\['other'\]\['namespace'\] is not set"):
            ht.namespace(bind="other")
        assert await ht.namespace(NS).exists_table(TABLE) is True


@pytest.mark.asyncio
async def test_close_app_outside_a_context_closes_every_app_and_raises_a_failure_after(one, monkeypatch):
    ht = Hypertable()
    first, second = build(ht, HYPERTABLE_HOSTS=one), build(ht, HYPERTABLE_HOSTS=one)
    assert repr(ht) == "<Hypertable serving 2 app(s)>"
    for app in (first, second):
        async with app.app_context():
            assert (await ht.call("status")).code == 0
            assert ht.stats()[one]["idle"] == 1
    broken = first.extensions["hypertable"]
    real_close = broken.close

    async def failing_close() -> None:  # fault injection: the first app's close fails after closing
        await real_close()
        raise OSError("injected close failure")

    monkeypatch.setattr(broken, "close", failing_close)
    with pytest.raises(OSError, match="injected close failure"):
        await ht.close_app()
    for app in (first, second):  # the failure did not stop the other app's close
        async with app.app_context():
            assert ht.stats()[one]["idle"] == 0


@pytest.mark.asyncio
async def test_a_bound_namespace_calls_scans_and_says_where_it_goes(one):
    ht = Hypertable()
    app = build(ht, HYPERTABLE_HOSTS=one, HYPERTABLE_BINDS={"geo": {"shards": {"eu": one}, "namespace": NS}})
    async with app.app_context():
        ns = ht.namespace()
        await ns.hql_query(f"INSERT INTO {TABLE} VALUES ('bound', 'a', 'v')")
        assert await ns.call("get_cell", TABLE, "bound", "a") == b"v"
        async with ns.scan(TABLE) as cells:
            assert "bound" in [cell.key.row async for cell in cells]
        assert not hasattr(ns, "_repr_html_")  # a name with "_" (as IPython probes) is never a broker method
        assert repr(ns) == f"<AsyncBoundNamespace {NS!r} via {ht.settings.strategy}>"
        geo = ht.namespace(key="eu", bind="geo")
        assert repr(geo) == f"<AsyncBoundNamespace {NS!r} key='eu' bind='geo' via shards>"
        assert await geo.get_cell(TABLE, "bound", "a") == b"v"


@pytest.mark.asyncio
async def test_shards_lend_no_connection_without_a_key(one):
    ht = Hypertable()
    app = build(ht, HYPERTABLE_SHARDS={"eu": one})
    async with app.app_context():
        with pytest.raises(RuntimeError, match="shard"):
            await ht.connection()
        assert (await ht.call("status", key="eu")).code == 0
