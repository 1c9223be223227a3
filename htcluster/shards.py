"""Shards: keys (partitions of the data) served by sets of brokers.

:class:`Shards` maps each shard key to the set of hosts that serve it, like
``lupyne.client.Shards``, and routes through one shared
:class:`~htcluster.resources.Resources`:

* ``unicast(key, ...)``: one host of the key; ``broadcast(key, ...)``: all of them;
* ``multicast(keys, ...)``: a smallest set of hosts that together serve every key
  (:meth:`Shards.cover`), called in parallel;
* ``locate(row_key)``: the shard key a row belongs to, by rendezvous
  (highest-random-weight) hashing with a stable hash, so that adding a shard
  moves only about 1/n of the rows, all of them to the new shard.
"""
from __future__ import annotations

import hashlib
import itertools
from typing import Any, ContextManager, Hashable, Iterable, Mapping, Optional, Union

from .errors import ConfigError
from .hosts import Host, HostLike
from .resource import Resource
from .resources import Resources

__all__ = ["EXACT_COVER_LIMIT", "Shards", "rendezvous_weight"]

#: Up to this many candidate hosts, :meth:`Shards.cover` searches a smallest cover
#: exhaustively (at most 2**limit subsets); above, it uses the greedy set cover.
EXACT_COVER_LIMIT = 12


def rendezvous_weight(shard: Hashable, row_key: Union[str, bytes]) -> int:
    """Return the stable 64-bit weight of ``row_key`` for ``shard`` (same in every process).

    Python's ``hash`` is salted per process, so a keyed BLAKE2b digest of
    ``str(shard)`` and the row is used instead.
    """
    row = row_key.encode("utf-8") if isinstance(row_key, str) else bytes(row_key)
    digest = hashlib.blake2b(row, digest_size=8, key=str(shard).encode("utf-8")[:64])
    return int.from_bytes(digest.digest(), "big")


