"""htcluster.aio: the routing, failover, hedging, probe, retry-budget, deadline, stamped-write and scan
scenarios of the blocking layer, each run on both flavours (one scenario text: the blocking client is
wrapped in an ``await``-able adapter), plus what only asyncio has: loop ownership and cancellation."""
from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import time
from typing import Any, AsyncIterator

import pytest
import pytest_asyncio

from brokertest import cluster_with_namespace, socket_fds

from htcluster import Backoff, Replicas, Resource, Resources, Shards, deadline
from htcluster._routing.replicas import stamp_cells
from htcluster.aio import AsyncPool, AsyncReplicas, AsyncResource, AsyncResources, AsyncShards
from htcluster.errors import (BrokerUnavailable, DeadlineExceeded, NoHostAvailable, PoolTimeout, WriteOutcomeUnknown,
                              WrongEventLoop)
from htcluster.events import ConnectionClosed, Hedged
from htcluster.testing import FaultProxy, ManualClock, free_port
from htcluster.types import Cell, Key, ScanSpec

FAST = dict(socket_timeout=30.0, connect_timeout=5.0, backoff=Backoff(base=0.5, cap=2.0, jitter=0.0))
SHORT = dict(FAST, socket_timeout=1.0)
NS = "aiotest"
FLAVOURS = ["sync", "async"]


def cell(row: str, column: str = "c", value: bytes = b"v", ts: int | None = None) -> Cell:
    family, _, qualifier = column.partition(":")
    return Cell(Key(row, family, qualifier, timestamp=ts), value)


# ---------------------------------------------------------------- one scenario text, two flavours


class Awaitable:
    """A blocking routing object behind the async call shape (``await x.call(...)``, ``async with x.scan(...)``)."""

    def __init__(self, sync: Any) -> None:
        self.sync = sync

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.sync, name)
        if name in ("call", "unicast", "broadcast", "multicast"):
            async def method(*args: Any, **kwargs: Any) -> Any:
                return attr(*args, **kwargs)
            return method
        if name in ("scan", "connection"):
            return lambda *args, **kwargs: _blocking_block(attr(*args, **kwargs))
        return attr

    def __getitem__(self, host: str) -> Any:
        return self.sync[host]

    async def __aenter__(self) -> "Awaitable":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.sync.close()


class AwaitableResource:
    """A blocking ``Resource`` whose broker methods are awaited (``await r.status()``)."""

    def __init__(self, resource: Any) -> None:
        self.resource = resource

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.resource, name)
        if not callable(attr):
            return attr

        async def method(*args: Any, **kwargs: Any) -> Any:
            return attr(*args, **kwargs)
        return method


@contextlib.asynccontextmanager
async def _blocking_block(block: Any) -> AsyncIterator[Any]:
    if hasattr(block, "__enter__"):
        with block as inner:
            yield AwaitableResource(inner)
        return

    async def cells() -> AsyncIterator[Any]:
        for item in block:
            yield item

    try:
        yield cells()
    finally:
        block.close()


def make(flavour: str, kind: str, hosts: Any, **options: Any) -> Any:
    """``Replicas``/``Resources``/``Shards`` of ``flavour``, with the async call shape either way."""
    classes = {"sync": {"replicas": Replicas, "resources": Resources, "shards": Shards},
               "async": {"replicas": AsyncReplicas, "resources": AsyncResources, "shards": AsyncShards}}
    made = classes[flavour][kind](hosts, **options)
    return made if flavour == "async" else Awaitable(made)


@pytest.fixture(scope="module")
def cluster():
    with cluster_with_namespace(3, NS, **FAST) as c:
        yield c


def fresh_table(hosts: list[str], name: str) -> None:
    with Replicas(hosts, **FAST) as replicas:
        replicas.call("hql_query", f"DROP TABLE IF EXISTS {name}", namespace=NS)
        replicas.call("hql_query", f"CREATE TABLE {name} (c, d)", namespace=NS)


def raw_cells(address: str, table: str) -> list[Cell]:
    with Resource(address, socket_timeout=10.0) as r:
        return r.get_cells(r.mns[NS], table, ScanSpec())


def consistent(pools: Any) -> None:
    for pool in pools.values():
        stats = pool.stats()
        assert stats["opened"] - stats["closed"] == stats["idle"] + stats["in_use"], (pool, stats)
        assert stats["in_use"] == 0 and stats["waiting"] == 0, (pool, stats)


# ---------------------------------------------------------------- routing and failover


