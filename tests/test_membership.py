"""Live membership: add, remove (drained or cut), set_hosts on Resources, Replicas and Shards while calls flow."""
from __future__ import annotations

import random
import socket
import threading
import time

import pytest

from brokertest import cluster_with_namespace
from htcluster import Backoff, Replicas, Resources, Shards
from htcluster._policy.health import HostHealth
from htcluster._routing.members import Members
from htcluster.errors import ConfigError
from htcluster.events import CallStarted, HostDown, Listeners, MembershipChanged
from htcluster.testing import FaultProxy
from htcluster.types import Cell, Key, ScanSpec

#: Where no timeout is under test: generous, so that a loaded 2-core machine cannot fail a test.
FAST = dict(socket_timeout=30.0, connect_timeout=5.0, backoff=Backoff(base=0.5, cap=2.0, jitter=0.0))
NS = "membertest"


# ---------------------------------------------------------------- values, no broker


class FakePool:
    def __init__(self, name: str, in_use: int = 0) -> None:
        self.name, self.in_use = name, in_use


def test_a_snapshot_keeps_removed_pools_reachable_by_name_while_they_drain():
    a, b = FakePool("a"), FakePool("b", in_use=1)
    old = Members({"a": a, "b": b})
    made: list[str] = []

    def make(host):
        made.append(str(host))
        return FakePool(str(host))

    from htcluster.hosts import Host
    new, removed = old.changed([Host.parse("a:1"), Host.parse("c:1")], make, now=10.0)
    assert removed == [a, b] and made == ["a:1", "c:1"]
    new, removed = old.changed([Host.parse("c:1")], make, now=10.0)
    assert list(new) == ["c:1"] and "a" not in new and "b" not in new
    assert new["b"] is b and new["a"] is a  # a call that chose them before the change still finds them
    assert new.restrict(("b", "c:1")) == ("c:1",)  # a new call does not choose them
    assert new.restrict(("a", "b")) == ("a", "b")  # ... unless nothing else is left: they drain
    assert new.restrict(new.hosts) is new.hosts
    # a later change drops the idle retired pool once the grace passed, keeps the busy one
    later, _ = new.changed([Host.parse("c:1")], make, now=1000.0)
    assert "a" not in later.retired and later["b"] is b
    # adding a draining host back takes its pool back
    again, _ = new.changed([Host.parse("c:1"), Host.parse("b")], make, now=11.0)
    assert "b:15867" in again


def test_health_learns_new_hosts_and_forgets_removed_ones():
    seen: list[object] = []
    registry = Listeners(parent=None)
    registry.register(seen.append)
    health = HostHealth(["a:1", "b:1"], backoff=Backoff(base=1.0, jitter=0.0), clock=lambda: 0.0,
                        listeners=registry)
    health.failed("a:1", OSError("x"))
    health.lagged("b:1")
    assert not health.all_live
    health.track(["b:1", "c:1"])
    assert health.all_live is False and health.lagging("b:1")  # b kept with its lag
    health.succeeded("b:1")
    assert health.all_live and "a:1" not in health.down()
    seen.clear()
    assert health.failed("a:1", OSError("late")) == 0.0  # a call in flight on a removed host: ignored
    assert health.lagged("a:1") == 0.0
    assert seen == [] and health.all_live and health.state("a:1").live
    health.failed("c:1", OSError("y"))
    assert isinstance(seen[0], HostDown) and seen[0].host == "c:1"
    health.track(["a:1"])  # tracked again: starts live
    assert health.all_live and health.usable("a:1")


def test_bad_membership_input_is_a_typed_error():
    with Resources("h1:1,h2:1") as rs:
        for bad, words in ((lambda: rs.set_hosts([]), "no hosts"), (lambda: rs.set_hosts(""), "no hosts"),
                           (lambda: rs.set_hosts("http://h1"), "URL"),
                           (lambda: rs.set_hosts(["h1:1", "h2:notaport"]), "h2"),
                           (lambda: rs.remove("h9:1"), "not one of the hosts"),
                           (lambda: rs.remove("h1:1", drain="yes"), "drain"),  # type: ignore[arg-type]
                           (lambda: rs.add("h3:99999"), "99999")):
            with pytest.raises(ConfigError, match=words):
                bad()
        assert rs.hosts == ("h1:1", "h2:1")
        rs.remove("h1:1")
        with pytest.raises(ConfigError, match="last host"):
            rs.remove("h2:1")
        assert rs.add("h2") == "h2:15867" and rs.add("h2:15867") == "h2:15867"
        assert rs.hosts == ("h2:1", "h2:15867")
    with Shards([("h1:1", "eu"), ("h2:1", "us"), ("h3:1", "us")]) as shards:
        with pytest.raises(ConfigError, match="without a host"):
            shards.remove("h1:1")
        with pytest.raises(ConfigError, match="does not serve"):
            shards.remove("h1:1", key="us")
        with pytest.raises(ConfigError, match="float"):
            shards.add("h4:1", 1.5)
        with pytest.raises(ConfigError, match="pairs"):
            shards.set_hosts("h1:1")
        assert shards.pairs == [("h1:1", "eu"), ("h2:1", "us"), ("h3:1", "us")]  # nothing changed


