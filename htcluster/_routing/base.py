"""What ``Resources``, ``Replicas`` and ``Shards`` share: one constructor shape, one typed interface.

:class:`Routed` holds a pool per host and the :class:`~htcluster._routing.router.Router`
that runs plans over them; the routing classes only build plans.  It is a
read-only mapping ``'host:port' -> Pool`` (lupyne's ``Resources`` was a dict of
hosts), so hosts cannot be added behind the router's back.

:class:`RoutingClient` is the typed interface of all three, for code that
takes any of them (the Flask extension, the CLI).
"""
from __future__ import annotations

import inspect
import random
from typing import Any, Iterable, Iterator, Literal, Mapping, Optional, Protocol, Union, overload, runtime_checkable

from .._call.attempt import Hold, Pool
from .._io.resource import Resource
from .._policy.balance import costs_of
from .._policy.budget import RetryBudget
from .._policy.health import Backoff, Clock, HostHealth, Retry
from .._policy.outliers import (DEFAULT_BASE_EJECTION_TIME, DEFAULT_CONSECUTIVE_GATEWAY_FAILURE, DEFAULT_MAX_EJECTION,
                                DEFAULT_MAX_EJECTION_TIME)
from .._policy.plans import Balancer, Plan, rank
from .._policy.steps import Steps, drive
from .._wire import NAMESPACED_METHODS
from ..errors import BroadcastError, ConfigError, InvalidRequest
from ..events import Listeners
from ..hosts import Host, HostLike, parse_hosts
from ..types import BudgetStats, Errors, HealthStats, HostStats, PoolCounters, Results
from .members import Membership
from .router import DEFAULT_HEDGE_RATIO, DEFAULT_PROBE_TIMEOUT, Router

__all__ = ["ERROR_MODES", "POOL_OPTIONS", "ROUTING_OPTIONS", "Routed", "RoutingClient", "check_error_mode", "settle"]

#: What ``broadcast(errors=...)`` accepts.
ERROR_MODES = ("raise", "return")
#: Keyword options passed through to every Pool.
POOL_OPTIONS = frozenset(inspect.signature(Pool).parameters) - {"host", "listeners"}
#: Keyword options of the routing classes themselves (besides the pool options).
ROUTING_OPTIONS = frozenset({"retry", "backoff", "clock", "rng", "call_timeout", "probe_timeout", "hedge",
                             "hedge_ratio", "retry_budget", "listeners", "balancer", "balance", "max_ejection",
                             "slow_start", "decay_time", "consecutive_gateway_failure", "base_ejection_time",
                             "max_ejection_time", "namespace"})


@runtime_checkable
class RoutingClient(Protocol):
    """The interface ``Resources``, ``Replicas`` and ``Shards`` share (for code that takes any of them)."""

    @property
    def pools(self) -> Mapping[str, Pool]:
        """``{'host:port': Pool}`` of every host."""

    @property
    def health(self) -> HostHealth:
        """The hosts' health (failures, backoffs, lag)."""

    @property
    def listeners(self) -> Listeners:
        """The event listeners of the object and its pools."""

    @property
    def failovers(self) -> int:
        """How many times work moved to another host after a failure."""

    def stats(self) -> dict[str, HostStats]:
        """Per host: pool counters, health, calls, latency."""

    def budget_stats(self) -> BudgetStats:
        """The retry budget, the hedge cap, and what was spent."""

    def close(self) -> None:
        """Close every pool's idle connections."""