@pytest.mark.asyncio
@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_writes_go_to_the_first_host_reads_are_balanced(cluster, flavour):
    async with make(flavour, "replicas", cluster.hosts, **FAST) as replicas:
        for _ in range(10):
            await replicas.call("status", write=True)
        assert replicas[cluster.hosts[0]].idle == 1
        assert all(replicas[h].idle == 0 for h in cluster.hosts[1:])
        async with replicas.connection(write=False, host=cluster.hosts[2]) as r:
            assert str(r.host) == cluster.hosts[2]
            assert (await r.status()).code == 0
    async with make(flavour, "replicas", cluster.hosts, rng=random.Random(3), **FAST) as replicas:
        for host in cluster.hosts:
            async with replicas.connection(host=host):
                pass
        for _ in range(30):
            await replicas.call("status")
        assert all(replicas.stats()[h]["calls"] > 0 for h in cluster.hosts)
        consistent(replicas.pools)


@pytest.mark.asyncio
@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_reads_collapse_repeated_versions_and_hql_writes_are_stamped(cluster, flavour):
    fresh_table(cluster.hosts, f"dup_{flavour}")
    table = f"dup_{flavour}"
    async with make(flavour, "replicas", cluster.hosts, namespace=NS, **FAST) as replicas:
        stamped = stamp_cells([cell("r1", value=b"one"), cell("r2", "d:x", value=b"two")])
        await replicas.call("set_cells", table, stamped)
        await replicas.call("set_cells", table, stamped)  # a retried write
        await replicas.call("hql_query", f"INSERT INTO {table} VALUES ('r3', 'c', 'three')")
        assert len(raw_cells(cluster.hosts[0], table)) == 5
        got = await replicas.call("get_cells", table, ScanSpec())
        assert [(c.key.row, c.value) for c in got] == [("r1", b"one"), ("r2", b"two"), ("r3", b"three")]
        async with replicas.scan(table) as cells:
            assert [(c.key.row, c.value) async for c in cells] == [(c.key.row, c.value) for c in got]


@pytest.mark.asyncio
@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_a_write_that_may_have_been_applied_is_repeated_only_when_stamped(cluster, flavour):
    table = f"once_{flavour}"
    fresh_table(cluster.hosts, table)
    proxy = FaultProxy(cluster.hosts[0])
    clock = ManualClock()
    try:
        async with make(flavour, "replicas", [proxy.address, cluster.hosts[1]], clock=clock, **SHORT) as replicas:
            proxy.blackhole()
            await replicas.call("hql_query", f"INSERT INTO {table} VALUES ('r', 'c', 'v')", namespace=NS)
            assert replicas[cluster.hosts[1]].idle == 1 and replicas.failovers == 1
        proxy.blackhole(False)
        async with make(flavour, "replicas", [proxy.address, cluster.hosts[1]], clock=clock, **SHORT) as replicas:
            await replicas.call("status", write=True)
            proxy.blackhole()
            with pytest.raises(WriteOutcomeUnknown, match="may or may not have been applied") as info:
                await replicas.call("hql_query", f"CREATE TABLE other_{flavour} (c)", namespace=NS)
            assert info.value.sent and info.value.host == proxy.address
            assert replicas.failovers == 0 and replicas[cluster.hosts[1]].stats()["calls"] == 0
            assert replicas.health.state(proxy.address).failures == 1
    finally:
        proxy.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_paused_primary_costs_one_timeout_then_only_a_probe_brings_it_back(cluster, flavour):
    table = f"p_{flavour}"
    fresh_table(cluster.hosts, table)
    clock = ManualClock()
    async with make(flavour, "replicas", cluster.hosts[:2], clock=clock, **SHORT) as replicas:
        cluster.pause(0)
        try:
            for i in range(10):
                await replicas.call("set_cell", table, cell(f"r{i}"), namespace=NS)
            assert replicas.health.state(cluster.hosts[0]).failures == 1
            assert replicas[cluster.hosts[1]].idle == 1
        finally:
            cluster.resume(0)
        clock.advance(0.5)  # the backoff ends: the primary is probed, then used
        await replicas.call("set_cell", table, cell("after"), namespace=NS)
        assert replicas.health.down() == {}
        assert replicas[cluster.hosts[0]].idle == 1
        rows = {c.key.row for c in await replicas.call("get_cells", table, ScanSpec(), namespace=NS)}
        assert rows == {f"r{i}" for i in range(10)} | {"after"}
        consistent(replicas.pools)


