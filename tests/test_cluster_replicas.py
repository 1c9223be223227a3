"""Replicas: stamped writes, collapsed reads, failover without loss or duplicates, resumable scans."""
from __future__ import annotations

import collections
import random
import threading
import time

import pytest

from brokertest import cluster_with_namespace
from htcluster import Replicas
from htcluster._policy.versions import collapse
from htcluster._routing.replicas import next_timestamp, stamp_cells
from htcluster._policy.versions import widen_versions
from htcluster.errors import BrokerUnavailable, NoHostAvailable, WriteOutcomeUnknown
from htcluster import Backoff
from htcluster._policy.resume import ScanProgress, scan_units
from htcluster import Resource
from htcluster.testing import FaultProxy, ManualClock
from htcluster.types import Cell, CellInterval, Key, KeyFlag, RowInterval, ScanSpec

#: Where no timeout is under test: generous, so that a loaded 2-core machine cannot fail a test.
FAST = dict(socket_timeout=30.0, connect_timeout=5.0, backoff=Backoff(base=0.5, cap=2.0, jitter=0.0))
#: Where a broker that never answers must time out: the timeout is what is tested.
SHORT = dict(FAST, socket_timeout=1.0)
NS = "reptest"


def cell(row: str, column: str = "c", value: bytes = b"v", ts: int | None = None, rev: int | None = None) -> Cell:
    family, _, qualifier = column.partition(":")
    return Cell(Key(row, family, qualifier, timestamp=ts, revision=rev), value)


# ---------------------------------------------------------------- values, no broker


def test_next_timestamp_is_strictly_increasing_across_threads():
    stamps: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        mine = [next_timestamp() for _ in range(5000)]
        assert mine == sorted(mine) and len(set(mine)) == len(mine)
        with lock:
            stamps.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(set(stamps)) == 20000
    assert abs(max(stamps) - time.time_ns()) < 60 * 10**9  # nanoseconds since the epoch


def test_stamp_cells_copies_and_keeps_given_timestamps():
    given = cell("a", ts=5)
    bare = cell("b")
    keyless = Cell(None, b"x")
    out = stamp_cells([given, bare, keyless])
    assert out[0] is given and out[2] is keyless
    assert out[1] is not bare and out[1].key is not bare.key
    assert bare.key.timestamp is None  # the caller's cell is unchanged
    assert out[1].key.timestamp > 0 and out[1].key.row == "b" and out[1].value == b"v"
    single = stamp_cells(bare)
    assert isinstance(single, Cell) and single.key.timestamp > out[1].key.timestamp


def test_collapse_keeps_the_newest_revision_of_repeats():
    cells = [cell("a", ts=10, rev=3, value=b"new"), cell("a", ts=10, rev=2, value=b"old"),
             cell("a", ts=9, rev=1), cell("a", "c:q", ts=10, rev=1), cell("b", ts=10, rev=1, value=b"x"),
             cell("b", ts=10, rev=4, value=b"y"), cell("c")]
    deleted = Cell(Key("a", "c", "", timestamp=10, revision=5, flag=KeyFlag.DELETE_CELL))
    out = collapse(cells + [deleted])
    assert [(c.key.row, c.key.column_qualifier, c.key.timestamp, c.value) for c in out] == [
        ("a", "", 10, b"new"), ("a", "", 9, b"v"), ("a", "q", 10, b"v"), ("b", "", 10, b"y"), ("c", "", None, b"v"),
        ("a", "", 10, None)]


def test_collapse_keeps_the_newest_versions_of_each_column():
    cells = [cell("a", ts=30, rev=6), cell("a", ts=30, rev=5), cell("a", ts=20, rev=4), cell("a", ts=10, rev=3),
             cell("a", "c:q", ts=5), cell("b", ts=7)]
    deleted = Cell(Key("a", "c", "", timestamp=40, revision=7, flag=KeyFlag.DELETE_CELL))
    out = collapse([deleted] + cells, versions=2)
    assert [(c.key.row, c.key.column_qualifier, c.key.timestamp) for c in out] == [
        ("a", "", 40), ("a", "", 30), ("a", "", 20), ("a", "q", 5), ("b", "", 7)]
    assert out[1].key.revision == 6
    assert collapse(cells, versions=0) == collapse(cells)


