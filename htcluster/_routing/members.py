"""Live membership: the hosts of a routing object as one immutable snapshot, swapped as a whole.

:class:`Members` is the snapshot: the hosts in order (for ``Replicas``, the
write order) and their pools.  The router reads it once where a call starts
(``Router.pools``); a change builds a new snapshot and swaps the router's
reference, so a call in flight works on one consistent list while other
threads go on calling.  A host removed by a change stays reachable *by name*
in the later snapshots while it drains (:attr:`Members.retired`): a call that
had chosen it before the change finishes there, but no new call chooses it
(``in``, iteration and :meth:`Members.restrict` see the current hosts only).

:class:`Membership` is the ``add`` / ``remove`` / ``set_hosts`` of
``Resources`` and ``Replicas`` (``Shards`` has its own, over ``(host, key)``
pairs, built on these).  A change, under one lock per routing object:

1. builds the new snapshot (a host kept keeps its pool; a host added gets a
   new pool, or its draining one back);
2. tells :class:`~htcluster._policy.health.HostHealth` the hosts it now
   follows (``HostHealth.track``: new hosts start live, removed ones are
   forgotten and what their late calls report is ignored);
3. swaps the snapshot;
4. drains each removed host's pool (``drain=True``: its idle connections
   close now, calls in flight finish and their connections close when they
   come back) or aborts it (``drain=False``: every connection is shut at
   once, and calls in flight fail over as after a connection failure);
5. emits :class:`~htcluster.events.MembershipChanged`.

Host names are resolved again by every new connection (``Connection.open``
and ``begin_connect`` call ``getaddrinfo`` each time, nothing is cached), so
a DNS change reaches new connections without a change here; ``set_hosts``
with the same names and ``drain=True`` closes the idle connections of no
host, use ``close()`` to make every pool reconnect.
"""
from __future__ import annotations

import threading
import time
from typing import (TYPE_CHECKING, Any, Generic, Hashable, Iterable, Iterator, Mapping, NamedTuple, Optional,
                    Sequence, TypeVar, Union)

from ..errors import ConfigError
from ..events import MembershipChanged
from ..hosts import Host, HostLike, parse_hosts
from .._policy.placement import Placement

if TYPE_CHECKING:
    from .router import Router

__all__ = ["RETIRED_GRACE", "Layout", "Members", "Membership"]

#: Seconds a removed host's pool stays reachable by name after its last call came back.
RETIRED_GRACE = 60.0

P = TypeVar("P")


class Members(Mapping[str, P], Generic[P]):
    """One immutable snapshot of the membership: ``'host:port' -> pool``, in host order.

    :param pools: ``{'host:port': pool}`` in host order (copied).
    :param retired: ``{'host:port': (pool, retired at)}`` of removed hosts that may
        still have calls in flight (``time.monotonic()`` seconds).

    A read-only mapping of the current hosts; ``members[host]`` also finds a
    retired host's pool (a call that chose it before it was removed).
    """

    __slots__ = ("hosts", "pools", "retired")

    def __init__(self, pools: Mapping[str, P], retired: Optional[Mapping[str, tuple[P, float]]] = None) -> None:
        #: Every current ``'host:port'``, in order.
        self.hosts: tuple[str, ...] = tuple(pools)
        #: ``{'host:port': pool}`` of the current hosts.
        self.pools: Mapping[str, P] = dict(pools)
        #: ``{'host:port': (pool, time.monotonic() when removed)}`` of the hosts draining.
        self.retired: Mapping[str, tuple[P, float]] = dict(retired or {})

    def __getitem__(self, host: str) -> P:
        pool = self.pools.get(host)
        if pool is None:
            return self.retired[host][0]
        return pool

    def __iter__(self) -> Iterator[str]:
        return iter(self.hosts)

    def __len__(self) -> int:
        return len(self.hosts)

    def __contains__(self, host: object) -> bool:
        return host in self.pools

    def __repr__(self) -> str:
        draining = f", {len(self.retired)} draining" if self.retired else ""
        return f"<Members {', '.join(self.hosts)}{draining}>"

    def restrict(self, hosts: Sequence[str]) -> Sequence[str]:
        """Return the hosts of ``hosts`` that are members now (the candidates of a call).

        :param hosts: a plan's hosts, perhaps read from an older snapshot.
        :returns: ``hosts`` itself when all are members (or none is: a call whose
            hosts were all removed since it was planned goes to them while they
            drain), else the members among them, in order.
        """
        if hosts is self.hosts:
            return hosts
        pools = self.pools
        kept = [h for h in hosts if h in pools]
        if len(kept) == len(hosts) or not kept:
            return hosts
        return tuple(kept)

    def changed(self, hosts: Sequence[Host], make_pool: Any, now: float) -> tuple["Members[P]", list[P]]:
        """Return the snapshot with exactly ``hosts``, and the pools of the hosts it removes.

        A host kept keeps its pool; a host added takes back its pool if it is
        still draining, else gets ``make_pool(host)``.  Retired pools are dropped
        once none of their connections is in use and :data:`RETIRED_GRACE` passed.

        :param hosts: the new hosts, in order, no duplicates.
        :param make_pool: ``Host -> pool``.
        :param now: ``time.monotonic()``.
        """
        pools: dict[str, P] = {}
        for host in hosts:
            name = str(host)
            old = self.pools.get(name)
            if old is None and name in self.retired:
                old = self.retired[name][0]
            pools[name] = old if old is not None else make_pool(host)
        removed = [self.pools[name] for name in self.hosts if name not in pools]
        retired = {name: (pool, since) for name, (pool, since) in self.retired.items()
                   if name not in pools and (getattr(pool, "in_use", False) or now - since < RETIRED_GRACE)}
        retired.update({name: (self.pools[name], now) for name in self.hosts if name not in pools})
        return Members(pools, retired), removed


