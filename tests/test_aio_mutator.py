"""The asyncio twin of the buffered mutators and of scan_all (issue 19): AsyncReplicas.mutator,
AsyncShards.mutator and AsyncShards.scan_all against real local brokers."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from htcluster import Backoff, FlushError, MutatorFull, NoHostAvailable, Replicas, Resource
from htcluster.aio import AsyncReplicas, AsyncShards
from htcluster.events import CallStarted
from htcluster.testing import LocalCluster
from htcluster.types import Cell, Key, ScanSpec

#: Where no timeout is under test: generous, so that a loaded 2-core machine cannot fail a test.
FAST = dict(socket_timeout=30.0, connect_timeout=5.0, backoff=Backoff(base=0.5, cap=2.0, jitter=0.0))
NS, TABLE = "amut", "t"


def cell(row: str, value: bytes = b"v") -> Cell:
    return Cell(Key(row, "c", ""), value)


def create(host: str) -> None:
    with Resource(host, socket_timeout=30.0) as r:
        r.hql_query(r.namespace_open("/"), f"CREATE NAMESPACE {NS} IF NOT EXISTS")
        r.hql_query(r.mns[NS], f"DROP TABLE IF EXISTS {TABLE}")
        r.hql_query(r.mns[NS], f"CREATE TABLE {TABLE} (c)")


def stored(host: str) -> dict[str, set[int]]:
    """``{row: {timestamps}}`` of every version stored on ``host``."""
    with Resource(host, socket_timeout=30.0) as r:
        out: dict[str, set[int]] = {}
        for c in r.get_cells(r.mns[NS], TABLE, ScanSpec()):
            out.setdefault(c.key.row, set()).add(c.key.timestamp)
        return out


@pytest.fixture(scope="module")
def pair():
    with LocalCluster(2, shared_data=True) as c:
        yield c


@pytest.fixture
def fresh(pair):
    for i in range(len(pair)):
        if not pair[i].running:
            pair.start(i)
    create(pair.hosts[0])
    return pair


@pytest.mark.asyncio
async def test_async_replicas_mutator_fails_over_mid_flush_without_loss_or_duplicates(fresh):
    killed: list[str] = []

    def kill_primary(event) -> None:  # the first flush's request goes to a dead broker
        if isinstance(event, CallStarted) and event.method == "set_cells" and not killed:
            killed.append(event.host)
            fresh.kill(fresh.hosts.index(event.host))

    async with AsyncReplicas(fresh.hosts, **FAST) as replicas:
        replicas.listeners.register(kill_primary)
        async with replicas.mutator(TABLE, namespace=NS, max_cells=50) as m:
            await m.set_cells([cell(f"f{i:03d}") for i in range(120)])
            assert m.stats()["acknowledged"] == 100 and m.pending() and len(m.pending()) == 20
        stats = m.stats()
    assert killed and stats["acknowledged"] == 120 and stats["failovers"] >= 1 and stats["flushes"] == 3
    survivor = next(h for h in fresh.hosts if h not in killed)
    rows = stored(survivor)
    assert sorted(rows) == [f"f{i:03d}" for i in range(120)] and all(len(ts) == 1 for ts in rows.values())
    with pytest.raises(RuntimeError, match="closed"):
        await m.set_cell(cell("x"))


@pytest.mark.asyncio
async def test_a_cancelled_flush_leaves_its_cells_acknowledged_or_pending(tmp_path: Path):
    """Shard a answers, shard b's broker is stopped: the flush is cancelled (asyncio.timeout) with a's
    batch acknowledged and b's back in the buffer, stamped; sent again, it is stored once."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with LocalCluster(1, data_dir=tmp_path / "a") as a, LocalCluster(1, data_dir=tmp_path / "b") as b:
        create(a.hosts[0])
        create(b.hosts[0])
        async with AsyncShards([(a.hosts[0], "a"), (b.hosts[0], "b")], **FAST) as shards:
            m = shards.mutator(TABLE, namespace=NS, key=lambda row: row[0], max_cells=1000)
            cells = [cell(f"{k}{i:02d}") for k in "ab" for i in range(20)]
            await m.set_cells(cells)
            b.pause(0)
            try:
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(1.0):
                        async with m:
                            await m.flush()
            finally:
                b.resume(0)
            assert m.closed and m.stats()["acknowledged"] == 20 and m.stats()["shards"]["a"]["cells"] == 20
            pending = m.pending()
            assert sorted(c.key.row for c in pending) == [f"b{i:02d}" for i in range(20)]
            assert all(c.key.timestamp for c in pending)  # stamped: a resend stores the same versions
            async with shards.mutator(TABLE, namespace=NS, key=lambda row: row[0]) as again:
                await again.set_cells(pending)
            assert all(pool.in_use == 0 for pool in shards.pools.values())
        await asyncio.sleep(0.2)  # the resumed broker applies what it had received before the cancel
        assert sorted(stored(a.hosts[0])) == [f"a{i:02d}" for i in range(20)]
        rows = stored(b.hosts[0])
        assert sorted(rows) == [f"b{i:02d}" for i in range(20)] and all(len(ts) == 1 for ts in rows.values())