def test_widen_versions():
    spec = ScanSpec(versions=3, row_limit=5)
    wide, keep = widen_versions(spec, 2)
    assert (wide.versions, wide.row_limit, keep) == (6, 5, 3) and spec.versions == 3
    for same in (ScanSpec(), ScanSpec(versions=1), ScanSpec(versions=3, cell_limit=10),
                 ScanSpec(versions=3, cell_offset=1), ScanSpec(versions=3, cell_limit_per_family=1)):
        assert widen_versions(same, 3) == (same, 0)
    assert widen_versions(spec, 1) == (spec, 0)


def test_units_split_intervals():
    spec = ScanSpec(row_intervals=[RowInterval("a", True, "b", True), RowInterval("m", True, "n", True)],
                    row_limit=2)
    units = scan_units(spec)
    assert [u.row_intervals[0].start_row for u in units] == ["a", "m"] and all(u.row_limit == 2 for u in units)
    assert len(spec.row_intervals) == 2  # not modified
    assert scan_units(ScanSpec()) == [ScanSpec()]
    filtered = ScanSpec(row_intervals=spec.row_intervals, scan_and_filter_rows=True)
    assert scan_units(filtered) == [filtered]


def test_progress_resumes_after_the_last_complete_row():
    spec = ScanSpec(row_intervals=[RowInterval("a", True, "z", False)], row_limit=10, cell_limit=100,
                    row_offset=1)
    progress = ScanProgress(spec)
    delivered = list(progress.feed([cell("b"), cell("b", "c:2"), cell("c")]))
    assert [c.key.row for c in delivered] == ["b", "b"]  # row c may still continue
    delivered = list(progress.feed([cell("c", "c:2"), cell("d")]))
    assert [c.key.row for c in delivered] == ["c", "c"]
    progress.resume()
    rest = progress.spec
    assert rest.row_intervals[0].start_row == "c" and rest.row_intervals[0].start_inclusive is False
    assert rest.row_intervals[0].end_row == "z" and rest.row_intervals[0].end_inclusive is False
    assert (rest.row_limit, rest.cell_limit, rest.row_offset) == (8, 96, 0)
    assert spec.row_intervals[0].start_row == "a" and spec.row_limit == 10  # not modified
    assert list(progress.feed([cell("d"), cell("e")])) == [cell("d")]
    assert [c.key.row for c in progress.finish()] == ["e"]
    assert progress.spec is None


def test_progress_stops_when_the_limit_was_reached():
    progress = ScanProgress(ScanSpec(row_limit=1))
    list(progress.feed([cell("a"), cell("b")]))
    progress.resume()
    assert progress.spec is None


def test_progress_before_any_row_and_with_cell_intervals():
    spec = ScanSpec(cell_intervals=[CellInterval("a", "c", True, "z", "c", True)])
    progress = ScanProgress(spec)
    list(progress.feed([cell("a")]))
    progress.resume()
    assert progress.spec is spec  # nothing complete yet: start again
    list(progress.feed([cell("a"), cell("b")]))
    progress.resume()
    assert progress.spec is spec and progress.skip_through == "a"
    assert [c.key.row for c in progress.feed([cell("a"), cell("b"), cell("c")])] == ["b"]


# ---------------------------------------------------------------- real brokers


@pytest.fixture(scope="module")
def cluster():
    with cluster_with_namespace(3, NS, **FAST) as c:
        yield c


def fresh_table(replicas: Replicas, name: str) -> None:
    replicas.call("hql_query", f"DROP TABLE IF EXISTS {name}", namespace=NS)
    replicas.call("hql_query", f"CREATE TABLE {name} (c, d)", namespace=NS)


def raw_cells(address: str, table: str) -> list[Cell]:
    """Every stored revision, read on one plain connection."""
    with Resource(address, socket_timeout=10.0) as r:
        return r.get_cells(r.mns[NS], table, ScanSpec())


def test_reads_collapse_repeated_versions(cluster):
    with Replicas(cluster.hosts, **FAST) as replicas:
        fresh_table(replicas, "dup")
        stamped = stamp_cells([cell("r1", value=b"one"), cell("r2", "d:x", value=b"two")])
        replicas.call("set_cells", "dup", stamped, namespace=NS)
        replicas.call("set_cells", "dup", stamped, namespace=NS)  # a retried write
        assert len(raw_cells(cluster.hosts[0], "dup")) == 4
        for cells in (replicas.call("get_cells", "dup", ScanSpec(), namespace=NS),
                      replicas.call("hql_query", "SELECT * FROM dup", namespace=NS).cells,
                      list(replicas.scan("dup", namespace=NS))):
            assert [(c.key.row, c.value) for c in cells] == [("r1", b"one"), ("r2", b"two")]
        assert len(replicas.call("get_row", "dup", "r1", namespace=NS)) == 1


