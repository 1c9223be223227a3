"""htcluster for asyncio: the same pools, routing and guarantees, with ``await``.

Use :class:`AsyncResource` for one connection (every broker method a
coroutine), :class:`AsyncPool` for a pool to one host (``await pool.call(...)``,
``async with pool.connection() as r``), :class:`AsyncResources`,
:class:`AsyncReplicas` and :class:`AsyncShards` for many hosts, with the
arguments, options, call shapes, ``stats()``, events and errors of their
blocking twins (``Resource``, ``Pool``, ``Resources``, ``Replicas``, ``Shards``).
Their ``namespace(...)`` and ``broker`` give the broker methods as typed
coroutines (:class:`AsyncNamespaceCalls`, :class:`AsyncBrokerCalls`,
generated from the IDL with the blocking ones): ``await
replicas.namespace("logs").get_cells(table, spec)`` is a ``list[Cell]``.

They run on the blocking layer's engine: its host health, retry, backoff,
retry budget, hedge cap, plans and balancers, read/write classification,
client timestamps and HQL write rewriting are the same objects and the same
code (the engine is written once as generators of waits,
:mod:`htcluster._policy.steps`); only the waits are the event loop's.

* An object may be made before any loop runs; it belongs to the loop that
  first uses it.  Used from another loop it raises
  :class:`~htcluster.errors.WrongEventLoop`.
* A cancelled task (``task.cancel()``, ``asyncio.timeout``) is a failure of
  the caller: the connection it was using is closed, the lease released, the
  host is not marked down, and the ``CancelledError`` propagates; this holds
  while waiting for a pool slot, in a hedge, a broadcast and a scan.
* Nothing blocks the loop: names are resolved with ``loop.getaddrinfo``
  (numeric addresses without a lookup), connects and TLS handshakes are
  non-blocking.

Example::

    from htcluster.aio import AsyncReplicas

    async def main():
        async with AsyncReplicas('ht1,ht2,ht3', namespace='web') as replicas:
            await replicas.call('set_cells', 'logs', cells)
            cell = await replicas.call('get_cell', 'logs', 'row1', 'col')
            async with replicas.scan('logs') as found:
                async for cell in found:
                    print(cell)
"""
from __future__ import annotations

from ._aio.pool import AsyncPool
from ._aio.resource import AsyncNamespaces, AsyncResource
from ._aio.mutator import AsyncMutator, ScanAll
from ._aio.routing import AsyncConnection, AsyncReplicas, AsyncResources, AsyncShards
from ._aio.scan import ScanBlock
from ._aio.typed import AsyncBrokerCalls, AsyncNamespaceCalls
__all__ = ["AsyncBrokerCalls", "AsyncConnection", "AsyncMutator", "AsyncNamespaceCalls", "AsyncNamespaces", "AsyncPool",
           "AsyncReplicas", "AsyncResource", "AsyncResources", "AsyncShards", "ScanAll", "ScanBlock"]