def test_the_mapping_view_follows_the_snapshot_and_stats_show_the_members():
    events: list[MembershipChanged] = []
    with Replicas("h1:1,h2:1", **FAST) as replicas:
        replicas.listeners.register(lambda e: events.append(e) if isinstance(e, MembershipChanged) else None)
        replicas.set_hosts("h3:1,h1:1")
        assert replicas.order == ("h3:1", "h1:1") == tuple(replicas) == tuple(replicas.stats())
        assert "h2:1" not in replicas and len(replicas) == 2
        with pytest.raises(KeyError):
            replicas["h2:1"]
        assert events == [MembershipChanged(("h3:1",), ("h2:1",), ("h3:1", "h1:1"), True)]
        replicas.set_hosts(["h3:1", "h1:1"])  # no change: no event
        assert len(events) == 1
        assert "h2:1" not in replicas.health.down() and replicas.health.all_live


# ---------------------------------------------------------------- real brokers


@pytest.fixture(scope="module")
def cluster():
    with cluster_with_namespace(4, NS, **FAST) as c:
        yield c


def fresh_table(replicas: Replicas, name: str) -> None:
    replicas.call("hql_query", f"DROP TABLE IF EXISTS {name}", namespace=NS)
    replicas.call("hql_query", f"CREATE TABLE {name} (c)", namespace=NS)


def test_add_remove_and_replace_while_eight_threads_write(cluster):
    """Nothing lost, nothing twice, no error, while the hosts change under 8 writing threads."""
    a, b, c, d = cluster.hosts
    with Replicas([a, b], rng=random.Random(5), **FAST) as replicas:
        fresh_table(replicas, "churn")
        stop = threading.Event()
        errors: list[BaseException] = []
        acked: list[str] = []
        lock = threading.Lock()

        def writer(n: int) -> None:
            i = 0
            while not stop.is_set() or i < 20:
                row = f"w{n}-{i:05d}"
                try:
                    replicas.call("set_cells", "churn", [Cell(Key(row, "c", ""), b"x")], namespace=NS)
                except BaseException as exc:  # noqa: BLE001 (every error is a failure of the test)
                    errors.append(exc)
                    return
                with lock:
                    acked.append(row)
                i += 1

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for change in (lambda: replicas.add(c), lambda: replicas.remove(a), lambda: replicas.set_hosts([d, b]),
                       lambda: replicas.set_hosts([a, c, d]), lambda: replicas.remove(c, drain=True)):
            time.sleep(0.15)
            change()
        stop.set()
        for t in threads:
            t.join(60)
        assert errors == []
        assert replicas.order == (a, d)
        cells = replicas.call("get_cells", "churn", ScanSpec(), namespace=NS)
        rows = [cell.key.row for cell in cells]
        assert len(rows) == len(set(rows)) and sorted(rows) == sorted(acked)
        assert len(acked) >= 8 * 20
        if replicas.failovers == 0:  # no retry at all: not even a repeated version is stored
            with replicas.connection(write=True) as r:
                assert len(r.get_cells(r.mns[NS], "churn", ScanSpec())) == len(acked)


def test_a_drained_host_finishes_its_call_gets_no_new_one_and_closes_its_connections(cluster):
    a, b = cluster.hosts[:2]
    with FaultProxy(a, latency=0.3) as slow:
        started: list[str] = []
        with Resources([slow.address, b], **FAST) as rs:
            rs.listeners.register(lambda e: started.append(e.host) if isinstance(e, CallStarted) else None)
            with rs.connection(host=slow.address):
                with rs.connection(host=slow.address):
                    pass  # two idle connections to the slow host: one takes the call, one stays idle
            result: list[object] = []
            call = threading.Thread(target=lambda: result.append(rs.unicast("status", hosts=[slow.address])))
            call.start()
            deadline = time.monotonic() + 10
            while slow.address not in started and time.monotonic() < deadline:
                time.sleep(0.005)  # the call has started on the slow host
            pool = rs[slow.address]
            assert pool.in_use == 1 and pool.idle == 1
            started.clear()
            rs.remove(slow.address, drain=True)
            assert pool.idle == 0  # its idle connection closed at once
            for _ in range(5):
                rs.unicast("status")  # new calls go to b only
            call.join(30)
            assert result and result[0] is not None  # the call in flight finished
            assert set(started) == {b}
            stats = pool.stats()
            assert stats["in_use"] == 0 and stats["opened"] == stats["closed"]  # every connection closed
            assert list(rs.stats()) == [b]