@pytest.mark.asyncio
@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_scan_resumes_on_another_replica(cluster, flavour):
    table = f"big_{flavour}"
    fresh_table(cluster.hosts, table)
    proxy = FaultProxy(cluster.hosts[0])
    try:
        async with make(flavour, "replicas", [proxy.address, cluster.hosts[1]], **SHORT) as replicas:
            value = b"x" * 2000
            for start in range(0, 600, 100):
                batch = [cell(f"r{i:04d}", col, value) for i in range(start, start + 100)
                         for col in ("c", "d:1", "d:2")]
                await replicas.call("set_cells", table, batch, namespace=NS)
            expected = [(c.key.row, c.key.column_family, c.key.column_qualifier)
                        for c in await replicas.call("get_cells", table, ScanSpec(), namespace=NS)]
            assert len(expected) == 1800
            for scans, (spec, n) in enumerate(((ScanSpec(), 1800), (ScanSpec(row_limit=500), 1500)), start=1):
                got = []
                async with replicas.scan(table, spec, namespace=NS, host=proxy.address) as cells:
                    async for c in cells:
                        got.append((c.key.row, c.key.column_family, c.key.column_qualifier))
                        if len(got) == 301:
                            proxy.reset()
                assert got == expected[:n]
                assert replicas.health.state(proxy.address).failures == 1
                assert replicas.failovers == scans
                replicas.health.succeeded(proxy.address)
            async with replicas.scan(table, namespace=NS) as cells:  # leaving early closes the scanner
                async for _ in cells:
                    break
            consistent(replicas.pools)
    finally:
        proxy.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_every_replica_dead_raises_no_host_available(flavour):
    dead = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    async with make(flavour, "replicas", dead, **FAST) as replicas:
        with pytest.raises(NoHostAvailable) as info:
            await replicas.call("set_cell", "t", cell("r"), namespace=NS)
        assert set(info.value.errors) == set(dead)
        assert all(isinstance(e, BrokerUnavailable) for e in info.value.errors.values())


@pytest.mark.asyncio
@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_failover_stops_when_the_retry_budget_is_spent(flavour):
    dead = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    async with make(flavour, "replicas", dead, retry_budget={"ratio": 0.0, "floor": 0.1}, **FAST) as replicas:
        with pytest.raises(NoHostAvailable, match="retry budget is spent") as info:
            await replicas.call("status")
        assert len(info.value.errors) == 2 and replicas.failovers == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_deadlines_bound_the_whole_call(cluster, flavour):
    proxy = FaultProxy(cluster.hosts[0])
    try:
        async with make(flavour, "replicas", [proxy.address], **FAST) as replicas:
            await replicas.call("status")
            proxy.blackhole()
            start = time.monotonic()
            with pytest.raises(DeadlineExceeded):
                await replicas.call("status", timeout=0.3)
            with pytest.raises(DeadlineExceeded):
                with deadline(0.3):
                    await replicas.call("status")
            assert time.monotonic() - start < 10.0
            assert replicas.health.down() == {}  # the caller's deadline says nothing of the host
            consistent(replicas.pools)
    finally:
        proxy.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_hedging_the_first_answer_wins_and_the_loser_is_closed(cluster, flavour):
    slow = FaultProxy(cluster.hosts[0], latency=1.0)
    try:
        async with make(flavour, "replicas", [slow.address, cluster.hosts[1]], hedge=0.05, **FAST) as replicas:
            hedges, closed = [], []
            replicas.listeners.register(lambda e: hedges.append(e) if isinstance(e, Hedged) else None)
            replicas.listeners.register(lambda e: closed.append(e) if isinstance(e, ConnectionClosed) else None)
            start = time.monotonic()
            assert (await replicas.call("status", write=True)).code == 0
            assert time.monotonic() - start < 2.0
            assert [(h.host, h.method) for h in hedges] == [(cluster.hosts[1], "status")]
            assert [c.host for c in closed if c.reason == "failed"] == [slow.address]
            assert replicas.health.down() == {} and replicas.health.lagging(slow.address)
            consistent(replicas.pools)
    finally:
        slow.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_shards_route_by_key(cluster, flavour):
    pairs = [(cluster.hosts[0], "a"), (cluster.hosts[1], "b"), (cluster.hosts[2], "a"), (cluster.hosts[2], "b")]
    async with make(flavour, "shards", pairs, **FAST) as shards:
        assert (await shards.unicast("a", "status")).code == 0
        assert set(await shards.broadcast("b", "status")) == {cluster.hosts[1], cluster.hosts[2]}
        assert list(await shards.multicast(["a", "b"], "status")) == [cluster.hosts[2]]
        results, errors = await shards.multicast(["a", "b"], "status", errors="return")
        assert errors == {} and len(results) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_a_broadcast_reports_each_host(cluster, flavour):
    dead = f"127.0.0.1:{free_port()}"
    async with make(flavour, "resources", [*cluster.hosts, dead], **FAST) as rs:
        results, errors = await rs.broadcast("status", errors="return")
        assert list(results) == cluster.hosts and list(errors) == [dead]
        assert (await rs.unicast("status")).code == 0


