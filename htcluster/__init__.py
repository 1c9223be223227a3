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

Policy in one sentence: a call goes to a host chosen at random among those
with the most idle connections; a host whose connection fails is skipped for
an exponentially growing, capped, jittered backoff and then tried again, and
when every host is down the one due back soonest is tried rather than failing
at once.

Every duration in this API is in seconds (float).
"""
from __future__ import annotations

import logging

from . import _moved  # noqa: F401  (old paths such as htcluster.weblog -> htcluster.cli.weblog)
from .errors import (BroadcastError, BrokerUnavailable, ClientException, ConfigError,
                     HtclusterError, NoHostAvailable, PoolTimeout)
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
    "BrokerUnavailable",
    "ClientException",
    "ConfigError",
    "Host",
    "HostHealth",
    "HostState",
    "HtclusterError",
    "ManagedNamespaces",
    "NoHostAvailable",
    "Pool",
    "PoolTimeout",
    "Replicas",
    "Resource",
    "Resources",
    "Retry",
    "Shards",
    "parse_hosts",
]

logging.getLogger("htcluster").addHandler(logging.NullHandler())
