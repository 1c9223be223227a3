"""htcluster.aio keeps a connection's socket registered with the event loop between calls (``_aio/watch.py``).

What must hold: a call still gets its own answer after the connection served
a broadcast or a hedge (the multiplexing loop shares the registration), an
idle connection the broker closed stops being watched (no busy loop) and is
replaced at the next checkout, a deadline earlier than the one the lazy timer
is armed for still cuts the call, a later one is not cut early, a connection
closed from another thread is unregistered before its descriptor is closed,
and nothing stays registered once the connections are closed.  Real brokers
and proxies; no timing is asserted (the guards are generous).
"""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from brokertest import socket_fds

from htcluster._io.connection import Connection
from htcluster.aio import AsyncPool, AsyncReplicas, AsyncResources
from htcluster.errors import BrokerUnavailable, DeadlineExceeded
from htcluster.testing import FaultProxy, LocalCluster

GUARD = 60.0  #: seconds a step may take before the test calls it a hang (a slow machine is not a failure)


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(2, shared_data=True) as c:
        yield c


async def lent(pool: AsyncPool) -> Connection:
    """The pool's (only) idle connection, opened if needed, as a Connection object (returned to the pool)."""
    async with pool.connection() as r:
        conn: Connection = r.resource.connection
        return conn


def registered(fd: int) -> bool:
    """Whether the running loop watches ``fd`` for reading (the registration is removed by asking)."""
    return asyncio.get_running_loop().remove_reader(fd)


async def until(condition: Any) -> None:
    """Wait (on the loop) until ``condition()`` holds, within :data:`GUARD` seconds."""
    async with asyncio.timeout(GUARD):
        while not condition():
            await asyncio.sleep(0.02)


@pytest.mark.asyncio
async def test_a_connection_that_served_a_broadcast_and_a_hedge_still_answers_plain_calls(cluster):
    """The multiplexing loop used to replace the watch's reader callback with its own, then remove it:
    the next plain call on that connection waited for a wake-up that never came (until its timeout)."""
    async with asyncio.timeout(GUARD):
        async with AsyncResources(cluster.hosts[:1], size=1, max_overflow=0, socket_timeout=20.0) as rs:
            for _ in range(3):
                assert (await rs.unicast("status")).code == 0
                assert list(await rs.broadcast("status")) == cluster.hosts[:1]
            assert (await rs.unicast("status")).code == 0
            stats = rs[cluster.hosts[0]].stats()
            assert stats["opened"] == 1 and stats["closed"] == 0  # one connection served every call
        async with AsyncReplicas(cluster.hosts, size=1, max_overflow=0, socket_timeout=20.0,
                                 hedge=0.0001) as replicas:  # every read hedged at once
            for _ in range(10):
                assert (await replicas.call("status")).code == 0
                assert (await replicas.call("status", write=True)).code == 0


@pytest.mark.asyncio
async def test_an_idle_connection_the_broker_closed_is_unwatched_and_replaced(cluster):
    proxy = FaultProxy(cluster.hosts[0])
    try:
        async with AsyncPool(proxy.address, size=1, socket_timeout=20.0) as pool:
            assert (await pool.call("status")).code == 0
            conn = await lent(pool)
            watch = conn.watcher
            assert watch is not None and watch.reading  # type: ignore[attr-defined]
            proxy.drop()  # end-of-file on the idle socket: readable for ever (level-triggered)
            await until(lambda: not watch.reading)  # type: ignore[attr-defined]
            assert (await pool.call("status")).code == 0  # the checkout found it stale; a fresh one answered
            assert not conn.is_open
    finally:
        proxy.close()


@pytest.mark.asyncio
async def test_a_deadline_earlier_than_the_armed_timer_cuts_the_call(cluster):
    proxy = FaultProxy(cluster.hosts[0])
    try:
        async with AsyncPool(proxy.address, size=1, socket_timeout=GUARD * 4) as pool:
            assert (await pool.call("status")).code == 0  # the timer is armed a long way off
            proxy.blackhole()
            async with asyncio.timeout(GUARD):
                with pytest.raises(DeadlineExceeded):
                    await pool.call("status", timeout=0.2)
    finally:
        proxy.close()


@pytest.mark.asyncio
async def test_a_call_waiting_past_an_earlier_calls_deadline_is_not_cut(cluster):
    """The lazy timer, due at the first call's deadline, fires while a later call waits: it re-arms."""
    proxy = FaultProxy(cluster.hosts[0], latency=0.75)  # a round trip takes about 1.5 s
    try:
        async with AsyncPool(proxy.address, size=1, socket_timeout=3.0) as pool:
            await lent(pool)  # connected (not timed by the watch)
            assert (await pool.call("status")).code == 0  # timer due 3 s after this call started
            await asyncio.sleep(1.0)
            assert (await pool.call("status")).code == 0  # still waiting when the first deadline passes
    finally:
        proxy.close()