# ---------------------------------------------------------------- asyncio only


@pytest.mark.asyncio
async def test_async_resource_and_pool(cluster):
    async with AsyncResource(cluster.hosts[0], socket_timeout=10.0) as r:
        ns = await r.mns[NS]
        assert NS in r.mns and await r.mns[NS] == ns
        assert await r.namespace_exists(NS) is True
        assert (await r.call("status")).code == 0
        assert await r.ping()
    assert not r.is_open
    pool = AsyncPool(cluster.hosts[0], size=2)
    assert (await pool.call("status", timeout=5.0)).code == 0
    async with pool.connection() as c:
        assert (await c.call("namespace_exists", NS)) is True
    lease = await pool.acquire()
    assert pool.in_use == 1
    lease.release()
    fresh_table(cluster.hosts, "pooled")
    await pool.call("set_cells", "pooled", stamp_cells([cell("x"), cell("y")]), namespace=NS)
    async with pool.scan("pooled", namespace=NS) as cells:
        assert [c.key.row async for c in cells] == ["x", "y"]
    consistent({"p": pool})
    pool.close()


@pytest.mark.asyncio
async def test_cancelled_calls_close_their_connection_and_leave_the_host_alone(cluster):
    proxy = FaultProxy(cluster.hosts[0], latency=0.5)
    try:
        async with AsyncReplicas([proxy.address], size=1, max_overflow=0, **FAST) as replicas:
            pool = replicas[proxy.address]
            await replicas.call("status")
            # mid-call: the connection is out of step, so it is closed; the host is not blamed
            task = asyncio.create_task(replicas.call("status"))
            await asyncio.sleep(0.2)
            waiting = asyncio.create_task(replicas.call("status"))  # waits for the one slot
            await asyncio.sleep(0.1)
            assert pool.waiting == 1
            waiting.cancel()
            task.cancel()
            for t in (task, waiting):
                with pytest.raises(asyncio.CancelledError):
                    await t
            assert pool.waiting == 0 and pool.in_use == 0 and pool.idle == 0
            assert replicas.health.down() == {} and replicas.health.state(proxy.address).failures == 0
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await replicas.call("status")
            assert replicas.health.down() == {}
            assert (await replicas.call("status")).code == 0  # the slot came back
            consistent(replicas.pools)
    finally:
        proxy.close()


@pytest.mark.asyncio
async def test_a_full_pool_times_out_and_cancelled_waiters_pass_their_slot_on(cluster):
    pool = AsyncPool(cluster.hosts[0], size=1, max_overflow=0, pool_timeout=0.2)
    lease = await pool.acquire()
    with pytest.raises(PoolTimeout):
        await pool.acquire()
    first = asyncio.create_task(pool.acquire(pool_timeout=5.0))
    second = asyncio.create_task(pool.acquire(pool_timeout=5.0))
    await asyncio.sleep(0.05)
    lease.release()  # handed to the first waiter ...
    first.cancel()  # ... who leaves before it runs: the slot goes on to the second
    with pytest.raises(asyncio.CancelledError):
        await first
    (await second).release()
    consistent({"p": pool})
    pool.close()


@pytest.mark.asyncio
async def test_a_connection_handed_to_a_waiter_that_left_is_not_lost(cluster):
    """The waiter is cancelled after a connection was handed to it and while ``size`` others are idle:
    the connection is closed and its slot freed (it used to stay counted in use, for ever)."""
    pool = AsyncPool(cluster.hosts[0], size=1, max_overflow=1)
    first, second = await pool.acquire(), await pool.acquire()
    waiter = asyncio.create_task(pool.acquire(pool_timeout=5.0))
    await asyncio.sleep(0.05)
    first.release()  # handed to the waiter, which has not run yet
    second.release()  # idle: the pool now keeps ``size`` idle connections
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    consistent({"p": pool})
    assert pool.idle == 1
    pool.close()


