"""Resources: many ThriftBrokers, one :class:`~htcluster.pool.Pool` each.

:class:`Resources` is a ``dict`` ``'host:port' -> Pool`` that decides which
host a call goes to, fails over to another one when a connection fails, and
broadcasts a call to many hosts in parallel.  Host health (dead hosts, backoff,
trial calls) is :class:`~htcluster.policy.HostHealth`'s business; the number of
other hosts one call may try is a :class:`~htcluster.policy.Retry`, and the
retry loop of one call is a :class:`~htcluster.failover.Failover`.

Choosing a host: its priority is the number of idle connections in its pool
(warm connections first), ``None`` while it is dead; ties are broken at random.
When every host is dead, the one whose backoff ends first is tried anyway.
"""
from __future__ import annotations

import concurrent.futures
import functools
import inspect
import logging
import random
import threading
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence, Union

from .errors import BroadcastError, BrokerUnavailable, ConfigError
from .failover import Failover
from .hosts import Host, HostLike, parse_hosts
from .policy import Backoff, Clock, HostHealth, Retry, is_write
from .pool import Pool
from .resource import Resource, scan_cells
from .types import Cell, ScanSpec

__all__ = ["DEFAULT_MAX_WORKERS", "ERROR_MODES", "Resources", "check_error_mode", "settle"]

log = logging.getLogger(__name__)

#: Threads a broadcast uses at most, shared by all broadcasts of one Resources.
DEFAULT_MAX_WORKERS = 16
#: What ``broadcast(errors=...)`` accepts.
ERROR_MODES = ("raise", "return")
#: Keyword arguments passed through to every Pool.
POOL_OPTIONS = frozenset(inspect.signature(Pool).parameters) - {"host"}