async def served_again(replicas: AsyncReplicas, within: float = 60.0) -> None:
    """Wait until ``replicas`` answers a call again (its backoff over, its probe answered)."""
    end = asyncio.get_running_loop().time() + within
    while True:
        try:
            await replicas.call("namespace_exists", NS)
            return
        except NoHostAvailable:
            if asyncio.get_running_loop().time() > end:
                raise
            await asyncio.sleep(0.05)


@pytest.mark.asyncio
async def test_async_flush_error_carries_the_cells_and_backpressure_raises_when_asked(tmp_path: Path):
    with LocalCluster(1, data_dir=tmp_path) as cluster:
        create(cluster.hosts[0])
        async with AsyncReplicas(cluster.hosts, socket_timeout=5.0, connect_timeout=1.0, retry=0) as replicas:
            m = replicas.mutator(TABLE, namespace=NS, max_cells=10, block=False)
            given = [cell(f"g{i:02d}") for i in range(35)]
            cluster.kill(0)
            with pytest.raises(FlushError) as info:  # the first 10 fail; the 25 after them were never taken
                await m.set_cells(given)
            assert [c.key.row for c in info.value.cells] == [c.key.row for c in given] and m.pending() == []
            cluster.start(0)
            await served_again(replicas)  # the host marked down by the kill is back before it is paused
            await m.set_cells(given[:5])
            cluster.pause(0)
            try:
                flushing = asyncio.create_task(m.flush())  # hangs on the stopped broker
                await asyncio.sleep(0.2)
                assert m.pending() == []  # taken by the flush in flight
                await m.set_cells(given[5:15])  # fills the buffer: accepted, the flush in flight makes room
                with pytest.raises(MutatorFull) as full:
                    await m.set_cells(given[15:17])
                assert full.value.cells == given[15:17] and len(m.pending()) == 10
            finally:
                cluster.resume(0)
            await flushing
            await m.set_cells(given[15:])
            await m.close()
            assert m.stats()["acknowledged"] == 35 and len(stored(cluster.hosts[0])) == 35


@pytest.mark.asyncio
async def test_async_scan_all_merges_in_row_order_and_resumes_after_a_kill(tmp_path: Path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with LocalCluster(2, shared_data=True, data_dir=tmp_path / "a") as group, \
            LocalCluster(1, data_dir=tmp_path / "b") as single:
        create(group.hosts[0])
        create(single.hosts[0])
        pairs = [(group.hosts[0], "a"), (group.hosts[1], "a"), (single.hosts[0], "b")]
        async with AsyncShards(pairs, **FAST) as shards:
            async with shards.mutator(TABLE, namespace=NS, flush_interval=0.05) as m:
                await m.set_cells([cell(f"s{i:04d}", b"x" * 1000) for i in range(10)])
                for _ in range(600):  # the timer task flushes them
                    if m.stats()["acknowledged"] == 10:
                        break
                    await asyncio.sleep(0.05)
                assert m.stats()["acknowledged"] == 10
                for i in range(10, 2000):  # several 512 kB scanner batches per shard
                    await m.set_cell(cell(f"s{i:04d}", b"x" * 1000))
            per_shard = m.stats()["shards"]
            assert per_shard["a"]["cells"] + per_shard["b"]["cells"] == 2000 and per_shard["b"]["cells"] > 0
            fetches: list[str] = []

            def kill_mid_scan(event) -> None:  # the second batch of shard a: its broker dies as it is asked
                if isinstance(event, CallStarted) and event.method == "scanner_get_cells" \
                        and event.host in group.hosts:
                    fetches.append(event.host)
                    if len(fetches) == 2:
                        group.kill(group.hosts.index(event.host))

            shards.listeners.register(kill_mid_scan)
            async with shards.scan_all(TABLE, ScanSpec(versions=1), namespace=NS, timeout=30.0) as cells:
                got = [c.key.row async for c in cells]
            shards.listeners.unregister(kill_mid_scan)
            assert got == [f"s{i:04d}" for i in range(2000)]
            assert len(set(fetches)) == 2 and shards.failovers >= 1  # shard a resumed on its other broker

            async with shards.scan_all(TABLE, namespace=NS) as cells:  # leaving early closes every scanner
                first = await anext(cells)
            assert first.key.row == "s0000"
            assert all(pool.in_use == 0 for pool in shards.pools.values())


def test_blocking_replicas_mutator_is_unchanged_by_the_twin(fresh):
    """The blocking mutator and the asyncio one share their core: the blocking one still needs no loop."""
    with Replicas(fresh.hosts, **FAST) as replicas, replicas.mutator(TABLE, namespace=NS) as m:
        m.set_cells([cell("z1"), cell("z2")])
    assert m.stats()["acknowledged"] == 2