class Routed(Membership, Mapping[str, Pool]):
    """Pools to many brokers and the router over them: the base of ``Resources`` and ``Replicas``.

    The hosts change while calls flow with :meth:`add`, :meth:`remove` and
    :meth:`set_hosts` (:mod:`htcluster._routing.members`): each change swaps one
    immutable snapshot (:attr:`members`), which the mapping view follows.

    :param hosts: ``'host[:port],...'`` or an iterable of hosts.
    :param retry: other hosts one call may try after a connection failure
        (a :class:`~htcluster.Retry`, an int, a bool or ``None`` = every host once).
    :param backoff: how long a failed host is left alone (a :class:`~htcluster.Backoff`,
        its base in seconds, a mapping of its fields, or ``None`` = 1 s doubling to 30 s).
    :param clock: callable returning seconds, for backoffs and budgets (``time.monotonic``).
    :param rng: ``random.Random`` used for choices and jitter.
    :param call_timeout: default ``timeout=`` of each routed call, in seconds:
        one budget for the pool wait, every attempt and every failover
        (``None``: each attempt is bounded by the pool's ``timeout`` and ``socket_timeout``).
    :param probe_timeout: seconds (float > 0) the ``status()`` probe of a host whose
        backoff ended may take before user calls go to it again (default 0.25).
    :param hedge: default ``hedge=`` of routed calls, in seconds, or ``None`` (no hedging).
    :param hedge_ratio: hedges allowed per routed call (fraction, default 0.1), plus 1 per second.
    :param retry_budget: what failovers, hedges and forced probes draw on: a
        :class:`~htcluster.RetryBudget`, a mapping of its ``ratio``, ``floor``,
        ``ttl``, or ``None`` (20 % of recent calls plus 10 per second over 10 s).
    :param listeners: a :class:`~htcluster.events.Listeners` registry (default: a new one).
    :param balancer: how a host is picked among usable ones: an object with ``pick``
        (:mod:`htcluster._policy.plans`); wins over ``balance``.
    :param balance: ``"cached"`` (the default: at random, biased by cached connections, lupyne's
        policy) or ``"p2c"``: power of two choices over a score of peak-EWMA latency x (calls in
        flight + 1), so a slow replica gets few calls (:mod:`htcluster._policy.balance`).
    :param max_ejection: fraction (0 to 1) of a call's candidate hosts that outlier ejection may
        set aside at once; past it the least bad keep serving (default 0.5;
        :mod:`htcluster._policy.outliers`).
    :param slow_start: seconds (>= 0) over which a host back from a probe, or just added
        (:meth:`add`, :meth:`set_hosts`), ramps up from 10 % of its share of balanced calls
        to all of it (default 0: at once).
    :param decay_time: seconds (> 0), the time constant of ``balance="p2c"``'s peak-EWMA latency
        cost (Finagle's ``decayTime``; ``None``: 10 s): how fast a host's cost follows faster
        answers, and fades while it is not called.  Only with ``balance="p2c"``.
    :param consecutive_gateway_failure: transient broker errors in a row (the broker could not reach
        the cluster; Envoy's gateway failures) that eject a host (int >= 1, default 5).
    :param base_ejection_time: seconds (> 0) a host is ejected for the first time; doubled at each
        further ejection, with jitter (default 10).
    :param max_ejection_time: seconds (>= ``base_ejection_time``) an ejection lasts at most (default 300).
    :param namespace: the namespace of calls that take one (``get_cells``, ``hql_query`` ...) and
        name none with ``namespace=`` (``None``: they must name one).
    :param pool_options: passed to every :class:`~htcluster.Pool` (``size``,
        ``max_overflow``, ``timeout``, ``socket_timeout``, ``connect_timeout``, ...; seconds).
    :raises ConfigError: no hosts, a malformed host, an unknown or invalid option.
    """

    def __init__(self, hosts: Union[str, Iterable[HostLike]], *, retry: Union[Retry, int, bool, None] = None,
                 backoff: Union[Backoff, float, Mapping[str, float], None] = None, clock: Optional[Clock] = None,
                 rng: Optional[random.Random] = None, call_timeout: Optional[float] = None,
                 probe_timeout: float = DEFAULT_PROBE_TIMEOUT, hedge: Optional[float] = None,
                 hedge_ratio: float = DEFAULT_HEDGE_RATIO,
                 retry_budget: Union[RetryBudget, Mapping[str, float], None] = None,
                 listeners: Optional[Listeners] = None, balancer: Optional[Balancer] = None,
                 balance: Optional[str] = None, max_ejection: float = DEFAULT_MAX_EJECTION,
                 slow_start: float = 0.0, decay_time: Optional[float] = None,
                 consecutive_gateway_failure: int = DEFAULT_CONSECUTIVE_GATEWAY_FAILURE,
                 base_ejection_time: float = DEFAULT_BASE_EJECTION_TIME,
                 max_ejection_time: float = DEFAULT_MAX_EJECTION_TIME,
                 namespace: Optional[str] = None, **pool_options: Any) -> None:
        if namespace is not None and (not isinstance(namespace, str) or not namespace):
            raise ConfigError(f"namespace must be a namespace name (a non-empty str), got {namespace!r}")
        #: The namespace of calls that take one and name none (``None``: they must name one).
        self.default_namespace = namespace
        unknown = set(pool_options) - POOL_OPTIONS
        if unknown:
            raise ConfigError(f"unknown option(s) {sorted(unknown)} for {type(self).__name__}; it takes "
                              f"{', '.join(sorted(ROUTING_OPTIONS))} and the Pool options {sorted(POOL_OPTIONS)}")
        parsed = parse_hosts(hosts)
        registry = Listeners() if listeners is None else listeners
        self._pool_options = pool_options
        self._registry = registry
        pools = {str(host): self.new_pool(host) for host in parsed}  # nothing opened yet
        #: The router that runs this object's plans (claims, probes, failover, hedging, fan-out).
        self.router = Router(pools, retry=retry, backoff=backoff, clock=clock, rng=rng, call_timeout=call_timeout,
                             probe_timeout=probe_timeout, hedge=hedge, hedge_ratio=hedge_ratio,
                             retry_budget=retry_budget, listeners=registry, balancer=balancer, balance=balance,
                             max_ejection=max_ejection, slow_start=slow_start, decay_time=decay_time,
                             consecutive_gateway_failure=consecutive_gateway_failure,
                             base_ejection_time=base_ejection_time, max_ejection_time=max_ejection_time)

    #: The class of the pools made for the hosts (the asyncio twins make ``AsyncPool`` s).
    pool_class: type[Pool] = Pool

    def new_pool(self, host: Host) -> Pool:
        """Return a new pool to ``host`` with this object's pool options and listeners (nothing opened)."""
        return self.pool_class(host, listeners=self._registry, **self._pool_options)

    @property
    def _pools(self) -> Mapping[str, Pool]:
        """The current hosts' pools (the membership snapshot, read once per use)."""
        return self.router.pools

    @property
    def _hosts(self) -> tuple[str, ...]:
        """The current hosts, in order."""
        hosts: tuple[str, ...] = self.router.pools.hosts
        return hosts

    # ------------------------------------------------------------ the mapping

    def __getitem__(self, host: str) -> Pool:
        pool: Pool = self.router.pools.pools[host]  # current hosts only (not those draining)
        return pool

    def __iter__(self) -> Iterator[str]:
        return iter(self._hosts)

    def __len__(self) -> int:
        return len(self._hosts)

    def __contains__(self, host: object) -> bool:
        return host in self._pools

    @property
    def pools(self) -> Mapping[str, Pool]:
        """``{'host:port': Pool}`` of every host, in host order (this object itself)."""
        return self

    @property
    def hosts(self) -> tuple[str, ...]:
        """Every ``'host:port'``, in the order given (by the constructor or the last ``set_hosts``)."""
        return self._hosts

    @property
    def health(self) -> HostHealth:
        """The hosts' :class:`~htcluster.HostHealth` (failures, backoffs, lag)."""
        return self.router.health

    @property
    def listeners(self) -> Listeners:
        """The events of this object and its pools (:mod:`htcluster.events`)."""
        return self.router.listeners

    @property
    def retry(self) -> Retry:
        """Other hosts one call may try (:class:`~htcluster.Retry`)."""
        return self.router.retry

    @property
    def rng(self) -> random.Random:
        """The random source of choices and jitter."""
        return self.router.rng

    @property
    def call_timeout(self) -> Optional[float]:
        """Default ``timeout=`` of routed calls, seconds (``None``: no overall bound)."""
        return self.router.call_timeout

    @property
    def probe_timeout(self) -> float:
        """Seconds a probe of a host whose backoff ended may take."""
        return self.router.probe_timeout

    @property
    def hedge(self) -> Optional[float]:
        """Default hedge delay, seconds (``None``: no hedging)."""
        return self.router.hedge

    @property
    def retry_budget(self) -> RetryBudget:
        """What failovers, hedges and forced probes draw on."""
        return self.router.retry_budget

    @property
    def failovers(self) -> int:
        """How many times, since creation, work was sent on to another host after a connection failure.

        Counts every routed call that moved on from a failed host, every
        resumed ``Replicas.scan`` and every host whose keys a
        ``Shards.multicast`` sent elsewhere; it never goes back down.
        """
        return self.router.failovers

    def host_key(self, host: HostLike) -> str:
        """Return the ``'host:port'`` key of ``host`` (any spelling :class:`~htcluster.Host` parses).

        :raises ConfigError: ``host`` is malformed or not one of these hosts.
        """
        name = str(Host.parse(host))
        if name not in self._pools:
            raise ConfigError(f"{name} is not one of the hosts here ({', '.join(self._hosts)})")
        return name

    def host_keys(self, hosts: Iterable[HostLike]) -> tuple[str, ...]:
        """Normalise a subset of hosts; the empty subset means every host.

        A host removed but still draining is accepted too (a caller that listed it
        before a membership change, e.g. ``Shards``): calls go to the current
        hosts of the subset, or to the draining ones when none is left.

        :raises ConfigError: a host is malformed, or neither one of these hosts nor draining.
        """
        retired = self.router.pools.retired
        names = tuple(dict.fromkeys(name if (name := str(Host.parse(h))) in retired else self.host_key(name)
                                    for h in hosts))
        return names or self._hosts

    def namespace_for(self, method: str, namespace: Optional[str]) -> Optional[str]:
        """Return the namespace a call of ``method`` runs in: ``namespace``, else this object's default
        when ``method`` takes a namespace id (``None`` for the others).

        :raises InvalidRequest: ``method`` takes a namespace and neither is set (nothing is sent).
        """
        if namespace is None and method in NAMESPACED_METHODS:
            if self.default_namespace is None:
                raise InvalidRequest(f"{method} runs in a namespace: pass namespace='<name>' (its id on the "
                                     "connection the call takes goes first), or give the routing object a "
                                     "default namespace (namespace= option, or the path of its URL)", method=method)
            return self.default_namespace
        return namespace

    def scan_namespace(self, namespace: Optional[str]) -> str:
        """Return the namespace a scan runs in (``namespace``, else the default).

        :raises ConfigError: neither is set.
        """
        name = namespace if namespace is not None else self.default_namespace
        if name is None:
            raise ConfigError("a scan needs a namespace: pass namespace='...' or give the routing object "
                              "a default namespace (namespace= option, or the path of its URL)")
        return name

    # ------------------------------------------------------------ lupyne's choice

    def priority(self, host: str) -> Optional[int]:
        """Return the number of idle connections of ``host``'s pool, or ``None`` while it is dead."""
        return self._pools[host].idle if self.health.usable(host) else None

    def rank(self, host: str) -> int:
        """Return the routing rank of ``host``: 1 with an idle connection or none in use, 0 when all are busy.

        Routed calls pick at random among the usable hosts of the highest rank
        (:class:`~htcluster._policy.plans.CachedBalancer`).
        """
        return rank(self.router.load(host))

    def choice(self, hosts: Iterable[str]) -> Optional[str]:
        """Return one of ``hosts``: at random among those of highest :meth:`priority`.

        :returns: a host; when every host is dead, the one whose backoff ends first;
            ``None`` when ``hosts`` is empty.
        """
        hosts = list(hosts)
        ranked = [(p, h) for h in hosts if (p := self.priority(h)) is not None]
        top = max((p for p, _ in ranked), default=None)
        best = [h for p, h in ranked if p == top]
        return self.rng.choice(best) if best else self.health.soonest(hosts)

    # ------------------------------------------------------------ calling

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

        One thread does it all (one ``poll`` loop, non-blocking connects), so a
        broadcast costs about one round trip however many hosts there are.  A
        host in its backoff is not called: its error is the reason it is down.
        When every host is down, every one is tried anyway.  Hosts whose
        backoff ended are probed first, within the broadcast's ``timeout``.

        :param method: a broker method.
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
        return drive(self.broadcast_steps(method, args, namespace, hosts, errors, timeout))

    def broadcast_steps(self, method: str, args: tuple[Any, ...], namespace: Optional[str] = None,
                        hosts: Iterable[HostLike] = (), errors: str = "raise",
                        timeout: Optional[float] = None) -> Steps[Union[Results, tuple[Results, Errors]]]:
        """:meth:`broadcast` as a generator of its waits (:mod:`htcluster._policy.steps`), for every I/O flavour."""
        check_error_mode(errors)
        targets = self.host_keys(hosts)
        results, failures = yield from self.router.fanout_steps(
            targets, method, args, self.namespace_for(method, namespace), self.router.deadline(timeout))
        return settle(results, failures, errors, f"{method} failed on {len(failures)} of {len(targets)} host(s)")

    def connect(self, plan: Plan) -> "Connection":
        """Return a context manager that leases one connection to a host of ``plan`` (see ``connection()``)."""
        return Connection(self.router, plan)

    # ------------------------------------------------------------ monitoring

    def stats(self) -> dict[str, HostStats]:
        """Return, per host, its pool's counters, its health, its calls and their recent latency.

        :returns: ``{host: {"pool": {...}, "health": {...}, "calls": int, "errors": int,
            "latency": {"count", "p50", "p99", "max"}}}`` in host order.  ``pool``
            is ``Pool.stats()`` without the call figures; ``health`` is
            ``{"live": bool, "failures": int, "retry_in": seconds (float, 0.0 when live),
            "error": str or None, "lagging": bool, "ejected_for": seconds, "ramp": share}`` plus, with
            ``balance="p2c"``, ``"cost"`` (the host's peak-EWMA latency, seconds) and ``"score"``
            (``cost x (in-flight + 1)``, what the balancer compares); latencies are seconds (``None``
            before any call).
        """
        out: dict[str, HostStats] = {}
        health = self.health
        now = health.clock()
        outliers = health.outliers
        costs = costs_of(self.router.balancer, self._hosts)
        for host, pool in self._pools.items():
            figures = pool.stats()
            state = health.state(host)
            judged: HealthStats = {"live": state.live, "failures": state.failures,
                                   "retry_in": 0.0 if state.live else max(0.0, state.dead_until - now),
                                   "error": None if state.error is None else
                                   f"{type(state.error).__name__}: {state.error}",
                                   "lagging": health.lagging(host), "ejected_for": outliers.ejected(host),
                                   "ramp": outliers.ramp(host)}
            if host in costs:
                judged["cost"] = costs[host]
                judged["score"] = costs[host] * (pool.in_use + 1)
            counters: PoolCounters = {
                "opened": figures["opened"], "closed": figures["closed"], "replaced": figures["replaced"],
                "idle": figures["idle"], "in_use": figures["in_use"], "waiting": figures["waiting"],
                "connecting": figures["connecting"], "connecting_peak": figures["connecting_peak"],
                "generation": figures["generation"],
                "timeouts": figures["timeouts"]}
            out[host] = {"pool": counters, "health": judged, "calls": figures["calls"], "errors": figures["errors"],
                         "latency": figures["latency"]}
        return out

    def budget_stats(self) -> BudgetStats:
        """Return the retry budget, the hedge cap and what was spent (see ``Router.budget_stats``)."""
        return self.router.budget_stats()

    def close(self) -> None:
        """Close every pool's idle connections; idempotent (the pools stay usable)."""
        for pool in self._pools.values():
            pool.close()

    def __enter__(self) -> "Routed":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        if "router" not in vars(self):  # construction failed part way
            return f"<{type(self).__name__} (not built)>"
        down = len(self.health.down())
        return f"<{type(self).__name__} {len(self)} hosts, {down} down: {', '.join(self._hosts)}>"


