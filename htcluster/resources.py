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

import inspect
import logging
import random
import threading
import time
from typing import Any, Container, Iterable, Iterator, Mapping, Optional, Sequence, Union

from .errors import BroadcastError, BrokerUnavailable, ConfigError
from .failover import Failover
from .hosts import Host, HostLike, parse_hosts
from .broadcast import call_many
from .events import FailedOver, Listeners
from .policy import ANSWERS, Backoff, Clock, HostHealth, Retry, is_write
from .pool import Pool
from .resource import Resource, scan_cells
from .types import Cell, ScanSpec
from .units import optional_seconds, seconds

__all__ = ["DEFAULT_MAX_WORKERS", "ERROR_MODES", "Resources", "check_error_mode", "settle"]

log = logging.getLogger(__name__)

#: Kept for compatibility: broadcasts no longer use threads (``max_workers`` is accepted and ignored).
DEFAULT_MAX_WORKERS = 16
#: What ``broadcast(errors=...)`` accepts.
ERROR_MODES = ("raise", "return")
#: Keyword arguments passed through to every Pool.
POOL_OPTIONS = frozenset(inspect.signature(Pool).parameters) - {"host"}  # "listeners" is Resources' own


class Resources(dict):
    """Pools to many brokers: pick one, fail over, or broadcast to all.

    :param hosts: ``'host[:port],...'`` or an iterable of hosts (see :mod:`htcluster.hosts`).
    :param retry: other hosts one call may try after a connection failure
        (a :class:`~htcluster.policy.Retry`, an int, a bool or ``None`` = every host once).
    :param backoff: how long a failed host is left alone (a :class:`~htcluster.policy.Backoff`,
        its base in seconds, a mapping of its fields, or ``None`` = 1 s doubling to 30 s).
    :param clock: callable returning seconds, for the backoff (``time.monotonic``).
    :param rng: ``random.Random`` used for choices and jitter.
    :param max_workers: accepted for compatibility and ignored: a broadcast
        multiplexes every host in the calling thread (int >= 1).
    :param call_timeout: default ``timeout=`` of each routed call, in seconds:
        one budget for the pool wait, every attempt and every failover.
        ``None`` (the default): no overall bound; each attempt is bounded by
        the pool's ``timeout`` (waiting) and ``socket_timeout`` (the exchange).
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
                 call_timeout: Optional[float] = None, **pool_options: Any) -> None:
        self.call_timeout = optional_seconds("call_timeout", call_timeout)
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ConfigError(f"max_workers must be an int >= 1, got {max_workers!r}")
        unknown = set(pool_options) - POOL_OPTIONS
        if unknown:
            raise ConfigError(f"unknown option(s) {sorted(unknown)}; Resources takes retry, backoff, clock, rng, "
                              f"max_workers, call_timeout and the Pool options {sorted(POOL_OPTIONS)}")
        parsed = parse_hosts(hosts)
        super().__init__()
        self.retry = Retry.from_int(retry)
        self.rng = rng or random.Random()
        #: The events of this object and its pools (:mod:`htcluster.events`); its parent is the process-wide registry.
        given = pool_options.pop("listeners", None)
        self.listeners: Listeners = Listeners() if given is None else given
        self.health = HostHealth([str(h) for h in parsed], backoff, clock, self.rng, listeners=self.listeners)
        self.max_workers = max_workers
        self._lock = threading.Lock()
        self._failovers = 0
        for host in parsed:  # a Pool opens nothing until its first checkout
            self[str(host)] = Pool(host, listeners=self.listeners, **pool_options)
        self._hosts = list(self)

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
        return self[host]._idle if self.health.usable(host) else None

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

    def claim(self, hosts: Sequence[str], tried: Container[str], ordered: bool) -> Optional[str]:
        """Claim a host not yet ``tried`` for one call: the first usable one if ``ordered``,
        else by :meth:`choice`; when none is usable, the dead one that comes back soonest.

        The caller reports how the call ended to :attr:`health` (``succeeded``,
        ``failed`` or ``release``).  This and :meth:`failed_over` are what a
        :class:`~htcluster.failover.Failover` needs of its router.

        :param hosts: candidate ``'host:port'`` keys.
        :param tried: hosts this call already tried.
        :param ordered: take the first usable host in ``hosts`` order.
        :returns: the claimed host, or ``None`` when every host was tried.
        """
        if len(hosts) == 1 and not tried:  # one candidate: nothing to rank
            host = hosts[0]
            if self.health.claim(host):
                return host
            return host if self.health.claim(host, force=True) else None
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

    def failed_over(self, what: str, host: str, exc: BaseException) -> None:
        """Count, log and report (:class:`~htcluster.events.FailedOver`) one failover of ``what`` away from ``host``."""
        with self._lock:
            self._failovers += 1
        log.info("%s failed on %s, trying another host: %s", what, host, exc)
        if self.listeners:
            self.listeners.emit(FailedOver(host, what, exc))

    def stats(self) -> dict[str, dict[str, Any]]:
        """Return, per host, its pool's counters, its health, its calls and their recent latency.

        :returns: ``{host: {"pool": {...}, "health": {...}, "calls": int, "errors": int,
            "latency": {"count", "p50", "p99", "max"}}}`` in host order.  ``pool``
            is :meth:`Pool.stats <htcluster.pool.Pool.stats>` without the call
            figures; ``health`` is ``{"live": bool, "failures": int,
            "retry_in": seconds (float, 0.0 when live), "error": str or None}``;
            latencies are seconds over the last calls (``None`` before any).
        """
        out: dict[str, dict[str, Any]] = {}
        now = self.health.clock()
        for host, pool in self.items():
            counters = pool.stats()
            calls, errors, latency = counters.pop("calls"), counters.pop("errors"), counters.pop("latency")
            state = self.health.state(host)
            out[host] = {"pool": counters,
                         "health": {"live": state.live, "failures": state.failures,
                                    "retry_in": 0.0 if state.live else max(0.0, state.dead_until - now),
                                    "error": None if state.error is None else f"{type(state.error).__name__}: "
                                                                               f"{state.error}"},
                         "calls": calls, "errors": errors, "latency": latency}
        return out

    # ------------------------------------------------------------ calling

    def deadline(self, timeout: Optional[float]) -> Optional[float]:
        """Return the ``time.monotonic()`` deadline of a call given ``timeout=`` (or :attr:`call_timeout`).

        :param timeout: seconds for the whole call, or ``None`` for the default.
        :returns: the deadline, or ``None`` when neither bounds the call.
        :raises ConfigError: ``timeout`` is not a finite positive number of seconds.
        """
        if timeout is None:
            timeout = self.call_timeout
            if timeout is None:
                return None
            return time.monotonic() + timeout
        return time.monotonic() + seconds("timeout", timeout)

    def unicast(self, method: str, *args: Any, namespace: Optional[str] = None, hosts: Iterable[HostLike] = (),
                idempotent: Optional[bool] = None, timeout: Optional[float] = None) -> Any:
        """Call ``method`` on one host, failing over to another when the connection fails.

        :param method: a broker method (protocol.md section 2).
        :param namespace: a namespace name whose per-connection id is put before ``args``.
        :param hosts: the subset of hosts to use (default: all).
        :param idempotent: whether the call may be repeated on another host after
            it was sent; default: true for reads (:func:`htcluster.policy.is_write`).
            A call that was never sent is always retried.
        :param timeout: seconds for the whole call: pool waits, every attempt
            and failover (default :attr:`call_timeout`; ``None`` there: each
            attempt is bounded by the pool's ``timeout`` and ``socket_timeout``).
        :returns: the broker's answer.
        :raises NoHostAvailable: no host could be reached (each host's cause inside).
        :raises DeadlineExceeded: ``timeout`` ran out (the attempts made inside).
        :raises WriteOutcomeUnknown: a non-idempotent call failed after being sent.
        :raises InvalidRequest: an argument cannot be encoded (no host is blamed).
        :raises ClientException: the broker refused the call.
        """
        if idempotent is None:
            idempotent = not is_write(method, args)
        deadline = self.deadline(timeout)
        return Failover(self, method, self._keys(hosts) if hosts else self._hosts, deadline=deadline).run(
            lambda host: self[host].call(method, *args, namespace=namespace, deadline=deadline),
            idempotent=idempotent)

    def broadcast(self, method: str, *args: Any, namespace: Optional[str] = None, hosts: Iterable[HostLike] = (),
                  errors: str = "raise", timeout: Optional[float] = None) -> Any:
        """Call ``method`` on every host at once: every request is sent, then the replies are read as they come.

        One thread does it all (``selectors``), so a broadcast costs about one
        round trip however many hosts there are.  A host in its backoff is not
        called: its error is the reason it is down.  When every host is down,
        every one is tried anyway.

        :param method: a broker method (protocol.md section 2).
        :param namespace: a namespace name whose per-connection id is put before ``args``.
        :param hosts: the subset of hosts (default: all).
        :param errors: ``'raise'``: return ``{host: result}``, or raise
            :class:`~htcluster.errors.BroadcastError` (with ``.results`` and
            ``.errors``) if any host failed.  ``'return'``: return the pair
            ``({host: result}, {host: exception})``; both dicts follow host order.
        :param timeout: seconds for the whole broadcast (default :attr:`call_timeout`);
            a host that has not answered by then fails with ``DeadlineExceeded``.
        :returns: ``{host: result}``, or the pair with ``errors='return'``.
        :raises ConfigError: ``errors`` is not one of :data:`ERROR_MODES`.
        :raises BroadcastError: some host failed and ``errors='raise'``.
        """
        check_error_mode(errors)
        targets = self._keys(hosts)
        results, failures = self._broadcast(method, args, namespace, targets, deadline=self.deadline(timeout))
        return settle(results, failures, errors, f"{method} failed on {len(failures)} of {len(targets)} host(s)")

    def _broadcast(self, method: str, args: Sequence[Any], namespace: Optional[str], targets: Sequence[str],
                   force: bool = False,
                   deadline: Optional[float] = None) -> tuple[dict[str, Any], dict[str, BaseException]]:
        """Call ``method`` on ``targets`` at once; return ``({host: result}, {host: exception})`` in host order.

        :param force: call the hosts in their backoff too (they were chosen
            because nothing else serves what they serve).
        """
        claimed = [h for h in targets if self.health.claim(h, force)]
        if not claimed:
            claimed = [h for h in targets if self.health.claim(h, force=True)]
        failures: dict[str, BaseException] = {
            h: BrokerUnavailable(self.health.describe(h), host=h, sent=False) for h in targets if h not in claimed}
        try:
            outcomes, failed = call_many(self, claimed, method, args, namespace, deadline)
        except BaseException:
            for host in claimed:
                self.health.release(host)
            raise
        for host in claimed:
            exc = failed.get(host)
            if exc is None or isinstance(exc, ANSWERS):
                self.health.succeeded(host)
            elif isinstance(exc, BrokerUnavailable):
                delay = self.health.failed(host, exc)
                log.warning("%s marked down for %.2f s: %s", host, delay, exc)
            else:
                self.health.release(host)
        failures.update(failed)
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
             host: Optional[HostLike] = None, timeout: Optional[float] = None) -> Iterator[Cell]:
        """Yield the cells of ``table`` from one host (scanner opened and always closed).

        :param table: the table name.
        :param scan_spec: what to read (``None``: everything).
        :param namespace: the namespace name.
        :param host: the host to read from (default: chosen by priority).
        :param timeout: seconds each round trip (opening, each batch) may take.
        :returns: a generator of :class:`~htcluster.types.Cell`.
        :raises NoHostAvailable: no host could be connected to.
        :raises DeadlineExceeded: a round trip took longer than ``timeout``.
        """
        with self.connection(host) as resource:
            yield from scan_cells(resource, resource.mns[namespace], table, scan_spec, timeout=timeout)

    def close(self) -> None:
        """Close every pool's idle connections; idempotent (the pools stay usable)."""
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