def _drain_flag(drain: object) -> bool:
    if not isinstance(drain, bool):
        raise ConfigError(f"drain must be True (calls in flight finish) or False (connections shut at once), "
                          f"got {drain!r}")
    return drain


class Membership:
    """``add``, ``remove`` and ``set_hosts`` of ``Resources`` and ``Replicas`` (a base class of ``Routed``).

    The class using it has ``router`` (whose ``pools`` is a :class:`Members`),
    and :meth:`new_pool`.
    """

    router: "Router"

    def new_pool(self, host: Host) -> Any:
        """Return a new pool to ``host`` with this object's pool options and listeners."""
        raise NotImplementedError

    @property
    def members(self) -> Members[Any]:
        """The current membership snapshot (hosts in order, pools; see :class:`Members`)."""
        return self.router.pools

    def add(self, host: HostLike) -> str:
        """Add ``host`` after the others; calls may go to it at once (it starts live).

        :param host: ``'host[:port]'``, a pair or a :class:`~htcluster.Host`.
        :returns: its ``'host:port'``; a host already here is left as it is.
        :raises ConfigError: ``host`` is malformed.
        """
        name = str(Host.parse(host))
        with self.membership_lock:
            current = self.members.hosts
            if name not in current:
                self._change([Host.parse(h) for h in (*current, name)], True)
        return name

    def remove(self, host: HostLike, drain: bool = True) -> None:
        """Take ``host`` out: no new call goes to it.

        :param host: one of the hosts, in any spelling :class:`~htcluster.Host` parses.
        :param drain: ``True``: calls in flight on it finish, its idle connections
            close now and the others as they come back; ``False``: every
            connection to it is shut at once, and the calls in flight fail over
            as after a connection failure (``WriteOutcomeUnknown`` for a write that
            cannot be repeated safely).
        :raises ConfigError: ``host`` is not one of the hosts, it is the last one, or ``drain`` is not a bool.
        """
        _drain_flag(drain)
        name = str(Host.parse(host))
        with self.membership_lock:
            current = self.members.hosts
            if name not in current:
                raise ConfigError(f"cannot remove {name}: it is not one of the hosts ({', '.join(current)})")
            if len(current) == 1:
                raise ConfigError(f"cannot remove {name}, the last host: add its replacement first, "
                                  "or use set_hosts([...]) to replace it")
            self._change([Host.parse(h) for h in current if h != name], drain)

    def set_hosts(self, hosts: Union[str, Iterable[HostLike]], drain: bool = True) -> None:
        """Make ``hosts`` the hosts, in that order: add the new ones, remove the others (see :meth:`remove`).

        Hosts kept keep their pools, health and connections.  For ``Replicas``
        the order given is the new write order.

        :param hosts: ``'host[:port],...'`` or an iterable of hosts (as the constructor takes).
        :param drain: how removed hosts go (see :meth:`remove`).
        :raises ConfigError: no hosts, a malformed host, or ``drain`` is not a bool (nothing changes then).
        """
        _drain_flag(drain)
        parsed = parse_hosts(hosts)
        with self.membership_lock:
            if [str(h) for h in parsed] != list(self.members.hosts):
                self._change(parsed, drain)

    @property
    def membership_lock(self) -> threading.Lock:
        """The lock that orders this object's membership changes (created on first use)."""
        lock: Optional[threading.Lock] = self.__dict__.get("_membership_lock")
        if lock is None:
            lock = self.__dict__.setdefault("_membership_lock", threading.Lock())
        return lock

    def _change(self, hosts: list[Host], drain: bool) -> None:
        """Swap in the snapshot of ``hosts`` (the lock held), then drain or abort the removed pools."""
        router = self.router
        old: Members[Any] = router.pools
        new, removed = old.changed(hosts, self.new_pool, time.monotonic())
        router.health.track(new.hosts)
        router.pools = new
        for pool in removed:
            if drain:
                pool.close()
            else:
                pool.abort()
        added = tuple(h for h in new.hosts if h not in old)
        gone = tuple(h for h in old.hosts if h not in new)
        listeners = router.listeners
        if listeners:
            listeners.emit(MembershipChanged(added, gone, new.hosts, drain))


class Layout(NamedTuple):
    """The shard keys of a ``Shards`` as one snapshot: ``key -> frozenset of 'host:port'`` and their placement.

    Build it with :meth:`of`; a change builds a new one and ``Shards`` swaps it whole.
    """

    keys: Mapping[Hashable, frozenset[str]]
    placement: Placement

    @classmethod
    def of(cls, keys: Mapping[Hashable, Iterable[str]]) -> "Layout":
        """Return the layout of ``{key: hosts}``.

        :raises ConfigError: no key, a key without hosts, or a shard key without a stable encoding.
        """
        frozen = {key: frozenset(hosts) for key, hosts in keys.items()}
        if not frozen:
            raise ConfigError("Shards needs at least one (host, key) pair")
        empty = [key for key, hosts in frozen.items() if not hosts]
        if empty:
            raise ConfigError(f"shard key(s) {empty!r} would have no host")
        return cls(frozen, Placement(frozen))

    def hosts(self) -> list[str]:
        """Every host serving some key, sorted."""
        return sorted({host for hosts in self.keys.values() for host in hosts})

    def pairs(self) -> list[tuple[str, Hashable]]:
        """Every ``(host, key)`` pair, key by key in key order, hosts sorted."""
        return [(host, key) for key, hosts in self.keys.items() for host in sorted(hosts)]
