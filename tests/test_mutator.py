"""Buffered mutators (issue 19): Replicas.mutator and Shards.mutator against real local brokers, and the pure buffer."""
from __future__ import annotations

import threading
import time

import pytest

from htcluster import Backoff, FlushError, MutatorFull, Replicas, Shards
from htcluster._policy.batches import Buffer, cell_size
from htcluster._policy.stamps import Stamper
from htcluster.events import CallStarted, CallSucceeded
from htcluster.testing import LocalCluster
from htcluster.types import Cell, Key, KeyFlag, ScanSpec

#: Where no timeout is under test: generous, so that a loaded 2-core machine cannot fail a test.
FAST = dict(socket_timeout=30.0, connect_timeout=5.0, backoff=Backoff(base=0.5, cap=2.0, jitter=0.0))
NS, TABLE = "mut", "t"


def cell(row: str, value: bytes = b"v", family: str = "c", ts: int | None = None,
         flag: KeyFlag | None = None) -> Cell:
    return Cell(Key(row, family, "", ts, None, flag), value)


def rows_of(client, table: str = TABLE) -> dict[str, list[bytes]]:
    """``{row: [values]}`` of every cell, read through one replica's Replicas.scan."""
    out: dict[str, list[bytes]] = {}
    for c in client.scan(table, ScanSpec(versions=1), namespace=NS, timeout=30.0):
        out.setdefault(c.key.row, []).append(c.value)
    return out


def create(call) -> None:
    call("hql_query", f"CREATE NAMESPACE {NS}", namespace="/")
    call("hql_query", f"CREATE TABLE {TABLE} (c, d)", namespace=NS)


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(2, shared_data=True) as c:
        yield c


@pytest.fixture
def replicas(cluster):
    for i in range(len(cluster)):
        if not cluster[i].running:
            cluster.start(i)
    with Replicas(cluster.hosts, **FAST) as r:
        if not r.call("namespace_exists", NS):
            create(r.call)
        else:
            r.call("hql_query", f"DROP TABLE IF EXISTS {TABLE}", namespace=NS)
            r.call("hql_query", f"CREATE TABLE {TABLE} (c, d)", namespace=NS)
        yield r


# ---------------------------------------------------------------- the pure buffer


def test_buffer_fills_to_its_limits_and_takes_stamped_batches_per_key():
    buffer = Buffer(max_cells=5, max_bytes=10_000, stamper=Stamper(tag=3))
    cells = [cell(f"r{i}") for i in range(8)]
    assert buffer.fill(cells, 0, lambda c: c.key.row[-1] in "02468") == 5
    assert buffer.full and len(buffer) == 5 and buffer.size == sum(cell_size(c) for c in cells[:5])
    batches = buffer.take()
    assert {b.key for b in batches} == {True, False} and not buffer.full and len(buffer) == 0
    stamps = {c.key.timestamp for b in batches for c in b.cells}
    assert None not in stamps and all(s % 4096 == 3 for s in stamps)
    assert cells[0].key.timestamp is None  # the caller's cells are never changed


def test_buffer_limits_bytes_and_keeps_order_of_repeated_keys_and_deletes():
    buffer = Buffer(max_cells=100, max_bytes=cell_size(cell("a", b"x" * 100)) * 2)
    assert buffer.fill([cell("a", b"x" * 100)] * 3, 0, None) == 2
    buffer.take()
    seq = [cell("a", b"1"), cell("a", b"", flag=KeyFlag.DELETE_ROW), cell("a", b"2")]
    buffer.fill(seq, 0, None)
    (batch,) = buffer.take()
    stamps = [c.key.timestamp for c in batch.cells]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3  # insert < delete < insert: order kept


