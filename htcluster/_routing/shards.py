"""Shards: keys (partitions of the data) served by sets of brokers.

:class:`Shards` maps each shard key to the set of hosts that serve it, like
``lupyne.client.Shards``, and routes through one shared
:class:`~htcluster._routing.resources.Resources`:

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

import functools
import threading
from typing import Any, Callable, Hashable, Iterable, Iterator, Literal, Mapping, Optional, Union, overload

from .._call.attempt import Pool
from .._io.resource import scan_cells
from .._policy.classify import is_write
from .._policy.cover import EXACT_COVER_LIMIT, Rank, greedy_cover, smallest_cover
from .._policy.batches import DEFAULT_MAX_BYTES, DEFAULT_MAX_CELLS
from .._policy.placement import Placement
from .._policy.steps import Steps, drive
from .members import Layout
from .._policy.health import HostHealth
from ..errors import BrokerUnavailable, ConfigError
from ..hosts import Host, HostLike
from ..types import BudgetStats, Cell, Errors, HostStats, Results, ScanSpec
from .base import Connection, check_error_mode, settle
from .mutator import Mutator, shards_mutator
from .resources import Resources
from .scan_all import scan_all
from .typed import NamespaceCalls

__all__ = ["Shards"]

class Shards(Mapping[Hashable, frozenset[str]]):
    """Map shard keys to sets of ``'host:port'``, routing through one :class:`Resources` for all the hosts.

    A read-only mapping ``key -> frozenset of hosts``.  The constructor has the
    shape of every routing class: the hosts (here as ``(host, key)`` pairs, or a
    mapping ``{host: [key, ...]}``), then the same keyword options as
    ``Resources`` and ``Replicas`` (``retry``, ``backoff``, ``hedge``, the Pool
    options ...; seconds).

    :param pairs: ``(host, key)`` pairs, or ``{host: keys}``.
    :param options: the options of the shared :class:`Resources`.
    :raises ConfigError: no pair given, an item that is not a pair, a host
        given one string instead of a list of keys, a malformed host, an option,
        or a shard key without a stable encoding (keys are str, bytes, int or
        tuples of them: :meth:`locate` must place rows alike in every process).

    Example::

        shards = Shards([('ht1:15867', 'eu'), ('ht2:15867', 'us'), ('ht3:15867', 'eu'), ('ht3:15867', 'us')])
        shards.unicast('eu', 'hql_query', 'SELECT * FROM t', namespace='test')
        shards.multicast(['eu', 'us'], 'status')   # ht3 alone covers both
        shards.unicast(shards.locate('row17'), 'get_row', 't', 'row17', namespace='test')
    """

    def __init__(self, pairs: Union[Iterable[tuple[HostLike, Hashable]], Mapping[HostLike, Iterable[Hashable]]],
                 **options: Any) -> None:
        keys: dict[Hashable, set[str]] = {}
        for host, key in _pairs(pairs):
            keys.setdefault(key, set()).add(str(Host.parse(host)))
        if not keys:
            raise ConfigError("Shards needs at least one (host, key) pair")
        self._layout = Layout.of(keys)
        self._membership_lock = threading.Lock()
        #: The routing object of every host (their pools, health, router).
        self.resources = self.make_resources(self._layout.hosts(), options)

    def make_resources(self, hosts: list[str], options: Mapping[str, Any]) -> Resources:
        """Return the routing object of every host (the async twin makes an ``AsyncResources``)."""
        return Resources(hosts, **options)

    def __repr__(self) -> str:
        return f"<Shards {len(self)} keys over {len(self.resources)} hosts>"

    def __getitem__(self, key: Hashable) -> frozenset[str]:
        return self._layout.keys[key]

    def __iter__(self) -> Iterator[Hashable]:
        return iter(self._layout.keys)

    def __len__(self) -> int:
        return len(self._layout.keys)

    @property
    def placement(self) -> Placement:
        """Where rows go (:meth:`locate`): the placement of the current shard keys."""
        return self._layout.placement

    @property
    def pools(self) -> Mapping[str, Pool]:
        """``{'host:port': Pool}`` of every host."""
        return self.resources

    @property
    def health(self) -> HostHealth:
        """The hosts' health (shared by every key)."""
        return self.resources.health

    @property
    def failovers(self) -> int:
        """How many times work moved to another host after a failure (see ``Resources.failovers``)."""
        return self.resources.failovers

    def hosts(self, key: Hashable) -> frozenset[str]:
        """Return the hosts serving ``key``.

        :param key: a shard key.
        :returns: the set of ``'host:port'`` (the mapping's own value).
        :raises KeyError: ``key`` is not a shard key here (the message lists them).
        """
        return _hosts_of(self._layout.keys, key)

    def unicast(self, key: Hashable, method: str, *args: Any, namespace: Optional[str] = None,
                idempotent: Optional[bool] = None, timeout: Optional[float] = None,
                hedge: Optional[float] = None) -> Any:
        """Call ``method`` on one host serving ``key`` (see :meth:`Resources.unicast`).

        :param key: a shard key.
        :param method: a broker method (:ref:`broker-methods`).
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
        :param method: a broker method (:ref:`broker-methods`).
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
        :param method: a broker method (:ref:`broker-methods`).
        :param namespace: a namespace name whose per-connection id is put before ``args``.
        :param errors: ``'raise'`` or ``'return'``, as for :meth:`Resources.broadcast`;
            the errors are those of the hosts whose keys stayed unserved.
        :param idempotent: may a call that was sent be repeated on another host;
            default: true for reads (:func:`htcluster._policy.health.is_write`).
        :param timeout: seconds for the whole multicast, re-covering rounds included.
        :returns: ``{host: result}`` of the hosts that answered (or
            ``(results, errors)`` with ``errors='return'``).
        :raises KeyError: an unknown key.
        :raises ConfigError: ``errors`` is not ``'raise'`` or ``'return'``.
        :raises BroadcastError: some key was served by no host and ``errors='raise'``.
        """
        return drive(self.multicast_steps(keys, method, args, namespace, errors, idempotent, timeout))

    def multicast_steps(self, keys: Iterable[Hashable], method: str, args: tuple[Any, ...],
                        namespace: Optional[str] = None, errors: str = "raise", idempotent: Optional[bool] = None,
                        timeout: Optional[float] = None) -> Steps[Union[Results, tuple[Results, Errors]]]:
        """:meth:`multicast` as a generator of its waits (:mod:`htcluster._policy.steps`), for every I/O flavour."""
        check_error_mode(errors)
        namespace = self.resources.namespace_for(method, namespace)
        idempotent = not is_write(method, args) if idempotent is None else idempotent
        pending = [key for key in dict.fromkeys(keys) if self.hosts(key)]  # unknown keys fail before any call
        keymap = self._layout.keys  # one snapshot for the whole multicast (membership changes)
        results: dict[str, Any] = {}
        failures: dict[str, BaseException] = {}
        lost: list[Hashable] = []
        router = self.resources.router
        retry = router.retry
        deadline = router.deadline(timeout)
        while pending:
            chosen = self._cover(pending, exclude=failures, keymap=keymap)
            got, failed = yield from router.fanout_steps(chosen, method, args, namespace, deadline, force=True)
            results.update(got)
            failures.update(failed)
            final = {h for h, exc in failed.items()
                     if not isinstance(exc, BrokerUnavailable) or (exc.sent and not idempotent)}
            unserved: list[Hashable] = []
            moved: set[str] = set()
            for key in pending:
                mine = keymap[key].intersection(chosen)
                if mine.intersection(got):
                    continue  # served
                if mine & final or keymap[key] <= set(failures):
                    lost.append(key)  # an answer, an unsafe repeat, or no host left
                else:
                    unserved.append(key)
                    moved |= mine
            for host in sorted(moved):
                retry = retry.increment(host)
                if retry.exhausted or not router.spend_retry(f"multicast {method}"):
                    lost += unserved
                    unserved = []
                    break
                router.failed_over(f"multicast {method}", host, failures[host])
            pending = unserved
        blamed = {h: exc for h, exc in failures.items() if any(h in keymap[key] for key in lost)}
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

    def _cover(self, keys: Iterable[Hashable], exclude: Iterable[str] = (),
               keymap: Optional[Mapping[Hashable, frozenset[str]]] = None) -> list[str]:
        """:meth:`cover` without the hosts of ``exclude``, over ``keymap`` (default: the current
        keys); every key must keep a host."""
        keymap = self._layout.keys if keymap is None else keymap
        excluded = set(exclude)
        needs: list[set[str]] = [set(_hosts_of(keymap, key) - excluded) for key in dict.fromkeys(keys)]
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
            return smallest_cover(candidates, masks, full, rank)
        return greedy_cover(candidates, masks, full, rank)

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

        The weight hashes a canonical encoding of the whole shard key
        (:mod:`htcluster._policy.placement`), so the answer is the same in every
        process and on every machine; adding a shard moves about 1/n of all row
        keys, each to the new shard.  Placement is part of htcluster's contract:
        it does not change between releases.

        :param row_key: a row key (``str``, encoded as UTF-8, or ``bytes``).
        :returns: one of the shard keys.
        :raises TypeError: ``row_key`` is neither.
        """
        return self.placement.locate(row_key)

    def namespace(self, key: Hashable, name: Optional[str] = None) -> NamespaceCalls:
        """Return the broker methods of namespace ``name`` on the hosts of shard ``key``, typed.

        :param key: a shard key (each call is a :meth:`unicast` to one of its hosts).
        :param name: a namespace name (``None``: the default namespace).
        :returns: a :class:`~htcluster._routing.typed.NamespaceCalls`.
        :raises KeyError: unknown key.
        :raises ConfigError: no name and no default namespace.
        """
        self.hosts(key)
        return NamespaceCalls(functools.partial(self.unicast, key), self.resources.scan_namespace(name))

    def connection(self, key: Hashable) -> Connection:
        """Check out one connection to a host serving ``key`` (see :meth:`Resources.connection`).

        :param key: a shard key.
        :returns: a context manager giving a :class:`~htcluster._io.resource.Resource`.
        :raises KeyError: unknown key.
        :raises NoHostAvailable: no host of the key could be connected to.
        """
        return self.resources.connection(hosts=self.hosts(key))

    def scan(self, key: Hashable, table: str, scan_spec: Optional[ScanSpec] = None, *,
             namespace: Optional[str] = None, timeout: Optional[float] = None) -> Iterator[Cell]:
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
        name = self.resources.scan_namespace(namespace)
        with self.connection(key) as r:
            yield from scan_cells(r, r.mns[name], table, scan_spec, timeout=timeout)

    def mutator(self, table: str, *, namespace: Optional[str] = None,
                key: Optional[Callable[[str], Hashable]] = None, flush_interval: Optional[float] = None,
                max_cells: int = DEFAULT_MAX_CELLS, max_bytes: int = DEFAULT_MAX_BYTES, block: bool = True,
                timeout: Optional[float] = None) -> Mutator:
        """Return a buffered mutator of ``table`` that sends each cell to the shard of its row.

        Cells are buffered per shard; a flush sends every shard's batch at once
        (one round trip for all), each a stamped ``set_cells`` failing over
        among the hosts of its shard.  See :class:`~htcluster.Mutator`;
        ``stats()["shards"]`` has the counts per shard key.

        :param table: the table name.
        :param namespace: the namespace name (default: the routing object's).
        :param key: ``row key -> shard key`` (default :meth:`locate`), e.g.
            ``lambda row: shards.locate(row.split(" ")[0])`` to keep rows with one prefix together.
        :param flush_interval: seconds between flushes by a timer thread (``None``: none).
        :param max_cells: buffered cells (all shards) at which the writer flushes (int >= 1).
        :param max_bytes: buffered bytes at which the writer flushes (int >= 1).
        :param block: a writer finding the buffer full while a flush is in flight
            waits (``True``) or gets :class:`~htcluster.errors.MutatorFull`.
        :param timeout: seconds each flush may take, failovers included (``None``: ``call_timeout``).
        :returns: a :class:`~htcluster.Mutator`.
        :raises ConfigError: no namespace, or an invalid option.
        """
        return shards_mutator(self, table, namespace, key, flush_interval=flush_interval, max_cells=max_cells,
                              max_bytes=max_bytes, block=block, timeout=timeout)

    def scan_all(self, table: str, scan_spec: Optional[ScanSpec] = None, *, namespace: Optional[str] = None,
                 timeout: Optional[float] = None) -> Iterator[Cell]:
        """Yield the cells of ``table`` from every shard, merged in row-key order.

        One scanner per shard runs in parallel (a thread each, a few batches
        ahead); each resumes on another host of its shard after a failure,
        after the last complete row it delivered (as :meth:`Replicas.scan
        <htcluster.Replicas.scan>`).  Closing the generator (or leaving a loop
        early) stops the threads and closes every scanner.

        :param table: the table name.
        :param scan_spec: what to read (``None``: everything); limits apply per shard.
        :param namespace: the namespace name.
        :param timeout: seconds each round trip (opening, each batch) may take.
        :returns: a generator of :class:`~htcluster.types.Cell`, in row-key order.
        :raises NoHostAvailable: every host of some shard failed.
        :raises ClientException: e.g. the table does not exist.
        """
        return scan_all(self, table, scan_spec, self.resources.scan_namespace(namespace), timeout)

    # ------------------------------------------------------------ membership (htcluster._routing.members)

    @property
    def pairs(self) -> list[tuple[str, Hashable]]:
        """Every ``(host, key)`` pair now (what ``set_hosts`` takes), key by key, hosts sorted."""
        return self._layout.pairs()

    def add(self, host: HostLike, key: Hashable) -> None:
        """Let ``host`` serve ``key`` too; calls and covers use it at once.

        A host new here gets a pool; a key new here is a new shard, so
        :meth:`locate` places about ``1/n`` of the rows on it from now on.

        :param host: ``'host[:port]'``, a pair or a :class:`~htcluster.Host`.
        :param key: a shard key (str, bytes, int or tuples of them).
        :raises ConfigError: a malformed host, or a key without a stable encoding (nothing changes).
        """
        self.set_hosts([*self.pairs, (host, key)])

    def remove(self, host: HostLike, drain: bool = True, *, key: Optional[Hashable] = None) -> None:
        """Stop ``host`` serving ``key`` (``None``: every key); a host that serves no key any more is removed.

        :param host: one of the hosts.
        :param drain: as for ``Resources.remove``: ``True``, calls in flight on a removed
            host finish; ``False``, its connections are shut at once and they fail over.
        :param key: the one key it stops serving (``None``: all of them).
        :raises ConfigError: ``host`` does not serve ``key`` (or any key), a key would be
            left without a host (add its new host first, or drop the key with
            :meth:`set_hosts`), or ``drain`` is not a bool.
        """
        name = str(Host.parse(host))
        with self._membership_lock:
            pairs = self.pairs
            kept = [(h, k) for h, k in pairs if not (h == name and (key is None or k == key))]
            if len(kept) == len(pairs):
                what = "any key" if key is None else f"key {key!r}"
                raise ConfigError(f"cannot remove {name}: it does not serve {what}")
            orphans = set(self) - {k for _, k in kept}
            if orphans:
                raise ConfigError(f"removing {name} would leave shard key(s) {sorted(map(str, orphans))} without a "
                                  "host: add their new host first, or drop them with set_hosts([...])")
            self._relayout(kept, drain)

    def set_hosts(self, pairs: Union[Iterable[tuple[HostLike, Hashable]], Mapping[HostLike, Iterable[Hashable]]],
                  drain: bool = True) -> None:
        """Make ``pairs`` the ``(host, key)`` pairs: hosts and keys are added and removed to match, then re-covered.

        Hosts kept keep their pools and health; removed hosts drain (see :meth:`remove`);
        keys added or dropped change :meth:`locate` (rendezvous hashing: only the
        rows of the keys added or dropped move).

        :param pairs: as the constructor takes: ``(host, key)`` pairs or ``{host: [keys]}``.
        :param drain: how removed hosts go (see :meth:`remove`).
        :raises ConfigError: no pair, a malformed pair or host, a key without a stable
            encoding, or ``drain`` not a bool (nothing changes then).
        """
        with self._membership_lock:
            self._relayout(pairs, drain)

    def _relayout(self, pairs: Union[Iterable[tuple[HostLike, Hashable]], Mapping[HostLike, Iterable[Hashable]]],
                  drain: bool) -> None:
        """Swap in the layout of ``pairs`` (the lock held): hosts added first, removed last."""
        if not isinstance(drain, bool):
            raise ConfigError(f"drain must be True or False, got {drain!r}")
        keys: dict[Hashable, set[str]] = {}
        for host, key in _pairs(pairs):
            keys.setdefault(key, set()).add(str(Host.parse(host)))
        layout = Layout.of(keys)  # refuses bad keys before anything changes
        old, new = self._layout.hosts(), layout.hosts()
        union = sorted({*old, *new})
        if union != old:
            self.resources.set_hosts(union, drain)
        self._layout = layout
        if new != union:
            self.resources.set_hosts(new, drain)

    def close(self) -> None:
        """Close the shared :class:`Resources`."""
        self.resources.close()

    def __enter__(self) -> "Shards":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _pairs(pairs: Union[Iterable[tuple[HostLike, Hashable]], Mapping[HostLike, Iterable[Hashable]]]
           ) -> Iterator[tuple[HostLike, Hashable]]:
    """Yield the ``(host, key)`` pairs of :class:`Shards`' first argument, refusing malformed ones.

    :raises ConfigError: an item is not a pair, or a host's keys are one string.
    """
    if isinstance(pairs, Mapping):
        for host, keys in pairs.items():
            if isinstance(keys, (str, bytes)):
                raise ConfigError(f"give the keys of {host} as a list, e.g. {{{host!r}: [{keys!r}]}}, not one string")
            for key in keys:
                yield host, key
        return
    if isinstance(pairs, (str, bytes)):
        raise ConfigError(f"Shards takes (host, key) pairs or {{host: [keys]}}, got the string {pairs!r}")
    for item in pairs:
        try:
            host, key = item if not isinstance(item, (str, bytes)) else ()
        except (TypeError, ValueError):
            raise ConfigError(f"Shards items must be (host, key) pairs, got {item!r}") from None
        yield host, key


def _hosts_of(keymap: Mapping[Hashable, frozenset[str]], key: Hashable) -> frozenset[str]:
    """The hosts of ``key`` in ``keymap``; a ``KeyError`` naming the keys when it has none."""
    try:
        return keymap[key]
    except KeyError:
        raise KeyError(f"unknown shard key {key!r}; the keys are {sorted(map(str, keymap))}") from None


def _soonest(resources: Resources, hosts: set[str]) -> set[str]:
    """The one host of ``hosts`` (all dead) due back first, as a set."""
    host = resources.health.soonest(sorted(hosts))
    return {host} if host is not None else set()
