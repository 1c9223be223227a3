"""Resources: many ThriftBrokers, one :class:`~htcluster.pool.Pool` each.

:class:`Resources` is a ``dict`` ``'host:port' -> Pool`` that decides which
host a call goes to, fails over to another one when a connection fails, and
broadcasts a call to many hosts in parallel.  Host health (dead hosts, backoff,
lagging hosts) is :class:`~htcluster.policy.HostHealth`'s business; the number
of other hosts one call may try is a :class:`~htcluster.policy.Retry`, the
extra traffic all calls together may add a :class:`~htcluster.budget.RetryBudget`,
and the retry loop of one call is a :class:`~htcluster.failover.Failover`
(:func:`~htcluster.hedge.hedged_call` when the call is hedged).

Choosing a host: :meth:`Resources.priority` is the number of idle connections
in its pool (lupyne's bias by cached connections), ``None`` while it is dead,
and :meth:`Resources.choice` takes one of the highest at random.  Routed calls
(:meth:`Resources.claim`) rank a little differently, so that one thread's reads
spread over every replica while warm connections still win under load: a
host with an idle connection, or with no connection in use at all, ranks 1
(the idle count capped at 1, so every such host ties and ties are broken at
random); a host whose connections are all busy ranks 0; a host that lost its
last hedge ranks after all others while it lags.

A dead host whose backoff ended is not given a user call: the caller that
claims it first probes it (:mod:`htcluster.probe`, ``status()`` within
``probe_timeout``), and uses it only if the probe answers.  When every host is
dead, the one whose backoff ends first is probed anyway (each such probe, like
each failover and each hedge, draws on the retry budget).
"""
from __future__ import annotations

import inspect
import logging
import random
import threading
import time
from typing import Any, Iterable, Iterator, Literal, Mapping, Optional, Sequence, Union, overload

from .budget import RetryBudget
from .errors import BroadcastError, BrokerUnavailable, ConfigError
from .failover import Failover
from .hosts import Host, HostLike, parse_hosts
from .broadcast import call_many
from .events import FailedOver, Listeners
from .policy import ANSWERS, Backoff, Clock, HostHealth, Retry, is_write
from .stats import HealthStats, HostStats, PoolCounters
from .pool import Pool
from .probe import DEFAULT_PROBE_TIMEOUT, probe_many
from .routing import DEFAULT_HEDGE_RATIO, Routing, coerce_budget
from .resource import Resource, scan_cells
from .types import Cell, ScanSpec
from .units import optional_seconds, seconds

__all__ = ["DEFAULT_HEDGE_RATIO", "DEFAULT_MAX_WORKERS", "ERROR_MODES", "Resources", "check_error_mode",
           "coerce_budget", "settle"]

log = logging.getLogger(__name__)

#: Kept for compatibility: broadcasts no longer use threads (``max_workers`` is accepted and ignored).
DEFAULT_MAX_WORKERS = 16
#: What ``broadcast(errors=...)`` accepts.
ERROR_MODES = ("raise", "return")
#: ``{host: answer}`` of the hosts that answered a broadcast.
Results = dict[str, Any]
#: ``{host: exception}`` of those that did not (with ``errors='return'``).
Errors = dict[str, BaseException]

#: Keyword arguments passed through to every Pool.
POOL_OPTIONS = frozenset(inspect.signature(Pool).parameters) - {"host"}  # "listeners" is Resources' own


