"""Shards: keys (partitions of the data) served by sets of brokers.

:class:`Shards` maps each shard key to the set of hosts that serve it, like
``lupyne.client.Shards``, and routes through one shared
:class:`~htcluster.resources.Resources`:

* ``unicast(key, ...)``: one host of the key; ``broadcast(key, ...)``: all of them;
* ``multicast(keys, ...)``: a smallest set of hosts that together serve every key
  (:meth:`Shards.cover`), called in parallel; the keys of a host that cannot be
  reached are covered again by the other hosts serving them;
* ``connection(key)``, ``scan(key, table, ...)``: one host of the key, for
  calls that share a connection;
* ``locate(row_key)``: the shard key a row belongs to, by rendezvous
  (highest-random-weight) hashing with a stable hash, so that adding a shard
  moves only about 1/n of the rows, all of them to the new shard.
"""
from __future__ import annotations

import hashlib
import itertools
from typing import Any, ContextManager, Hashable, Iterable, Iterator, Literal, Mapping, Optional, Union, overload

from .errors import BrokerUnavailable, ConfigError
from .hosts import Host, HostLike
from .policy import is_write
from .resource import Resource, scan_cells
from .resources import Resources, check_error_mode, settle
from .stats import BudgetStats, HostStats
from .types import Cell, ScanSpec

__all__ = ["EXACT_COVER_LIMIT", "Shards", "rendezvous_weight"]

#: Up to this many candidate hosts, :meth:`Shards.cover` searches a smallest cover
#: exhaustively (at most 2**limit subsets); above, it uses the greedy set cover.
EXACT_COVER_LIMIT = 12


def rendezvous_weight(shard: Hashable, row_key: Union[str, bytes]) -> int:
    """Return the stable 64-bit weight of ``row_key`` for ``shard`` (same in every process).

    Python's ``hash`` is salted per process, so a keyed BLAKE2b digest of
    ``str(shard)`` and the row is used instead.

    :param shard: a shard key (its ``str`` is hashed).
    :param row_key: a row key; ``str`` is encoded as UTF-8.
    :returns: an int in ``[0, 2**64)``.
    """
    row = row_key.encode("utf-8") if isinstance(row_key, str) else bytes(row_key)
    digest = hashlib.blake2b(row, digest_size=8, key=str(shard).encode("utf-8")[:64])
    return int.from_bytes(digest.digest(), "big")


#: ``{host: answer}`` of the hosts that answered a broadcast or multicast.
Results = dict[str, Any]
#: ``{host: exception}`` of those that did not (with ``errors='return'``).
Errors = dict[str, BaseException]


