"""Plans: which hosts a routed call may go to, in which order, and how a host is picked among them.

A routed call is ``(method, args, namespace, read or write, key)``; the
routing classes turn it into a :class:`Plan` (pure values, no I/O) and hand
it to the router, which walks it under the retry, the retry budget, the
probes, the hedging and the deadline:

============================  ===================================================
routing class                 plan
============================  ===================================================
``Resources.unicast``         every host (or the ``hosts=`` subset), balanced
``Replicas.call``, a write    every replica, in the order given: the first
                              healthy one takes the write
``Replicas.call``, a read     every replica, balanced
``Shards.unicast(key)``       the hosts of ``key``, balanced
``Shards.multicast(keys)``    a smallest cover of the keys' hosts (``Shards.cover``)
============================  ===================================================

Balanced means :class:`CachedBalancer` (lupyne's "random, biased by cached
connections", the documented default): among the usable hosts that do not
lag after a lost hedge, those with an idle connection or no connection in use
rank 1, those whose connections are all busy rank 0, and the pick is at
random among the best.  Capping the idle count at 1 makes every warm host tie,
so one thread's reads spread over every replica while warm, free connections
still win under load.
"""
from __future__ import annotations

import random
from typing import Callable, NamedTuple, Protocol, Sequence

__all__ = ["Balancer", "CachedBalancer", "Load", "Plan", "rank"]

#: ``(idle connections, connections in use)`` of one host's pool.
Load = tuple[int, int]


def rank(load: Load) -> int:
    """Return the rank of a usable host with ``load`` ``(idle, in_use)``: 1 when it has an idle
    connection or none in use (warm or free), 0 when all its connections are busy."""
    idle, in_use = load
    return 1 if idle > 0 or in_use == 0 else 0


class Plan(NamedTuple):
    """The candidate hosts of one routed call.

    :param hosts: ``'host:port'`` keys, in preference order when ``ordered``.
    :param ordered: take the first usable host in order (``Replicas`` writes);
        False: the balancer picks among the usable hosts.
    :param idempotent: the call may be repeated on another host after it was
        sent (reads, fully stamped writes); a call that was not sent is always
        safe to repeat.
    """

    hosts: Sequence[str]
    ordered: bool = False
    idempotent: bool = True


class Balancer(Protocol):
    """Picks one host among usable candidates; pure, given their loads and a random source."""

    def pick(self, hosts: Sequence[str], load: Callable[[str], Load], rng: random.Random) -> str:
        """Return one of ``hosts`` (never empty)."""


class CachedBalancer:
    """lupyne's policy: at random among the hosts with a warm or unused connection, busy hosts last."""

    def pick(self, hosts: Sequence[str], load: Callable[[str], Load], rng: random.Random) -> str:
        """Return one of ``hosts`` of the highest rank (1: an idle connection or none in use; 0: all busy).

        :param hosts: usable candidate hosts (non-empty).
        :param load: ``host -> (idle, in_use)``.
        :param rng: the random source that breaks ties.
        :returns: the chosen host.
        """
        if len(hosts) == 1:
            return hosts[0]
        best = [host for host in hosts if rank(load(host))]
        return rng.choice(best or list(hosts))

    def __repr__(self) -> str:
        return "CachedBalancer()"