def test_buffer_puts_back_in_front_and_books_failures():
    buffer = Buffer(max_cells=100)
    buffer.fill([cell("a"), cell("b")], 0, lambda c: c.key.row)
    taken = buffer.take()
    buffer.fill([cell("a", b"later")], 0, lambda c: c.key.row)
    buffer.put_back(taken)
    assert [c.value for c in buffer.pending()] == [b"v", b"later", b"v"]
    assert all(c.key.timestamp for c in buffer.pending()[:1])
    report = buffer.settle(taken, {"b": RuntimeError("no")}, {"b": 2})
    assert report.acknowledged == 1 and [b.key for b in report.failed] == ["b"]
    error = report.error("t")
    assert isinstance(error, FlushError) and [c.key.row for c in error.cells] == ["b"]
    stats = buffer.snapshot()
    assert stats["acknowledged"] == 1 and stats["failed"] == 1 and stats["failovers"] == 2
    assert stats["shards"]["b"]["failovers"] == 2 and stats["buffered"] == 3


def test_buffer_refuses_bad_limits_and_non_cells():
    from htcluster.errors import ConfigError
    with pytest.raises(ConfigError, match="max_cells"):
        Buffer(max_cells=0)
    with pytest.raises(TypeError, match="Cell"):
        Buffer().fill([("row", "c", b"v")], 0, None)  # type: ignore[list-item]


# ---------------------------------------------------------------- Replicas.mutator


def test_replicas_mutator_buffers_flushes_on_limit_and_on_leaving(replicas):
    with replicas.mutator(TABLE, namespace=NS, max_cells=10) as m:
        m.set_cells([cell(f"r{i:03d}") for i in range(25)])
        assert m.stats()["acknowledged"] == 20 and m.stats()["buffered"] == 5
        m.set_cell(cell("r999", family="d"))
        m.set_cell(cell("r000", b"", flag=KeyFlag.DELETE_ROW))  # a delete, after the insert of r000
    stats = m.stats()
    assert stats["acknowledged"] == 27 and stats["buffered"] == 0 and stats["flushes"] == 3
    assert stats["shards"][None]["cells"] == 27
    rows = rows_of(replicas)
    assert "r000" not in rows and len(rows) == 25 and rows["r999"] == [b"v"]
    with pytest.raises(RuntimeError, match="closed"):
        m.set_cell(cell("x"))


def test_replicas_mutator_fails_over_mid_flush_without_loss_or_duplicates(replicas, cluster):
    first = replicas.order[0]
    sent = threading.Event()

    def pause_primary(event) -> None:
        if isinstance(event, CallStarted) and event.method == "set_cells" and event.host == first \
                and not sent.is_set():
            sent.set()
            cluster.kill(0)  # the first flush's request goes to a dead broker

    replicas.listeners.register(pause_primary)
    try:
        with replicas.mutator(TABLE, namespace=NS, max_cells=50) as m:
            m.set_cells([cell(f"f{i:03d}") for i in range(120)])
        assert sent.is_set() and m.stats()["failovers"] >= 1 and m.stats()["acknowledged"] == 120
    finally:
        replicas.listeners.unregister(pause_primary)
        cluster.start(0)
    rows = rows_of(replicas)
    assert sorted(rows) == [f"f{i:03d}" for i in range(120)] and all(v == [b"v"] for v in rows.values())


def test_a_flush_that_cannot_complete_raises_flush_error_with_the_cells(tmp_path):
    with LocalCluster(1, shared_data=True, data_dir=tmp_path) as cluster, \
            Replicas(cluster.hosts, socket_timeout=5.0, connect_timeout=1.0, retry=0) as r:
        create(r.call)
        m = r.mutator(TABLE, namespace=NS, max_cells=1000)
        m.set_cells([cell(f"e{i}") for i in range(30)])
        cluster.kill(0)
        with pytest.raises(FlushError) as info:
            m.flush()
        assert len(info.value.cells) == 30 and all(c.key.timestamp for c in info.value.cells)
        assert m.stats()["failed"] == 30 and m.pending() == []
        m2 = r.mutator(TABLE, namespace=NS, max_cells=10)
        given = [cell(f"g{i:02d}") for i in range(35)]
        with pytest.raises(FlushError) as rest:  # the first 10 fail; the 25 after them were never taken
            m2.set_cells(given)
        assert [c.key.row for c in rest.value.cells] == [c.key.row for c in given] and m2.pending() == []
        assert all(c.key.timestamp for c in rest.value.cells[:10]) and rest.value.cells[10:] == given[10:]
        cluster.start(0)
        m.set_cells(info.value.cells)  # stamped: a resend is safe
        m.close()
        m2.set_cells(rest.value.cells)
        m2.close()
        assert len(rows_of(r)) == 65