class Connection:
    """The context manager of ``connection()``: failover while connecting, the block's outcome reported."""

    __slots__ = ("router", "plan", "host", "hold")

    def __init__(self, router: Router, plan: Plan) -> None:
        self.router, self.plan = router, plan
        self.host: Optional[str] = None
        self.hold: Optional[Hold] = None

    def __enter__(self) -> Resource:
        if self.hold is not None:
            raise RuntimeError("this connection() is already in use; call connection() again")
        self.host, self.hold, resource = self.router.hold(self.plan)
        return resource

    def __exit__(self, exc_type: Optional[type], exc: Optional[BaseException], tb: object) -> None:
        hold, self.hold = self.hold, None
        if hold is not None:
            hold.end(exc)


def check_error_mode(errors: str) -> None:
    """Refuse an ``errors=`` argument that is not one of :data:`ERROR_MODES`.

    :raises ConfigError: it is not.
    """
    if errors not in ERROR_MODES:
        raise ConfigError(f"errors must be one of {ERROR_MODES}, got {errors!r}")


def settle(results: Results, failures: Errors, errors: str, message: str) -> Union[Results, tuple[Results, Errors]]:
    """Return what a broadcast returns in mode ``errors``: the results, or the pair ``(results, failures)``.

    :raises BroadcastError: ``failures`` is not empty and ``errors`` is ``'raise'``.
    """
    if errors == "return":
        return results, failures
    if failures:
        raise BroadcastError(message, results, failures)
    return results