class Shards(dict):
    """Map shard keys to sets of ``'host:port'``, with one :class:`Resources` for all the hosts.

    :param items: ``(host, key)`` pairs.
    :param options: keyword arguments for the shared :class:`Resources`
        (``retry``, ``backoff``, pool options ...).
    :param multimap: ``host=[key, ...]``: every key that host serves.
    :raises ConfigError: no host given, or a malformed host.

    Example::

        shards = Shards([('ht1:15867', 'eu'), ('ht2:15867', 'us')], **{'ht3:15867': ['eu', 'us']})
        shards.unicast('eu', 'hql_query', 'SELECT * FROM t', namespace='test')
        shards.multicast(['eu', 'us'], 'status')   # ht3 alone covers both
        shards.unicast(shards.locate('row17'), 'get_row', 't', 'row17', namespace='test')
    """

    def __init__(self, items: Iterable[tuple[HostLike, Hashable]] = (), *,
                 options: Optional[Mapping[str, Any]] = None, **multimap: Iterable[Hashable]) -> None:
        super().__init__()
        pairs = itertools.chain(items, ((host, key) for host, keys in multimap.items() for key in keys))
        for host, key in pairs:
            self.setdefault(key, set()).add(str(Host.parse(host)))
        if not self:
            raise ConfigError("Shards needs at least one (host, key) pair")
        hosts = sorted({host for hosts in self.values() for host in hosts})
        self.resources = Resources(hosts, **dict(options or {}))

    def hosts(self, key: Hashable) -> set[str]:
        """Return the hosts serving ``key``.

        :raises KeyError: ``key`` is not a shard key here (the message lists them).
        """
        try:
            return self[key]
        except KeyError:
            raise KeyError(f"unknown shard key {key!r}; the keys are {sorted(map(str, self))}") from None

    def unicast(self, key: Hashable, method: str, *args: Any, namespace: Optional[str] = None,
                idempotent: Optional[bool] = None) -> Any:
        """Call ``method`` on one host serving ``key`` (see :meth:`Resources.unicast`).

        :returns: the broker's answer.
        :raises KeyError: unknown key.
        :raises NoHostAvailable: no host of the key could be reached.
        """
        return self.resources.unicast(method, *args, namespace=namespace, hosts=self.hosts(key),
                                      idempotent=idempotent)

    def broadcast(self, key: Hashable, method: str, *args: Any, namespace: Optional[str] = None,
                  errors: str = "raise") -> Any:
        """Call ``method`` on every host serving ``key``, in parallel (see :meth:`Resources.broadcast`).

        :returns: ``{host: result}`` (or ``(results, errors)`` with ``errors='return'``).
        :raises BroadcastError: some host failed and ``errors='raise'``.
        """
        return self.resources.broadcast(method, *args, namespace=namespace, hosts=self.hosts(key), errors=errors)

    def multicast(self, keys: Iterable[Hashable], method: str, *args: Any, namespace: Optional[str] = None,
                  errors: str = "raise") -> Any:
        """Call ``method`` on a smallest set of hosts that together serve all ``keys``, in parallel.

        A host serving several keys answers once for all of them, so answers may
        overlap when keys share hosts.

        :returns: ``{host: result}`` (or ``(results, errors)`` with ``errors='return'``).
        :raises KeyError: an unknown key.
        :raises BroadcastError: some host failed and ``errors='raise'``.
        """
        hosts = self.cover(keys)
        return self.resources.broadcast(method, *args, namespace=namespace, hosts=hosts, errors=errors)

    def cover(self, keys: Iterable[Hashable]) -> list[str]:
        """Return a smallest list of hosts that together serve every key of ``keys``.

        A key is served by its live hosts when it has any, else by its dead ones.
        Up to :data:`EXACT_COVER_LIMIT` candidate hosts the result is a true
        minimum (exhaustive search); beyond, the greedy set cover (at most
        ``ln(len(keys)) + 1`` times the minimum).  Among equal choices, hosts
        with more idle connections win, then chance.

        :returns: hosts, no duplicates; empty for no keys.
        :raises KeyError: an unknown key.
        """
        needs = [self.hosts(key) for key in dict.fromkeys(keys)]
        if not needs:
            return []
        priority = {h: self.resources.priority(h) for h in set().union(*needs)}
        needs = [{h for h in hs if priority[h] is not None} or hs for hs in needs]
        candidates = sorted(set().union(*needs))
        # rank: live first, then idle connections, then a random tie-breaker
        rank = {h: (priority[h] is not None, priority[h] or 0, self.resources.rng.random()) for h in candidates}
        masks = {h: sum(1 << i for i, hs in enumerate(needs) if h in hs) for h in candidates}
        full = (1 << len(needs)) - 1
        if len(candidates) <= EXACT_COVER_LIMIT:
            return _smallest_cover(candidates, masks, full, rank)
        return _greedy_cover(candidates, masks, full, rank)

    def locate(self, row_key: Union[str, bytes]) -> Hashable:
        """Return the shard key ``row_key`` belongs to: the key of highest rendezvous weight.

        Stable across processes and machines; adding a shard moves about
        1/n of all row keys, each to the new shard.
        """
        return max(self, key=lambda shard: (rendezvous_weight(shard, row_key), str(shard)))

    def connection(self, key: Hashable) -> "ContextManager[Resource]":
        """Check out one connection to a host serving ``key`` (see :meth:`Resources.connection`)."""
        return self.resources.connection(hosts=self.hosts(key))

    def close(self) -> None:
        """Close the shared :class:`Resources`."""
        self.resources.close()

    def __enter__(self) -> "Shards":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _smallest_cover(candidates: list[str], masks: dict[str, int], full: int, rank: dict) -> list[str]:
    """Exhaustive search: the first size with a cover, best total rank among those."""
    for size in range(1, len(candidates) + 1):
        covers = [combo for combo in itertools.combinations(candidates, size)
                  if _union(masks, combo) == full]
        if covers:
            best = max(covers, key=lambda combo: sorted((rank[h] for h in combo), reverse=True))
            return list(best)
    raise AssertionError("every key has a host, so all candidates cover")  # pragma: no cover


def _greedy_cover(candidates: list[str], masks: dict[str, int], full: int, rank: dict) -> list[str]:
    """Greedy set cover: repeatedly take the host serving most uncovered keys, best rank on ties."""
    chosen: list[str] = []
    uncovered = full
    while uncovered:
        host = max(candidates, key=lambda h: (bin(masks[h] & uncovered).count("1"), rank[h]))
        chosen.append(host)
        uncovered &= ~masks[host]
    return chosen


def _union(masks: dict[str, int], hosts: Iterable[str]) -> int:
    bits = 0
    for h in hosts:
        bits |= masks[h]
    return bits