def test_versions_asked_for_survive_collapsing(cluster):
    """Three versions of a cell, each written twice (a retry): versions=2 still gives two of them."""
    with Replicas(cluster.hosts, **FAST) as replicas:
        fresh_table(replicas, "vers")
        stamped = stamp_cells([cell("r", value=b"%d" % i) for i in range(3)])
        for _ in range(2):
            replicas.call("set_cells", "vers", stamped, namespace=NS)
        spec = ScanSpec(versions=2)
        assert len(raw_cells(cluster.hosts[0], "vers")) == 6
        for cells in (replicas.call("get_cells", "vers", spec, namespace=NS),
                      list(replicas.scan("vers", spec, namespace=NS))):
            assert [c.value for c in cells] == [b"2", b"1"]
        assert spec.versions == 2  # the caller's spec is not changed


def test_writes_go_to_the_first_host_reads_are_balanced(cluster):
    with Replicas(cluster.hosts, **FAST) as replicas:
        for _ in range(10):
            replicas.call("status", write=True)
        assert replicas[cluster.hosts[0]].idle == 1
        assert all(replicas[h].idle == 0 for h in cluster.hosts[1:])
        with replicas.connection(write=True) as r:
            assert str(r.host) == cluster.hosts[0]
        with replicas.connection(write=False, host=cluster.hosts[2]) as r:
            assert str(r.host) == cluster.hosts[2]
    with Replicas(cluster.hosts, rng=random.Random(3), **FAST) as replicas:
        for host in cluster.hosts:  # every pool warm: reads spread over all of them
            with replicas.connection(host=host):
                pass
        hosts_read = set()
        for _ in range(30):
            with replicas.connection(write=False) as r:
                hosts_read.add(str(r.host))
        assert hosts_read == set(cluster.hosts)


def test_kill_primary_during_writes_loses_and_duplicates_nothing(cluster):
    """Four threads write 2,000 rows; the primary is killed while writes are in flight."""
    with Replicas(cluster.hosts, **FAST) as replicas:
        fresh_table(replicas, "w")
        acknowledged: list[str] = []
        errors: list[BaseException] = []
        lock = threading.Lock()

        def writer(first: int) -> None:
            for i in range(first, 2000, 4):
                row = f"row{i:05d}"
                try:
                    replicas.call("set_cells", "w", [cell(row, value=str(i).encode()), cell(row, "d:q")],
                                  namespace=NS)
                except Exception as exc:  # none expected while a replica lives
                    errors.append(exc)
                else:
                    with lock:
                        acknowledged.append(row)

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        try:
            while len(acknowledged) < 600 and any(t.is_alive() for t in threads):
                time.sleep(0.001)
            cluster.kill(0)  # SIGKILL, with requests in flight
        finally:
            for t in threads:
                t.join(60)
            cluster.start(0)
        assert errors == []
        assert replicas.health.state(cluster.hosts[0]).failures >= 1
        assert replicas.failovers >= 1  # the writes in flight went on to the next replica
        cells = list(replicas.scan("w", namespace=NS))
        per_cell = collections.Counter((c.key.row, c.key.column_family) for c in cells)
        assert sorted({row for row, _ in per_cell}) == sorted(acknowledged) and len(acknowledged) == 2000
        assert set(per_cell.values()) == {1}  # one version per cell after collapse
        raw = collections.Counter((c.key.row, c.key.column_family) for c in raw_cells(cluster.hosts[1], "w"))
        assert max(raw.values()) <= 2 and len(raw) == 4000