def test_ctrl_c_during_a_flush_leaves_cells_acknowledged_or_pending(replicas):
    class Interrupt:
        def __init__(self, kind) -> None:
            self.kind, self.armed = kind, True

        def __call__(self, event) -> None:
            if isinstance(event, self.kind) and event.method == "set_cells" and self.armed:
                self.armed = False
                raise KeyboardInterrupt

    before_send = Interrupt(CallStarted)
    replicas.listeners.register(before_send)
    m = replicas.mutator(TABLE, namespace=NS, max_cells=1000)
    try:
        with pytest.raises(KeyboardInterrupt):
            with m:
                m.set_cells([cell(f"k{i:02d}") for i in range(40)])
                m.flush()
    finally:
        replicas.listeners.unregister(before_send)
    assert m.closed and len(m.pending()) == 40 and m.stats()["acknowledged"] == 0  # not sent: all pending
    assert all(c.key.timestamp for c in m.pending())

    after_answer = Interrupt(CallSucceeded)
    replicas.listeners.register(after_answer)
    m2 = replicas.mutator(TABLE, namespace=NS, max_cells=1000)
    try:
        m2.set_cells(m.pending())
        with pytest.raises(KeyboardInterrupt):
            m2.flush()
    finally:
        replicas.listeners.unregister(after_answer)
    assert m2.pending() == [] and m2.stats()["acknowledged"] == 40  # answered before the interrupt
    m2.close()
    assert sorted(rows_of(replicas)) == [f"k{i:02d}" for i in range(40)]


def test_backpressure_waits_or_raises_while_a_broker_is_paused(tmp_path):
    with LocalCluster(1, shared_data=True, data_dir=tmp_path) as cluster, \
            Replicas(cluster.hosts, socket_timeout=30.0, connect_timeout=5.0) as r:
        create(r.call)
        m = r.mutator(TABLE, namespace=NS, max_cells=10, flush_interval=0.05, block=False)
        m.set_cells([cell(f"p{i}") for i in range(5)])  # below the limit: the timer flushes it
        deadline = time.monotonic() + 30
        while m.stats()["acknowledged"] < 5:
            assert time.monotonic() < deadline, "the timer did not flush"
            time.sleep(0.02)
        cluster.pause(0)
        try:
            m.set_cells([cell(f"q{i}") for i in range(5)])
            deadline = time.monotonic() + 30
            while not m.pending() == []:  # the timer took them and hangs on the paused broker
                assert time.monotonic() < deadline
                time.sleep(0.02)
            m.set_cells([cell(f"s{i}") for i in range(10)])  # fills the buffer: the flush is still in flight
            with pytest.raises(MutatorFull) as info:
                m.set_cells([cell("t0"), cell("t1")])
            assert [c.key.row for c in info.value.cells] == ["t0", "t1"]
            m.block = True
            waited = threading.Event()

            def writer() -> None:
                m.set_cells([cell("u0")])
                waited.set()

            thread = threading.Thread(target=writer)
            thread.start()
            time.sleep(0.3)
            assert not waited.is_set()  # blocked behind the paused flush
        finally:
            cluster.resume(0)
        thread.join(60)
        assert waited.is_set()
        m.close()
        assert m.stats()["acknowledged"] == 21 and len(rows_of(r)) == 21


# ---------------------------------------------------------------- Shards.mutator and scan_all


@pytest.fixture(scope="module")
def shard_cluster():
    with LocalCluster(4, shared_data=False) as c:
        yield c


