"""The pytest plugin's async fixtures (``htcluster.testing``), in pytest-asyncio's strict mode.

Each fixture is made and closed in the test's own loop; the misbehaving-broker
and fault-proxy servers (threads) serve the async client as they serve the
blocking one.
"""
from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("pytest_asyncio")

from htcluster import aio  # noqa: E402
from htcluster.errors import BrokerUnavailable, NoHostAvailable  # noqa: E402


@pytest.mark.asyncio
async def test_async_pool_is_a_pool_of_the_sessions_broker(async_pool, broker_address):
    assert isinstance(async_pool, aio.AsyncPool)
    assert (await async_pool.call("status")).code == 0
    assert str(async_pool.host) == broker_address


@pytest.mark.asyncio
async def test_async_replicas_survive_a_member_of_local_cluster_killed(async_replicas, local_cluster):
    assert isinstance(async_replicas, aio.AsyncReplicas)
    assert sorted(async_replicas.pools) == sorted(local_cluster.hosts)
    await async_replicas.call("status")
    await asyncio.to_thread(local_cluster.kill, 0)
    for _ in range(5):
        assert (await async_replicas.call("status")).code == 0


@pytest.mark.asyncio
async def test_a_silent_misbehaving_broker_times_the_async_client_out(misbehaving_broker_factory,
                                                                     async_pool_factory):
    silent = misbehaving_broker_factory("silent")
    pool = async_pool_factory(silent.address, socket_timeout=0.3)
    with pytest.raises(BrokerUnavailable):
        await pool.call("status")


@pytest.mark.asyncio
async def test_a_closing_misbehaving_broker_fails_the_async_replicas_over(misbehaving_broker_factory,
                                                                         async_replicas_factory, broker_address):
    closing = misbehaving_broker_factory("close")
    replicas = async_replicas_factory([closing.address, broker_address])
    assert (await replicas.call("status")).code == 0  # failed over to the good broker
    alone = async_replicas_factory([closing.address])
    with pytest.raises(NoHostAvailable):
        await alone.call("status")


@pytest.mark.asyncio
async def test_a_blackholed_proxy_times_the_async_client_out(fault_proxy_factory, async_pool_factory,
                                                             broker_address):
    proxy = fault_proxy_factory(broker_address)
    pool = async_pool_factory(proxy.address, socket_timeout=0.3)
    assert (await pool.call("status")).code == 0
    proxy.blackhole()
    with pytest.raises(BrokerUnavailable):
        await pool.call("status")