@pytest.mark.asyncio
async def test_a_connection_closed_by_another_thread_is_unwatched_first_and_its_waiting_call_fails(cluster):
    proxy = FaultProxy(cluster.hosts[0], latency=5.0)
    before = socket_fds()
    try:
        pool = AsyncPool(proxy.address, size=1, socket_timeout=GUARD * 4)
        conn = await lent(pool)
        call = asyncio.create_task(pool.call("status"))
        await until(lambda: conn.pending)  # the request is on its way: the call waits for the answer
        await asyncio.sleep(0.2)
        fd = conn.fileno()
        await asyncio.to_thread(conn.close)  # handed to the loop: unregistered, then closed
        async with asyncio.timeout(GUARD):
            with pytest.raises(BrokerUnavailable, match="closed while a call waited"):
                await call
        assert not conn.is_open and conn.watcher is None
        assert not registered(fd)
        assert pool.stats()["in_use"] == 0
        pool.close()
    finally:
        proxy.close()
    assert socket_fds() <= before


@pytest.mark.asyncio
async def test_nothing_stays_registered_once_closed_or_cancelled(cluster):
    proxy = FaultProxy(cluster.hosts[0], latency=0.5)
    try:
        async with AsyncPool(proxy.address, size=1, socket_timeout=GUARD) as pool:
            conn = await lent(pool)
            task = asyncio.create_task(pool.call("status"))
            await until(lambda: conn.watcher is not None and conn.watcher.waiter is not None)  # type: ignore[attr-defined]
            fd = conn.fileno()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not conn.is_open and conn.watcher is None and not registered(fd)
        pool = AsyncPool(cluster.hosts[0], size=2)
        conns = []
        for _ in range(3):
            await asyncio.gather(pool.call("status"), pool.call("status"))
        async with pool.connection() as a, pool.connection() as b:
            conns = [a.resource.connection, b.resource.connection]
        fds = [c.fileno() for c in conns]
        assert all(c.watcher is not None for c in conns)
        pool.close()
        assert all(c.watcher is None and not c.is_open for c in conns)
        assert not any(registered(fd) for fd in fds)
    finally:
        proxy.close()


def test_a_pool_outlives_its_first_event_loop(cluster):
    """Its idle connection was watched by a loop that is closed now: the next loop watches it afresh."""
    pool = AsyncPool(cluster.hosts[0], size=1, socket_timeout=20.0)

    async def calls() -> Any:
        for _ in range(3):
            status = await pool.call("status")
        return status

    assert asyncio.run(calls()).code == 0
    assert asyncio.run(calls()).code == 0
    assert pool.stats()["opened"] == 1
    pool.close()


@pytest.mark.asyncio
async def test_tls_calls_broadcasts_and_idle_eof_on_the_watch(tmp_path):
    """Over TLS the watch reads records in the loop's callback (a TLS 1.3 session ticket may come first),
    and the multiplexing loop's handshake waits for readability through the connection's watch."""
    trustme = pytest.importorskip("trustme")
    from htcluster import tls_context

    ca = trustme.CA()
    ca_file, server = tmp_path / "ca.pem", tmp_path / "server.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(str(server))
    context = tls_context(ca=ca_file)
    with LocalCluster(2, tls_cert=server) as tls:
        proxy = FaultProxy(tls.hosts[0])
        try:
            async with asyncio.timeout(GUARD):
                async with AsyncResources([proxy.address, tls.hosts[1]], ssl_context=context, size=1,
                                          socket_timeout=20.0, connect_timeout=10.0) as rs:
                    assert len(await rs.broadcast("status")) == 2  # handshakes on the multiplexing loop
                    for _ in range(5):
                        assert (await rs.unicast("status", hosts=[proxy.address])).code == 0
                        assert len(await rs.broadcast("status")) == 2
                    pool = rs[proxy.address]
                    conn = await lent(pool)
                    watch = conn.watcher
                    proxy.drop()
                    await until(lambda: watch is None or not watch.reading)  # type: ignore[attr-defined]
                    assert (await rs.unicast("status", hosts=[proxy.address])).code == 0
                    assert rs[tls.hosts[1]].stats()["opened"] == 1
        finally:
            proxy.close()