@pytest.fixture
def shards(shard_cluster):
    for i in range(len(shard_cluster)):
        if not shard_cluster[i].running:
            shard_cluster.start(i)
    hosts = shard_cluster.hosts  # shards a and b are two brokers each: a group that fails over
    with Shards([(hosts[0], "a"), (hosts[1], "b"), (hosts[2], "c"), (hosts[3], "d")], **FAST) as s:
        for pool in s.pools.values():
            if not pool.call("namespace_exists", NS):
                create(pool.call)
            else:
                pool.call("hql_query", f"DROP TABLE IF EXISTS {TABLE}", namespace=NS)
                pool.call("hql_query", f"CREATE TABLE {TABLE} (c, d)", namespace=NS)
        yield s


def test_shards_mutator_routes_by_locate_and_flushes_all_shards_in_one_round(shards, shard_cluster):
    rows = [f"row{i:04d}" for i in range(400)]
    calls: list[str] = []
    shards.listeners.register(lambda e: calls.append(e.host) if isinstance(e, CallStarted) else None)
    with shards.mutator(TABLE, namespace=NS, max_cells=10_000) as m:
        m.set_cells([cell(r) for r in rows])
    assert len(calls) == 4  # one set_cells per shard, sent at once
    stats = m.stats()
    assert stats["acknowledged"] == 400 and set(stats["shards"]) == {"a", "b", "c", "d"}
    for key, host in zip("abcd", shard_cluster.hosts):
        expected = sorted(r for r in rows if shards.locate(r) == key)
        found = sorted(c.key.row for c in shards.pools[host].scan(TABLE, namespace=NS))
        assert found == expected and stats["shards"][key]["cells"] == len(expected) > 0


def test_shards_mutator_key_function_and_scan_all_merges_in_row_order(shards):
    with shards.mutator(TABLE, namespace=NS, key=lambda row: "abcd"[int(row[-1]) % 4], max_cells=37) as m:
        for i in range(300):
            m.set_cell(cell(f"k{i:04d}"))
    assert m.stats()["shards"]["a"]["cells"] == 30 * 3  # last digits 0, 4, 8
    merged = [c.key.row for c in shards.scan_all(TABLE, namespace=NS)]
    assert merged == [f"k{i:04d}" for i in range(300)]
    with pytest.raises(KeyError, match="not a shard key"):
        with shards.mutator(TABLE, namespace=NS, key=lambda row: "zz") as bad:
            bad.set_cell(cell("x"))


def test_scan_all_resumes_a_shard_on_another_host_after_a_kill(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with LocalCluster(2, shared_data=True, data_dir=tmp_path / "a") as group, \
            LocalCluster(1, shared_data=True, data_dir=tmp_path / "b") as single, \
            Shards([(group.hosts[0], "a"), (group.hosts[1], "a"), (single.hosts[0], "b")], **FAST) as s:
        for host in (group.hosts[0], single.hosts[0]):
            create(s.pools[host].call)
        with s.mutator(TABLE, namespace=NS) as m:
            m.set_cells([cell(f"s{i:04d}", b"x" * 1000) for i in range(2000)])  # several 512 kB batches
        fetches: list[str] = []

        def kill_mid_scan(event) -> None:  # the second batch of shard a: its broker dies as it is asked
            if isinstance(event, CallStarted) and event.method == "scanner_get_cells" and event.host in group.hosts:
                fetches.append(event.host)
                if len(fetches) == 2:
                    group.kill(group.hosts.index(event.host))

        s.listeners.register(kill_mid_scan)
        got = [c.key.row for c in s.scan_all(TABLE, ScanSpec(versions=1), namespace=NS, timeout=30.0)]
        assert got == [f"s{i:04d}" for i in range(2000)]
        assert len(set(fetches)) == 2  # shard a resumed on its other broker
        assert s.failovers >= 1


def test_scan_all_closes_every_scanner_on_early_exit(shards):
    with shards.mutator(TABLE, namespace=NS) as m:
        m.set_cells([cell(f"e{i:04d}") for i in range(2000)])
    stream = shards.scan_all(TABLE, namespace=NS)
    assert next(stream).key.row == "e0000"
    stream.close()
    assert all(pool.in_use == 0 for pool in shards.pools.values())
