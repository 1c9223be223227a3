"""The routing layer in one import: many brokers, chosen, failed over and broadcast to.

* :class:`Resources` (``resources.py``): a pool per host; ``unicast`` to one host
  with failover, ``broadcast`` to all in parallel.
* :class:`Shards` (``shards.py``): shard keys served by sets of hosts; ``multicast``
  over a smallest covering set of hosts; ``locate`` a row's shard by rendezvous hashing.
* :class:`Replicas` (``replicas.py``): brokers in front of the same data; writes to the
  first healthy host, reads balanced, retries that never duplicate a write.

Host health and retry decisions live in :mod:`htcluster.policy`.
"""
from __future__ import annotations

from .replicas import Replicas, collapse, next_timestamp, stamp_cells
from .resources import Resources
from .shards import Shards

__all__ = ["Replicas", "Resources", "Shards", "collapse", "next_timestamp", "stamp_cells"]