class Resources(dict):
    """Pools to many brokers: pick one, fail over, or broadcast to all.

    :param hosts: ``'host[:port],...'`` or an iterable of hosts (see :mod:`htcluster.hosts`).
    :param retry: other hosts one call may try after a connection failure
        (a :class:`~htcluster.policy.Retry`, an int, a bool or ``None`` = every host once).
    :param backoff: how long a failed host is left alone (a :class:`~htcluster.policy.Backoff`,
        its base in seconds, a mapping of its fields, or ``None`` = 1 s doubling to 30 s).
    :param clock: callable returning seconds, for the backoff (``time.monotonic``).
    :param rng: ``random.Random`` used for choices and jitter.
    :param max_workers: threads of the broadcast pool, >= 1.
    :param pool_options: passed to every :class:`~htcluster.pool.Pool` (``size``,
        ``timeout``, ``socket_timeout``, ``connect_timeout``, ...; seconds).
    :raises ConfigError: no hosts, a malformed host or option.

    Example::

        rs = Resources('ht1,ht2,ht3', socket_timeout=10.0)
        rs.unicast('hql_query', 'SELECT * FROM t', namespace='test')
        rs.broadcast('status')   # {'ht1:15867': Status(...), ...}
    """

    def __init__(self, hosts: Union[str, Iterable[HostLike]], *, retry: Union[Retry, int, bool, None] = None,
                 backoff: Union[Backoff, float, Mapping[str, float], None] = None, clock: Optional[Clock] = None,
                 rng: Optional[random.Random] = None, max_workers: int = DEFAULT_MAX_WORKERS,
                 **pool_options: Any) -> None:
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ConfigError(f"max_workers must be an int >= 1, got {max_workers!r}")
        unknown = set(pool_options) - POOL_OPTIONS
        if unknown:
            raise ConfigError(f"unknown option(s) {sorted(unknown)}; Resources takes retry, backoff, clock, rng, "
                              f"max_workers and the Pool options {sorted(POOL_OPTIONS)}")
        parsed = parse_hosts(hosts)
        super().__init__()
        self.retry = Retry.from_int(retry)
        self.rng = rng or random.Random()
        self.health = HostHealth([str(h) for h in parsed], backoff, clock, self.rng)
        self.max_workers = max_workers
        self._executor: Optional[concurrent.futures.ThreadPoolExecutor] = None
        self._lock = threading.Lock()
        self._failovers = 0
        for host in parsed:  # a Pool opens nothing until its first checkout
            self[str(host)] = Pool(host, **pool_options)

    # ------------------------------------------------------------ choosing

    def host_key(self, host: HostLike) -> str:
        """Return the ``'host:port'`` key of ``host`` (any spelling :class:`Host` parses).

        :param host: a ``Host``, ``'host[:port]'`` or ``(host, port)``.
        :raises ConfigError: ``host`` is malformed or not one of these hosts.
        """
        name = str(Host.parse(host))
        if name not in self:
            raise ConfigError(f"{name} is not one of the hosts here ({', '.join(self)})")
        return name

    def _keys(self, hosts: Iterable[HostLike]) -> list[str]:
        """Normalise a host subset; the empty subset means every host."""
        names = list(dict.fromkeys(self.host_key(h) for h in hosts))
        return names or list(self)

    def priority(self, host: str) -> Optional[int]:
        """Return the number of idle connections of ``host``'s pool, or ``None`` while it is dead."""
        return self[host].idle if self.health.usable(host) else None

    def choice(self, hosts: Iterable[str]) -> Optional[str]:
        """Return one of ``hosts``: at random among those of highest priority.

        :param hosts: ``'host:port'`` keys of this mapping.
        :returns: a host; when every host is dead, the one whose backoff ends
            first; ``None`` when ``hosts`` is empty.
        """
        hosts = list(hosts)
        best = self._best(hosts)
        return self.rng.choice(best) if best else self.health.soonest(hosts)

    def _best(self, hosts: Iterable[str]) -> list[str]:
        """Return the usable hosts of highest priority (empty when all are dead)."""
        ranked = [(p, h) for h in hosts if (p := self.priority(h)) is not None]
        top = max((p for p, _ in ranked), default=None)
        return [h for p, h in ranked if p == top]

    def _acquire(self, hosts: Sequence[str], tried: Iterable[str], ordered: bool) -> Optional[str]:
        """Claim a host not yet ``tried`` for one call: the first usable one if ``ordered``,
        else by :meth:`choice`; when none is usable, the dead one that comes back soonest.

        :returns: the claimed host, or ``None`` when every host was tried.
        """
        pending = [h for h in hosts if h not in tried]
        while pending:
            if ordered:
                host = next((h for h in pending if self.health.usable(h)), None)
            else:
                best = self._best(pending)
                host = self.rng.choice(best) if best else None
            if host is None:
                break
            if self.health.claim(host):
                return host
            pending.remove(host)  # another caller took its trial meanwhile
        host = self.health.soonest([h for h in hosts if h not in tried])
        if host is not None:
            self.health.claim(host, force=True)
        return host

    @property
    def failovers(self) -> int:
        """Return how many times, since creation, work was sent on to another host after a connection failure.

        Counts every call of :meth:`unicast`, :meth:`connection` and
        ``Replicas.call`` that moved on from a failed host, every resumed
        ``Replicas.scan`` and every host whose keys a ``Shards.multicast``
        sent elsewhere.  Unlike the failure counts of :attr:`health`, it never
        goes back down when a host recovers.

        :returns: a count, >= 0.
        """
        return self._failovers

    def _failed_over(self, what: str, host: str, exc: BaseException) -> None:
        """Count and log one failover of ``what`` away from ``host``."""
        with self._lock:
            self._failovers += 1
        log.info("%s failed on %s, trying another host: %s", what, host, exc)

    # ------------------------------------------------------------ calling

    def unicast(self, method: str, *args: Any, namespace: Optional[str] = None, hosts: Iterable[HostLike] = (),
                idempotent: Optional[bool] = None) -> Any:
        """Call ``method`` on one host, failing over to another when the connection fails.

        :param method: a broker method (protocol.md section 2).
        :param namespace: a namespace name whose per-connection id is put before ``args``.
        :param hosts: the subset of hosts to use (default: all).
        :param idempotent: whether the call may be repeated on another host after
            it was sent; default: true for reads (:func:`htcluster.policy.is_write`).
            A call that was never sent is always retried.
        :returns: the broker's answer.
        :raises NoHostAvailable: no host could be reached (each host's cause inside).
        :raises BrokerUnavailable: a non-idempotent call failed after being sent.
        :raises ClientException: the broker refused the call.
        """
        if idempotent is None:
            idempotent = not is_write(method, args)
        return Failover(self, method, self._keys(hosts)).run(
            lambda host: self[host].call(method, *args, namespace=namespace), idempotent=idempotent)

    def _executor_for(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    self.max_workers, thread_name_prefix="htcluster-broadcast")
            return self._executor

    def broadcast(self, method: str, *args: Any, namespace: Optional[str] = None, hosts: Iterable[HostLike] = (),
                  errors: str = "raise") -> Any:
        """Call ``method`` on every host in parallel (at most ``max_workers`` at once).

        A host in its backoff is not called: its error is the reason it is down.
        When every host is down, every one is tried anyway.

        :param method: a broker method (protocol.md section 2).
        :param namespace: a namespace name whose per-connection id is put before ``args``.
        :param hosts: the subset of hosts (default: all).
        :param errors: ``'raise'``: return ``{host: result}``, or raise
            :class:`~htcluster.errors.BroadcastError` (with ``.results`` and
            ``.errors``) if any host failed.  ``'return'``: return the pair
            ``({host: result}, {host: exception})``; both dicts follow host order.
        :returns: ``{host: result}``, or the pair with ``errors='return'``.
        :raises ConfigError: ``errors`` is not one of :data:`ERROR_MODES`.
        :raises BroadcastError: some host failed and ``errors='raise'``.
        """
        check_error_mode(errors)
        targets = self._keys(hosts)
        results, failures = self._broadcast(method, args, namespace, targets)
        return settle(results, failures, errors, f"{method} failed on {len(failures)} of {len(targets)} host(s)")

    def _broadcast(self, method: str, args: Sequence[Any], namespace: Optional[str], targets: Sequence[str],
                   force: bool = False) -> tuple[dict[str, Any], dict[str, BaseException]]:
        """Call ``method`` on ``targets`` in parallel; return ``({host: result}, {host: exception})`` in host order.

        :param force: call the hosts in their backoff too (they were chosen
            because nothing else serves what they serve).
        """
        claimed = [h for h in targets if self.health.claim(h, force)]
        if not claimed:
            claimed = [h for h in targets if self.health.claim(h, force=True)]
        failures: dict[str, BaseException] = {
            h: BrokerUnavailable(self.health.describe(h), host=h, sent=False) for h in targets if h not in claimed}

        def run(host: str) -> Any:
            with self.health.watch(host):
                return self[host].call(method, *args, namespace=namespace)

        if len(claimed) > 1:
            executor = self._executor_for()
            calls = {h: executor.submit(run, h).result for h in claimed}
        else:  # one host: no thread hop
            calls = {h: functools.partial(run, h) for h in claimed}
        outcomes: dict[str, Any] = {}
        for host, call in calls.items():
            try:
                outcomes[host] = call()
            except Exception as exc:
                failures[host] = exc
        return ({h: outcomes[h] for h in targets if h in outcomes},
                {h: failures[h] for h in targets if h in failures})

    def connection(self, host: Optional[HostLike] = None, *, hosts: Iterable[HostLike] = (),
                   ordered: bool = False) -> "_Connection":
        """Check out one connection, for calls that must share it (scanners, mutators).

        Failing to connect moves on to another host (nothing was sent yet);
        failures inside the block are the caller's, and mark the host's health.

        :param host: this host only (default: one chosen among ``hosts``).
        :param hosts: the candidates (default: all).
        :param ordered: take the first usable candidate instead of by priority.
        :returns: a context manager giving a :class:`~htcluster.resource.Resource`.
        :raises NoHostAvailable: no candidate could be connected to.
        """
        candidates = [self.host_key(host)] if host is not None else self._keys(hosts)
        return _Connection(self, candidates, ordered)

    def scan(self, table: str, scan_spec: Optional[ScanSpec] = None, *, namespace: str,
             host: Optional[HostLike] = None) -> Iterator[Cell]:
        """Yield the cells of ``table`` from one host (scanner opened and always closed).

        :param table: the table name.
        :param scan_spec: what to read (``None``: everything).
        :param namespace: the namespace name.
        :param host: the host to read from (default: chosen by priority).
        :returns: a generator of :class:`~htcluster.types.Cell`.
        :raises NoHostAvailable: no host could be connected to.
        """
        with self.connection(host) as resource:
            yield from scan_cells(resource, resource.mns[namespace], table, scan_spec)

    def close(self) -> None:
        """Close every pool and stop the broadcast threads; idempotent."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        for pool in self.values():
            pool.close()

    def __enter__(self) -> "Resources":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        down = len(self.health.down())
        return f"<{type(self).__name__} {len(self)} hosts, {down} down: {', '.join(self)}>"


class _Connection:
    """The context manager of :meth:`Resources.connection`: failover at checkout, health report at the end."""

    def __init__(self, resources: Resources, candidates: list[str], ordered: bool) -> None:
        self.resources, self.candidates, self.ordered = resources, candidates, ordered
        self.host: Optional[str] = None
        self.checkout: Any = None

    def __enter__(self) -> Resource:
        if self.checkout is not None:
            raise RuntimeError("this connection() is already in use; call connection() again")

        def enter(host: str) -> tuple[str, Any, Resource]:
            cm = self.resources[host].connection()
            return host, cm, cm.__enter__()

        failover = Failover(self.resources, "connection", self.candidates, self.ordered)
        self.host, self.checkout, resource = failover.run(enter, idempotent=True, hold=True)
        return resource

    def __exit__(self, exc_type: Optional[type], exc: Optional[BaseException], tb: object) -> None:
        checkout, self.checkout = self.checkout, None
        try:
            checkout.__exit__(exc_type, exc, tb)  # back to the pool (closed if it failed)
        finally:
            self.resources.health.watch(str(self.host)).__exit__(exc_type, exc, tb)


def check_error_mode(errors: str) -> None:
    """Refuse an ``errors=`` argument that is not one of :data:`ERROR_MODES`.

    :param errors: the caller's ``errors=`` argument.
    :raises ConfigError: it is not.
    """
    if errors not in ERROR_MODES:
        raise ConfigError(f"errors must be one of {ERROR_MODES}, got {errors!r}")


def settle(results: dict[str, Any], failures: dict[str, BaseException], errors: str, message: str) -> Any:
    """Return what a broadcast returns in mode ``errors``: the results, or the pair ``(results, failures)``.

    :param results: ``{host: result}`` of the hosts that answered.
    :param failures: ``{host: exception}`` of the others.
    :param errors: ``'raise'`` or ``'return'``.
    :param message: the :class:`~htcluster.errors.BroadcastError` text, used when some host failed.
    :raises BroadcastError: ``failures`` is not empty and ``errors`` is ``'raise'``.
    """
    if errors == "return":
        return results, failures
    if failures:
        raise BroadcastError(message, results, failures)
    return results
