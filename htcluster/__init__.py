"""htcluster: pools, sharding and replica failover over many Hypertable ThriftBrokers.

Use :class:`Resource` for one connection to one ThriftBroker (it *is* the
Thrift ``HqlService`` client, with managed namespaces in ``r.mns``).
Use :class:`Pool` for a thread-safe pool of Resources to one host.
Use :class:`Resources` for many hosts: ``unicast`` to one, parallel ``broadcast`` to all.
Use :class:`Shards` when keys map to sets of hosts: ``unicast``, ``broadcast``,
``multicast`` over a minimal cover of hosts, ``locate(row)`` by rendezvous hashing.
Use :class:`Replicas` for brokers in front of the same data: writes fail over
in order, reads are balanced, retried writes never duplicate a version.
Use ``htcluster.flask_ext.Hypertable`` in a Flask app, ``htcluster.testing``
for local stand-in brokers, ``htcluster.types`` for the wire structs.
The ``htcluster`` command and the main job's web-log code live in ``htcluster.cli``
(old paths such as ``htcluster.weblog`` still import the same modules).

Policy in one sentence: a call goes to a host chosen at random among the
healthy ones with a warm or unused connection (busy and lagging hosts last);
a host whose connection fails is skipped for an exponentially growing,
capped, jittered backoff, then probed with ``status()`` within
``probe_timeout`` before user calls go to it again; failovers and hedges
(``hedge=`` seconds) draw on a retry budget, and every routed call carries one
deadline (``timeout=`` seconds).

Every duration in this API is in seconds (float).
"""
from __future__ import annotations

import logging

from . import _moved  # noqa: F401  (old paths such as htcluster.weblog -> htcluster.cli.weblog)
from .budget import RetryBudget
from .errors import (BroadcastError, BrokerProtocolError, BrokerUnavailable, ClientException, ConfigError,
                     DeadlineExceeded, HtclusterError, InvalidRequest, NoHostAvailable, PoolTimeout,
                     WriteOutcomeUnknown)
from .hosts import DEFAULT_PORT, Host, parse_hosts
from .policy import Backoff, HostHealth, HostState, Retry
from .pool import Pool
from .replicas import Replicas
from .resource import ManagedNamespaces, Resource
from .resources import Resources
from .shards import Shards

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_PORT",
    "Backoff",
    "BroadcastError",
    "BrokerProtocolError",
    "BrokerUnavailable",
    "ClientException",
    "ConfigError",
    "DeadlineExceeded",
    "Host",
    "HostHealth",
    "HostState",
    "HtclusterError",
    "InvalidRequest",
    "ManagedNamespaces",
    "NoHostAvailable",
    "Pool",
    "PoolTimeout",
    "Replicas",
    "Resource",
    "Resources",
    "Retry",
    "RetryBudget",
    "Shards",
    "WriteOutcomeUnknown",
    "parse_hosts",
]

logging.getLogger("htcluster").addHandler(logging.NullHandler())