class Resources(Routing, dict[str, Pool]):
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
    :param probe_timeout: seconds (float > 0) the ``status()`` probe of a host
        whose backoff ended may take before user calls go to it again
        (default :data:`~htcluster.probe.DEFAULT_PROBE_TIMEOUT`).
    :param hedge: default ``hedge=`` of routed calls, in seconds (float > 0) or
        ``None`` (no hedging): a call that is safe to repeat (a read, or an
        explicit ``idempotent=True``) with no answer after ``hedge`` seconds is
        also sent to the next healthy host; the first answer wins
        (:mod:`htcluster.hedge`).
    :param hedge_ratio: hedges allowed per routed call (float in [0, 1], default
        :data:`DEFAULT_HEDGE_RATIO`), plus :data:`~htcluster.routing.HEDGE_FLOOR` per second; every
        hedge also draws on ``retry_budget``.
    :param retry_budget: the budget that failovers, hedges and forced probes draw
        on, shared by every call of this object: a
        :class:`~htcluster.budget.RetryBudget`, a mapping of its ``ratio``,
        ``floor``, ``ttl``, or ``None`` (Finagle's defaults: 20 % of recent calls
        plus 10 per second over 10 s).  When it is spent, calls that would fail
        over raise ``NoHostAvailable`` at once (:meth:`budget_stats`).
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
                 call_timeout: Optional[float] = None, probe_timeout: float = DEFAULT_PROBE_TIMEOUT,
                 hedge: Optional[float] = None, hedge_ratio: float = DEFAULT_HEDGE_RATIO,
                 retry_budget: Union[RetryBudget, Mapping[str, float], None] = None,
                 **pool_options: Any) -> None:
        self.call_timeout = optional_seconds("call_timeout", call_timeout)
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ConfigError(f"max_workers must be an int >= 1, got {max_workers!r}")
        unknown = set(pool_options) - POOL_OPTIONS
        if unknown:
            raise ConfigError(f"unknown option(s) {sorted(unknown)}; Resources takes retry, backoff, clock, rng, "
                              "max_workers, call_timeout, probe_timeout, hedge, hedge_ratio, retry_budget "
                              f"and the Pool options {sorted(POOL_OPTIONS)}")
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
        self._init_routing(probe_timeout, hedge, hedge_ratio, retry_budget)
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

    def stats(self) -> dict[str, HostStats]:
        """Return, per host, its pool's counters, its health, its calls and their recent latency.

        The retry budget and the hedges are not per host: see :meth:`budget_stats`.

        :returns: ``{host: {"pool": {...}, "health": {...}, "calls": int, "errors": int,
            "latency": {"count", "p50", "p99", "max"}}}`` in host order.  ``pool``
            is :meth:`Pool.stats <htcluster.pool.Pool.stats>` without the call
            figures; ``health`` is ``{"live": bool, "failures": int,
            "retry_in": seconds (float, 0.0 when live), "error": str or None,
            "lagging": bool (lost its last hedge, ranked last for now)}``;
            latencies are seconds over the last calls (``None`` before any).
        """
        out: dict[str, HostStats] = {}
        now = self.health.clock()
        for host, pool in self.items():
            figures = pool.stats()
            state = self.health.state(host)
            health: HealthStats = {"live": state.live, "failures": state.failures,
                                   "retry_in": 0.0 if state.live else max(0.0, state.dead_until - now),
                                   "error": None if state.error is None else f"{type(state.error).__name__}: "
                                                                              f"{state.error}"}
            health["lagging"] = self.health.lagging(host)
            counters: PoolCounters = {
                "opened": figures["opened"], "closed": figures["closed"], "replaced": figures["replaced"],
                "idle": figures["idle"], "in_use": figures["in_use"], "waiting": figures["waiting"],
                "timeouts": figures["timeouts"]}
            out[host] = {"pool": counters, "health": health, "calls": figures["calls"], "errors": figures["errors"],
                         "latency": figures["latency"]}
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
                idempotent: Optional[bool] = None, timeout: Optional[float] = None,
                hedge: Optional[float] = None) -> Any:
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
        :param hedge: seconds without an answer after which an idempotent call is
            also sent to another host (default :attr:`hedge`; 0: not hedged).
        :returns: the broker's answer.
        :raises NoHostAvailable: no host could be reached (each host's cause inside),
            or the retry budget allows no failover.
        :raises DeadlineExceeded: ``timeout`` ran out (the attempts made inside).
        :raises WriteOutcomeUnknown: a non-idempotent call failed after being sent.
        :raises InvalidRequest: an argument cannot be encoded (no host is blamed).
        :raises ClientException: the broker refused the call.
        """
        if idempotent is None:
            idempotent = not is_write(method, args)
        return self.routed_call(method, args, namespace, self._keys(hosts) if hosts else self._hosts, False,
                                idempotent, timeout, hedge)

    @overload
    def broadcast(self, method: str, *args: Any, namespace: Optional[str] = None, hosts: Iterable[HostLike] = (),
                  errors: Literal["raise"] = "raise", timeout: Optional[float] = None) -> Results: ...

    @overload
    def broadcast(self, method: str, *args: Any, namespace: Optional[str] = None, hosts: Iterable[HostLike] = (),
                  errors: Literal["return"], timeout: Optional[float] = None) -> tuple[Results, Errors]: ...

    @overload
    def broadcast(self, method: str, *args: Any, namespace: Optional[str] = None, hosts: Iterable[HostLike] = (),
                  errors: str = "raise", timeout: Optional[float] = None) -> Union[Results, tuple[Results, Errors]]: ...

    def broadcast(self, method: str, *args: Any, namespace: Optional[str] = None, hosts: Iterable[HostLike] = (),
                  errors: str = "raise", timeout: Optional[float] = None) -> Union[Results, tuple[Results, Errors]]:
        """Call ``method`` on every host at once: every request is sent, then the replies are read as they come.

        One thread does it all (one ``poll`` loop), so a broadcast costs about one
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
        trials = [h for h in claimed if self.health.is_trial(h)]
        if trials:  # hosts whose backoff ended: a probe each, all at once, before the call goes to them
            verdicts = probe_many(self.pools, trials, self.probe_timeout)
            claimed = [h for h in claimed if h not in verdicts or self._judge(h, verdicts[h])]
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


def settle(results: Results, failures: Errors, errors: str, message: str) -> Union[Results, tuple[Results, Errors]]:
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