def test_an_object_belongs_to_the_loop_that_first_used_it(cluster):
    replicas = AsyncReplicas(cluster.hosts, **FAST)  # made before any loop runs

    async def status() -> Any:
        return await replicas.call("status")

    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(status()).code == 0
        other = asyncio.new_event_loop()
        try:
            with pytest.raises(WrongEventLoop, match="event loop"):
                other.run_until_complete(status())
        finally:
            other.close()
    finally:
        loop.close()
    assert asyncio.run(status()).code == 0  # the first loop is gone: a new one may take over
    with pytest.raises(WrongEventLoop, match="coroutine"):
        replicas.binding.check()
    replicas.close()


@pytest_asyncio.fixture
async def async_replicas(cluster) -> AsyncIterator[AsyncReplicas]:
    async with AsyncReplicas(cluster.hosts, namespace=NS, **FAST) as replicas:
        yield replicas


@pytest.mark.asyncio
async def test_many_concurrent_reads_each_get_their_own_answer(cluster, async_replicas):
    table = "many"
    fresh_table(cluster.hosts, table)
    await async_replicas.call("set_cells", table, [cell(f"r{i:03d}", value=b"%d" % i) for i in range(200)])
    values = await asyncio.gather(*(async_replicas.call("get_cell", table, f"r{i:03d}", "c") for i in range(200)))
    assert values == [b"%d" % i for i in range(200)]
    consistent(async_replicas.pools)
    counts = collections.Counter(h for h in cluster.hosts if async_replicas.stats()[h]["calls"])
    assert len(counts) >= 2


@pytest.mark.asyncio
async def test_cancellation_storm_leaves_every_pool_consistent_and_crosses_no_reply(cluster):
    """3,000 reads by 150 tasks, a fifth cut by a short timeout and a fifth cancelled at a random moment,
    while two brokers are killed and restarted: every answer is its own call's, every pool ends
    consistent, and no socket is left open."""
    table = "storm"
    fresh_table(cluster.hosts, table)
    rows = [f"r{i:04d}" for i in range(400)]
    with Replicas(cluster.hosts, **FAST) as writer:
        writer.call("set_cells", table, [cell(row, value=row.encode()) for row in rows], namespace=NS)
    before = socket_fds()
    rng = random.Random(17)
    outcomes: collections.Counter[str] = collections.Counter()
    replicas = AsyncReplicas(cluster.hosts, namespace=NS, size=4, max_overflow=4, pool_timeout=5.0,
                             socket_timeout=2.0, connect_timeout=2.0, probe_timeout=0.5,
                             backoff=Backoff(base=0.1, cap=0.5, jitter=0.0),
                             retry_budget={"ratio": 1.0, "floor": 1000.0})

    async def read(row: str) -> None:
        value = await replicas.call("get_cell", table, row, "c")
        assert value == row.encode(), (row, value)  # never another call's answer

    async def one(n: int) -> None:
        row = rng.choice(rows)
        kind = rng.random()
        try:
            if kind < 0.2:
                async with asyncio.timeout(rng.uniform(0.0, 0.01)):
                    await read(row)
            elif kind < 0.4:
                task = asyncio.ensure_future(read(row))
                await asyncio.sleep(rng.uniform(0.0, 0.005))
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    outcomes["cancelled"] += 1
                    return
            else:
                await read(row)
            outcomes["answered"] += 1
        except TimeoutError:
            outcomes["timed out"] += 1
        except (NoHostAvailable, DeadlineExceeded, BrokerUnavailable) as exc:
            outcomes[type(exc).__name__] += 1

    async def worker(w: int) -> None:
        for n in range(w, 3000, 150):
            await one(n)

    async def chaos() -> None:
        for i in (0, 1):
            await asyncio.sleep(0.3)
            await asyncio.to_thread(cluster.kill, i)
            await asyncio.sleep(0.3)
            await asyncio.to_thread(cluster.start, i)

    try:
        await asyncio.gather(chaos(), *(worker(w) for w in range(150)))
    finally:
        stats = {h: p.stats() for h, p in replicas.pools.items()}
        replicas.close()
    assert sum(outcomes.values()) == 3000
    assert replicas.failovers >= 1  # the kills cut calls in flight: they went on to another broker
    assert outcomes["answered"] > 1500 and outcomes["cancelled"] > 100 and outcomes["timed out"] > 100, outcomes
    for host, figures in stats.items():
        assert figures["opened"] - figures["closed"] == figures["idle"] + figures["in_use"], (host, figures)
        assert figures["in_use"] == 0 and figures["waiting"] == 0, (host, figures)
    assert socket_fds() <= before  # every connection closed: no descriptor leaked
