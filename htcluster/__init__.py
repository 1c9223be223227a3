"""htcluster: pools, sharding and replica failover over many Hypertable ThriftBrokers.

Use :class:`Resource` for one connection to one ThriftBroker (it *is* the
Thrift ``HqlService`` client, with managed namespaces in ``r.mns``).
Use :class:`Pool` for a thread-safe pool of Resources to one host
(``pool.call(...)``, or ``pool.acquire()`` for a :class:`Lease`).
Use :class:`Resources` for many hosts: ``unicast`` to one, ``broadcast`` to all at once.
Use :class:`Shards` when keys map to sets of hosts: ``unicast``, ``broadcast``,
``multicast`` over a minimal cover of hosts, ``locate(row)`` by rendezvous hashing.
Use :class:`Replicas` for brokers in front of the same data: writes fail over
in order, reads are balanced, retried writes never duplicate a version.
Use :class:`Mutator` (``replicas.mutator(table)``, ``shards.mutator(table)``) for
bulk writes: cells buffered, flushed as stamped ``set_cells`` that fail over.
Use ``htcluster.flask_ext.Hypertable`` in a Flask app, ``htcluster.testing``
for local stand-in brokers, ``htcluster.types`` for the wire structs and the
shapes of ``stats()``, ``htcluster.events`` for listeners.

Policy in one sentence: a call goes to a host chosen at random among the
healthy ones with a warm or unused connection (busy and lagging hosts last);
a host whose connection fails is skipped for an exponentially growing,
capped, jittered backoff, then probed with ``status()`` within
``probe_timeout`` (and the call's deadline) before user calls go to it again;
failovers and hedges (``hedge=`` seconds) draw on a retry budget, and every
routed call carries one deadline (``timeout=`` seconds).

Every duration in this API is in seconds (float).  For brokers behind TLS,
give any of these ``ssl_context=`` (:func:`tls_context` builds one).
"""
from __future__ import annotations

import logging

from ._call.attempt import Pool
from ._call.scope import deadline
from ._io.resource import ManagedNamespaces, Resource
from ._policy.budget import RetryBudget
from ._policy.health import Backoff, HostHealth, HostState, Retry
from ._policy.stamps import next_timestamp, stamp_cells
from ._pool.pool import Lease
from ._routing.base import RoutingClient
from ._routing.mutator import Mutator
from ._routing.replicas import Replicas
from ._routing.resources import Resources
from ._routing.shards import Shards
from ._routing.url import from_url
from .errors import (BroadcastError, BrokerProtocolError, BrokerUnavailable, ClientException, ClientResourceError,
                     ConfigError, DeadlineExceeded, FlushError, HtclusterError, InvalidRequest, MutatorFull,
                     NoHostAvailable, PoolTimeout, TLSError, WriteOutcomeUnknown)
from ._io.tls import tls_context
from .hosts import DEFAULT_PORT, Host, parse_hosts

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_PORT",
    "Backoff",
    "BroadcastError",
    "BrokerProtocolError",
    "BrokerUnavailable",
    "ClientException",
    "ClientResourceError",
    "ConfigError",
    "DeadlineExceeded",
    "FlushError",
    "Host",
    "HostHealth",
    "HostState",
    "HtclusterError",
    "InvalidRequest",
    "Lease",
    "ManagedNamespaces",
    "Mutator",
    "MutatorFull",
    "NoHostAvailable",
    "Pool",
    "PoolTimeout",
    "Replicas",
    "Resource",
    "Resources",
    "Retry",
    "RetryBudget",
    "RoutingClient",
    "Shards",
    "TLSError",
    "WriteOutcomeUnknown",
    "deadline",
    "from_url",
    "next_timestamp",
    "parse_hosts",
    "stamp_cells",
    "tls_context",
]

logging.getLogger("htcluster").addHandler(logging.NullHandler())