def test_paused_primary_costs_one_timeout_then_writes_move_and_come_back(cluster):
    clock = ManualClock()  # the backoff runs on this clock: it ends when the test says so
    with Replicas(cluster.hosts[:2], clock=clock, **SHORT) as replicas:
        fresh_table(replicas, "p")
        primary = cluster[0]
        primary.pause()
        try:
            start = time.perf_counter()
            for i in range(20):
                replicas.call("set_cell", "p", cell(f"r{i}"), namespace=NS)
            # one 3 s timeout, not one per write (20 x 3 s); the bound is loose for a busy machine
            assert time.perf_counter() - start < 30.0
            assert replicas.health.state(cluster.hosts[0]).failures == 1
            assert replicas[cluster.hosts[1]].idle == 1  # the writes went to the second host
        finally:
            primary.resume()
        clock.advance(0.5)  # the 0.5 s backoff ends: the primary gets its trial
        replicas.call("set_cell", "p", cell("after"), namespace=NS)
        assert replicas.health.down() == {}
        assert replicas[cluster.hosts[0]].idle == 1
        rows = {c.key.row for c in replicas.call("get_cells", "p", ScanSpec(), namespace=NS)}
        assert rows == {f"r{i}" for i in range(20)} | {"after"}


def test_a_write_that_may_have_been_applied_is_repeated_only_when_stamped(cluster):
    proxy = FaultProxy(cluster.hosts[0])
    clock = ManualClock()
    try:
        with Replicas([proxy.address, cluster.hosts[1]], clock=clock, **SHORT) as replicas:
            fresh_table(replicas, "once")
            proxy.blackhole()  # the request leaves, no answer comes back
            # an HQL INSERT goes as stamped set_cells: repeated on the other host, no error
            replicas.call("hql_query", "INSERT INTO once VALUES ('r', 'c', 'v')", namespace=NS)
            assert replicas[cluster.hosts[1]].idle == 1 and replicas.failovers == 1
            assert [c.key.row for c in replicas.call("get_cells", "once", ScanSpec(), namespace=NS)] == ["r"]
        proxy.blackhole(False)
        with Replicas([proxy.address, cluster.hosts[1]], clock=clock, **SHORT) as replicas:
            replicas.call("status", write=True)  # the primary is live and first in line
            proxy.blackhole()
            with pytest.raises(WriteOutcomeUnknown, match="may or may not have been applied") as info:
                replicas.call("hql_query", "CREATE TABLE other (c)", namespace=NS)  # a schema change: no stamps
            assert info.value.sent and info.value.host == proxy.address
            assert isinstance(info.value, BrokerUnavailable)
            assert replicas.failovers == 0 and replicas[cluster.hosts[1]].stats()["calls"] == 0  # not repeated
            assert replicas.health.state(proxy.address).failures == 1
    finally:
        proxy.close()


def test_scan_resumes_on_another_replica(cluster):
    proxy = FaultProxy(cluster.hosts[0])
    try:
        with Replicas([proxy.address, cluster.hosts[1]], **SHORT) as replicas:
            fresh_table(replicas, "big")
            value = b"x" * 2000
            for start in range(0, 600, 100):
                replicas.call("set_cells", "big", [cell(f"r{i:04d}", col, value)
                                                   for i in range(start, start + 100) for col in ("c", "d:1", "d:2")],
                              namespace=NS)
            expected = [(c.key.row, c.key.column_family, c.key.column_qualifier)
                        for c in replicas.call("get_cells", "big", ScanSpec(), namespace=NS)]
            assert len(expected) == 1800
            cases = ((ScanSpec(), 1800), (ScanSpec(row_limit=500), 1500), (ScanSpec(cell_limit=1000), 1000))
            for scans, (spec, n) in enumerate(cases, start=1):
                got = []
                for c in replicas.scan("big", spec, namespace=NS, host=proxy.address):
                    got.append((c.key.row, c.key.column_family, c.key.column_qualifier))
                    if len(got) == 301:
                        proxy.reset()  # the broker "dies" mid-scan
                assert got == expected[:n]
                assert replicas.health.state(proxy.address).failures == 1  # it did fail over
                assert replicas.failovers == scans
                replicas.health.succeeded(proxy.address)  # let the next scan start there again
    finally:
        proxy.close()


def test_every_replica_dead_raises_no_host_available(cluster):
    with Replicas(cluster.hosts[1:], **FAST) as replicas:
        replicas.call("status")
        try:
            cluster.kill(1)
            cluster.kill(2)
            with pytest.raises(NoHostAvailable) as info:
                replicas.call("set_cell", "t", cell("r"), namespace=NS)
        finally:
            cluster.start(1)
            cluster.start(2)
        assert set(info.value.errors) == set(cluster.hosts[1:])
        assert all(isinstance(e, BrokerUnavailable) for e in info.value.errors.values())