class Shards(dict[Hashable, set[str]]):
    """Map shard keys to sets of ``'host:port'``, with one :class:`Resources` for all the hosts.

    The constructor has lupyne's shape: ``items`` are ``(host, key)`` pairs and
    each keyword is a host with the list of keys it serves (where lupyne takes
    ``limit``, the options of the shared :class:`Resources` go in ``options``).

    :param items: ``(host, key)`` pairs.
    :param options: keyword arguments for the shared :class:`Resources`
        (``retry``, ``backoff``, pool options ...; durations in seconds).
    :param multimap: ``host=[key, ...]``: every key that host serves.
    :raises ConfigError: no pair given, an item that is not a pair, a host
        given one string instead of a list of keys, or a malformed host.

    Example::

        shards = Shards([('ht1:15867', 'eu'), ('ht2:15867', 'us')], **{'ht3:15867': ['eu', 'us']})
        shards.unicast('eu', 'hql_query', 'SELECT * FROM t', namespace='test')
        shards.multicast(['eu', 'us'], 'status')   # ht3 alone covers both
        shards.unicast(shards.locate('row17'), 'get_row', 't', 'row17', namespace='test')
    """

    def __init__(self, items: Iterable[tuple[HostLike, Hashable]] = (), *,
                 options: Optional[Mapping[str, Any]] = None, **multimap: Iterable[Hashable]) -> None:
        super().__init__()
        for host, key in _pairs(items, multimap):
            self.setdefault(key, set()).add(str(Host.parse(host)))
        if not self:
            raise ConfigError("Shards needs at least one (host, key) pair")
        hosts = sorted({host for hosts in self.values() for host in hosts})
        self.resources = Resources(hosts, **dict(options or {}))

    def hosts(self, key: Hashable) -> set[str]:
        """Return the hosts serving ``key``.

        :param key: a shard key.
        :returns: the set of ``'host:port'`` (the mapping's own value).
        :raises KeyError: ``key`` is not a shard key here (the message lists them).
        """
        try:
            return self[key]
        except KeyError:
            raise KeyError(f"unknown shard key {key!r}; the keys are {sorted(map(str, self))}") from None

    def unicast(self, key: Hashable, method: str, *args: Any, namespace: Optional[str] = None,
                idempotent: Optional[bool] = None, timeout: Optional[float] = None,
                hedge: Optional[float] = None) -> Any:
        """Call ``method`` on one host serving ``key`` (see :meth:`Resources.unicast`).

        :param key: a shard key.
        :param method: a broker method (protocol.md section 2).
        :param namespace: a namespace name whose per-connection id is put before ``args``.
        :param idempotent: may the call be repeated on another host after it
            was sent; default: true for reads.
        :param timeout: seconds for the whole call, failovers included (see :meth:`Resources.unicast`).
        :param hedge: seconds after which a read is also sent to another host of the key (0: never;
            ``None``: the ``hedge`` option).
        :returns: the broker's answer.
        :raises KeyError: unknown key.
        :raises NoHostAvailable: no host of the key could be reached.
        :raises DeadlineExceeded: ``timeout`` ran out.
        """
        return self.resources.unicast(method, *args, namespace=namespace, hosts=self.hosts(key),
                                      idempotent=idempotent, timeout=timeout, hedge=hedge)

    @overload
    def broadcast(self, key: Hashable, method: str, *args: Any, namespace: Optional[str] = None,
                  errors: Literal["raise"] = "raise", timeout: Optional[float] = None) -> Results: ...

    @overload
    def broadcast(self, key: Hashable, method: str, *args: Any, namespace: Optional[str] = None,
                  errors: Literal["return"], timeout: Optional[float] = None) -> tuple[Results, Errors]: ...

    @overload
    def broadcast(self, key: Hashable, method: str, *args: Any, namespace: Optional[str] = None,
                  errors: str = "raise", timeout: Optional[float] = None) -> Union[Results, tuple[Results, Errors]]: ...

    def broadcast(self, key: Hashable, method: str, *args: Any, namespace: Optional[str] = None,
                  errors: str = "raise", timeout: Optional[float] = None) -> Union[Results, tuple[Results, Errors]]:
        """Call ``method`` on every host serving ``key``, in parallel (see :meth:`Resources.broadcast`).

        :param key: a shard key.
        :param method: a broker method (protocol.md section 2).
        :param namespace: a namespace name whose per-connection id is put before ``args``.
        :param errors: ``'raise'`` or ``'return'``.
        :param timeout: seconds for the whole broadcast.
        :returns: ``{host: result}`` (or ``(results, errors)`` with ``errors='return'``).
        :raises BroadcastError: some host failed and ``errors='raise'``.
        """
        return self.resources.broadcast(method, *args, namespace=namespace, hosts=self.hosts(key), errors=errors,
                                        timeout=timeout)

    @overload
    def multicast(self, keys: Iterable[Hashable], method: str, *args: Any, namespace: Optional[str] = None,
                  errors: Literal["raise"] = "raise", idempotent: Optional[bool] = None,
                  timeout: Optional[float] = None) -> Results: ...

    @overload
    def multicast(self, keys: Iterable[Hashable], method: str, *args: Any, namespace: Optional[str] = None,
                  errors: Literal["return"], idempotent: Optional[bool] = None,
                  timeout: Optional[float] = None) -> tuple[Results, Errors]: ...

    @overload
    def multicast(self, keys: Iterable[Hashable], method: str, *args: Any, namespace: Optional[str] = None,
                  errors: str = "raise", idempotent: Optional[bool] = None,
                  timeout: Optional[float] = None) -> Union[Results, tuple[Results, Errors]]: ...

    def multicast(self, keys: Iterable[Hashable], method: str, *args: Any, namespace: Optional[str] = None,
                  errors: str = "raise", idempotent: Optional[bool] = None,
                  timeout: Optional[float] = None) -> Union[Results, tuple[Results, Errors]]:
        """Call ``method`` on a smallest set of hosts that together serve all ``keys``, in parallel.

        A host serving several keys answers once for all of them, so answers may
        overlap when keys share hosts.  When a chosen host cannot be reached,
        the keys it was to serve are covered again by their other hosts, and
        so on, within the shared ``Retry``; as for :meth:`Resources.unicast`, a
        call that may have reached the failed host is sent elsewhere only when
        ``idempotent``.  A broker's answer (``ClientException``) is final.

        :param keys: shard keys (duplicates ignored).
        :param method: a broker method (protocol.md section 2).
        :param namespace: a namespace name whose per-connection id is put before ``args``.
        :param errors: ``'raise'`` or ``'return'``, as for :meth:`Resources.broadcast`;
            the errors are those of the hosts whose keys stayed unserved.
        :param idempotent: may a call that was sent be repeated on another host;
            default: true for reads (:func:`htcluster.policy.is_write`).
        :param timeout: seconds for the whole multicast, re-covering rounds included.
        :returns: ``{host: result}`` of the hosts that answered (or
            ``(results, errors)`` with ``errors='return'``).
        :raises KeyError: an unknown key.
        :raises ConfigError: ``errors`` is not ``'raise'`` or ``'return'``.
        :raises BroadcastError: some key was served by no host and ``errors='raise'``.
        """
        check_error_mode(errors)
        idempotent = not is_write(method, args) if idempotent is None else idempotent
        pending = [key for key in dict.fromkeys(keys) if self.hosts(key)]  # unknown keys fail before any call
        results: dict[str, Any] = {}
        failures: dict[str, BaseException] = {}
        lost: list[Hashable] = []
        retry = self.resources.retry
        deadline = self.resources.deadline(timeout)
        while pending:
            chosen = self._cover(pending, exclude=failures)
            got, failed = self.resources._broadcast(method, args, namespace, chosen, force=True, deadline=deadline)
            results.update(got)
            failures.update(failed)
            final = {h for h, exc in failed.items()
                     if not isinstance(exc, BrokerUnavailable) or (exc.sent and not idempotent)}
            unserved, moved = [], set()
            for key in pending:
                mine = self[key].intersection(chosen)
                if mine.intersection(got):
                    continue  # served
                if mine & final or self[key] <= set(failures):
                    lost.append(key)  # an answer, an unsafe repeat, or no host left
                else:
                    unserved.append(key)
                    moved |= mine
            for host in sorted(moved):
                retry = retry.increment(host)
                if retry.exhausted or not self.resources.spend_retry(f"multicast {method}"):
                    lost += unserved
                    unserved = []
                    break
                self.resources.failed_over(f"multicast {method}", host, failures[host])
            pending = unserved
        blamed = {h: exc for h, exc in failures.items() if any(h in self[key] for key in lost)}
        return settle(results, blamed, errors, f"{method} reached no host for key(s) {', '.join(map(str, lost))}")

    def cover(self, keys: Iterable[Hashable]) -> list[str]:
        """Return a smallest list of hosts that together serve every key of ``keys``.

        A key is served by its live hosts when it has any, else by the dead one
        whose backoff ends first.
        Up to :data:`EXACT_COVER_LIMIT` candidate hosts the result is a true
        minimum (exhaustive search); beyond, the greedy set cover (at most
        ``ln(len(keys)) + 1`` times the minimum).  Among equal choices, hosts
        with more idle connections win, then chance.

        :param keys: shard keys (duplicates ignored).
        :returns: hosts, no duplicates; empty for no keys.
        :raises KeyError: an unknown key.
        """
        return self._cover(keys)

    def _cover(self, keys: Iterable[Hashable], exclude: Iterable[str] = ()) -> list[str]:
        """:meth:`cover` without the hosts of ``exclude``; every key must keep a host."""
        left = set().union(*self.values()) - set(exclude)
        needs = [self.hosts(key) & left for key in dict.fromkeys(keys)]
        if not needs:
            return []
        priority = {h: self.resources.priority(h) for h in set().union(*needs)}
        # a key with dead hosts only is served by the one that comes back soonest
        needs = [{h for h in hs if priority[h] is not None} or _soonest(self.resources, hs) for hs in needs]
        candidates = sorted(set().union(*needs))
        # rank: live first, then idle connections, then a random tie-breaker
        rank: dict[str, Rank] = {h: (priority[h] is not None, priority[h] or 0, self.resources.rng.random())
                                 for h in candidates}
        masks = {h: sum(1 << i for i, hs in enumerate(needs) if h in hs) for h in candidates}
        full = (1 << len(needs)) - 1
        if len(candidates) <= EXACT_COVER_LIMIT:
            return _smallest_cover(candidates, masks, full, rank)
        return _greedy_cover(candidates, masks, full, rank)

    @property
    def listeners(self) -> Any:
        """The :class:`~htcluster.events.Listeners` of the shared :class:`Resources` (and its pools)."""
        return self.resources.listeners

    def stats(self) -> dict[str, HostStats]:
        """Return per host what :meth:`Resources.stats` returns."""
        return self.resources.stats()

    def budget_stats(self) -> BudgetStats:
        """Return what :meth:`Resources.budget_stats` returns (retry budget, hedges)."""
        return self.resources.budget_stats()

    def locate(self, row_key: Union[str, bytes]) -> Hashable:
        """Return the shard key ``row_key`` belongs to: the key of highest rendezvous weight.

        Stable across processes and machines; adding a shard moves about
        1/n of all row keys, each to the new shard.

        :param row_key: a row key (``str`` or ``bytes``).
        :returns: one of the shard keys.
        """
        key: Hashable = max(self, key=lambda shard: (rendezvous_weight(shard, row_key), str(shard)))
        return key

    def connection(self, key: Hashable) -> "ContextManager[Resource]":
        """Check out one connection to a host serving ``key`` (see :meth:`Resources.connection`).

        :param key: a shard key.
        :returns: a context manager giving a :class:`~htcluster.resource.Resource`.
        :raises KeyError: unknown key.
        :raises NoHostAvailable: no host of the key could be connected to.
        """
        return self.resources.connection(hosts=self.hosts(key))

    def scan(self, key: Hashable, table: str, scan_spec: Optional[ScanSpec] = None, *,
             namespace: str, timeout: Optional[float] = None) -> Iterator[Cell]:
        """Yield the cells of ``table`` from one host serving ``key`` (scanner opened and always closed).

        :param key: a shard key.
        :param table: the table name.
        :param scan_spec: what to read (``None``: everything).
        :param namespace: the namespace name.
        :param timeout: seconds each round trip (opening, each batch) may take.
        :returns: a generator of :class:`~htcluster.types.Cell`.
        :raises KeyError: unknown key.
        :raises NoHostAvailable: no host of the key could be connected to.
        :raises ClientException: e.g. the table does not exist.
        """
        with self.connection(key) as r:
            yield from scan_cells(r, r.mns[namespace], table, scan_spec, timeout=timeout)

    def close(self) -> None:
        """Close the shared :class:`Resources`."""
        self.resources.close()

    def __enter__(self) -> "Shards":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _pairs(items: Iterable[tuple[HostLike, Hashable]],
           multimap: Mapping[str, Iterable[Hashable]]) -> Iterator[tuple[HostLike, Hashable]]:
    """Yield the ``(host, key)`` pairs of :class:`Shards`' arguments, refusing malformed ones.

    :raises ConfigError: an item is not a pair, or a host's keys are one string.
    """
    for item in items:
        try:
            host, key = item if not isinstance(item, (str, bytes)) else ()
        except (TypeError, ValueError):
            raise ConfigError(f"Shards items must be (host, key) pairs, got {item!r}") from None
        yield host, key
    for host, keys in multimap.items():
        if isinstance(keys, (str, bytes)):
            raise ConfigError(f"give the keys of {host} as a list, e.g. {host}=[{keys!r}], not one string")
        for key in keys:
            yield host, key


#: How a host ranks in a cover: live first, then more idle connections, then a random tie-breaker.
Rank = tuple[bool, int, float]


def _soonest(resources: Resources, hosts: set[str]) -> set[str]:
    """The one host of ``hosts`` (all dead) due back first, as a set."""
    host = resources.health.soonest(sorted(hosts))
    return {host} if host is not None else set()


def _smallest_cover(candidates: list[str], masks: dict[str, int], full: int, rank: dict[str, Rank]) -> list[str]:
    """Exhaustive search: the first size with a cover, best total rank among those."""
    for size in range(1, len(candidates) + 1):
        covers = [combo for combo in itertools.combinations(candidates, size)
                  if _union(masks, combo) == full]
        if covers:
            best = max(covers, key=lambda combo: sorted((rank[h] for h in combo), reverse=True))
            return list(best)
    raise AssertionError("every key has a host, so all candidates cover")  # pragma: no cover


def _greedy_cover(candidates: list[str], masks: dict[str, int], full: int, rank: dict[str, Rank]) -> list[str]:
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