def test_remove_without_drain_cuts_calls_in_flight_and_they_fail_over(cluster):
    a, b = cluster.hosts[:2]
    with FaultProxy(a, latency=0.5) as slow:
        with Replicas([slow.address, b], **FAST) as replicas:
            replicas.call("status", write=True)  # warm: a connection to the slow host
            result: list[object] = []
            errors: list[BaseException] = []

            def read() -> None:
                try:
                    result.append(replicas.call("status", write=True))
                except BaseException as exc:  # noqa: BLE001
                    errors.append(exc)

            call = threading.Thread(target=read)
            call.start()
            pool = replicas[slow.address]
            deadline = time.monotonic() + 10
            while pool.in_use == 0 and time.monotonic() < deadline:
                time.sleep(0.005)
            replicas.remove(slow.address, drain=False)
            call.join(30)
            assert errors == [] and result  # cut, then answered by b
            assert replicas.failovers == 1
            assert pool.stats()["in_use"] == 0 and pool.idle == 0
            assert replicas.health.all_live  # the cut host was forgotten, not marked down


def test_shards_re_cover_after_a_pair_is_added(cluster):
    a, b, c = cluster.hosts[:3]
    with Shards([(a, "eu"), (b, "us")], **FAST) as shards:
        assert sorted(shards.multicast(["eu", "us"], "status")) == sorted([a, b])
        shards.add(c, "eu")
        shards.add(c, "us")
        assert shards.cover(["eu", "us"]) == [c]
        assert list(shards.multicast(["eu", "us"], "status")) == [c]
        shards.remove(a)
        assert shards["eu"] == {c} and a not in shards.resources
        shards.set_hosts({b: ["us", "asia"], c: ["eu"]})
        assert dict(shards) == {"us": {b}, "asia": {b}, "eu": {c}}
        assert set(shards.resources.hosts) == {b, c}
        assert shards.locate("row") in {"us", "asia", "eu"}
        assert shards.unicast("asia", "status") is not None


def test_a_name_is_resolved_again_for_each_new_connection(cluster, monkeypatch):
    """A DNS change (here: a resolver hook) reaches the next connection without a restart."""
    a, b = cluster.hosts[:2]
    real = socket.getaddrinfo
    target = {"port": int(a.rsplit(":", 1)[1])}

    def resolve(host, port, *args, **kwargs):
        if host == "flip.invalid":
            return real("127.0.0.1", target["port"], *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with Replicas(["flip.invalid:15867", b], **FAST) as replicas:
        with replicas.connection(write=True) as r:
            assert str(r.host) == "flip.invalid:15867" and r.connection.sock.getpeername()[1] == target["port"]
        target["port"] = int(b.rsplit(":", 1)[1])  # the name now points to b
        replicas.close()  # idle connections go (a restart of the old address would do the same)
        with replicas.connection(write=True) as r:
            assert r.connection.sock.getpeername()[1] == target["port"]


# ---------------------------------------------------------------- the Flask extension


def test_flask_reads_the_hosts_file_again_when_it_changes(cluster, tmp_path, caplog):
    from flask import Flask, jsonify

    from htcluster.flask_ext import Hypertable

    a, b, c = cluster.hosts[:3]
    path = tmp_path / "hosts"
    path.write_text(f"# the brokers\n{a}\n")
    ext = Hypertable()
    app = Flask("members")
    app.config.update(HYPERTABLE_HOSTS_FILE=str(path), HYPERTABLE_HOSTS_RELOAD=0)
    ext.init_app(app)

    @app.get("/hosts")
    def hosts():
        ext.call("status")
        return jsonify(list(ext.cluster.hosts))

    def replace_file(text: str) -> None:
        new = tmp_path / "hosts.new"
        new.write_text(text)
        new.replace(path)  # atomically, as documented

    client = app.test_client()
    assert client.get("/hosts").json == [a]
    with app.app_context():
        assert isinstance(ext.cluster, Replicas)  # one host, yet not a fixed pool: its hosts may change
    replace_file(f"{b}, {c}  # two now\n")
    assert client.get("/hosts").json == [b, c]
    replace_file("not a:port\n")
    with caplog.at_level("WARNING", logger="htcluster.flask_ext"):
        assert client.get("/hosts").json == [b, c]  # a broken file keeps the hosts
    assert "keeping the current hosts" in caplog.text and "HYPERTABLE_HOSTS_FILE" in caplog.text
    with app.app_context():
        ext.add_host(a)
        ext.remove_host(b)
        assert ext.cluster.hosts == (c, a)
        ext.set_hosts([a])
        assert ext.cluster.hosts == (a,)
        with pytest.raises(TypeError, match="shards"):
            ext.add_host(b, key="eu")
        with pytest.raises(ConfigError, match="last host"):
            ext.remove_host(a)
    ext.close_app(app)


def test_flask_checks_the_hosts_file_at_most_once_per_interval(cluster, tmp_path):
    from htcluster._flask.hostsfile import HostsFile

    a, b = cluster.hosts[:2]
    path = tmp_path / "hosts"
    path.write_text(a)
    applied: list[list[str]] = []
    now = [0.0]
    watcher = HostsFile(str(path), 1.0, 15867, lambda hosts: applied.append([str(h) for h in hosts]),
                        clock=lambda: now[0])
    path.write_text(f"{a} {b}")
    assert not watcher.poll()  # not due yet: not even a stat
    now[0] = 1.0
    assert watcher.poll() and applied == [[a, b]]
    now[0] = 5.0
    assert not watcher.poll() and watcher.reloads == 1  # unchanged
