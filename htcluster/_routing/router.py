"""The router: runs a plan under the retry, the retry budget, probes, hedging and the deadline.

:class:`Router` is the one retry loop of htcluster (elastic-transport's
``Transport.perform_request``, cassandra-driver's query plan executor).
``Resources``, ``Replicas`` and ``Shards`` build :class:`~htcluster._policy.plans.Plan` s
and hand them here; every host they reach is reached through an
:class:`~htcluster._call.attempt.Attempt`, which alone reports to
:class:`~htcluster._policy.health.HostHealth`.

* :meth:`Router.call` walks a plan: it claims a host (:meth:`Router.claim`),
  runs an attempt, and after a connection failure moves on while the
  :class:`~htcluster._policy.health.Retry`, the retry budget and the deadline
  allow, raising :class:`~htcluster.errors.NoHostAvailable` (each host's cause
  inside), :class:`~htcluster.errors.DeadlineExceeded` (the attempts inside) or
  :class:`~htcluster.errors.WriteOutcomeUnknown` (a call not safe to repeat
  failed after it was sent).  Hedged calls run on the multiplexing loop
  (:mod:`htcluster._routing.hedge`).
* :meth:`Router.fanout` calls many hosts at once on the loop (broadcast, multicast).
* :meth:`Router.probe` sends a ``status()`` to hosts whose backoff ended, all at
  once, within ``probe_timeout`` and the caller's deadline; only a host that
  answers gets user calls again.  When every candidate is dead, the one due back
  soonest is probed anyway (drawing on the retry budget).
* :meth:`Router.hold` leases one connection for calls that must share it
  (scanners, mutators), failing over at connect time.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any, Container, Mapping, Optional, Sequence, Union

from thrift.transport.TTransport import TTransportException

from .._call.attempt import Attempt, Hold, Pool, Run
from .._call.loop import run_all_steps
from .._call.scope import earliest
from .._policy.steps import Steps, drive
from .hedge import hedged_steps
from .members import Members
from .._io.resource import Resource
from .._policy.balance import Meter, coerce_balancer
from .._policy.budget import RetryBudget
from .._policy.classify import is_transient
from .._policy.outliers import (DEFAULT_BASE_EJECTION_TIME, DEFAULT_CONSECUTIVE_GATEWAY_FAILURE, DEFAULT_MAX_EJECTION,
                                DEFAULT_MAX_EJECTION_TIME, Outliers)
from .._policy.forks import renew_after_fork
from .._policy.health import Backoff, Clock, HostHealth, Retry
from .._policy.plans import Balancer, Load, Plan
from .._validate import fraction, optional_seconds, seconds
from ..errors import (BrokerUnavailable, ClientException, ConfigError, DeadlineExceeded, NoHostAvailable, TLSError,
                      WriteOutcomeUnknown)
from ..events import BudgetExhausted, FailedOver, Listeners
from ..types import BudgetStats, Errors, Results

__all__ = ["DEFAULT_HEDGE_RATIO", "DEFAULT_PROBE_TIMEOUT", "HEDGE_FLOOR", "Failover", "Router", "coerce_budget"]

log = logging.getLogger("htcluster.router")

#: Seconds a probe's ``status()`` may take, connecting included.
DEFAULT_PROBE_TIMEOUT = 0.25
#: Hedges allowed per routed call, at most (on top of :data:`HEDGE_FLOOR` per second).
DEFAULT_HEDGE_RATIO = 0.1
#: Hedges per second always allowed, so that a client that has just started can hedge.
HEDGE_FLOOR = 1.0


class Failover:
    """One routed call's way through its plan: the hosts tried, the retries left, its deadline.

    :param router: claims hosts and holds the retry and the budgets.
    :param what: the call, for log lines and errors (e.g. ``'get_cell'``).
    :param plan: the candidate hosts and their order.
    :param deadline: ``time.monotonic()`` time after which no attempt starts (``None``: none).
    """

    __slots__ = ("router", "what", "plan", "deadline", "retry", "errors", "transient")

    def __init__(self, router: "Router", what: str, plan: Plan, deadline: Optional[float] = None) -> None:
        hosts = router.pools.restrict(plan.hosts)  # the current members only (membership changes)
        if hosts is not plan.hosts:
            plan = plan._replace(hosts=hosts)
        self.router, self.what, self.plan, self.deadline = router, what, plan, deadline
        self.retry = router.retry
        self.errors: dict[str, BaseException] = {}
        #: The last transient broker error answered (raised again when no other host is left).
        self.transient: Optional[ClientException] = None
        router.routed()

    def next_host(self, exclude: Container[str] = (), force: bool = True, probe_limit: Optional[float] = None) -> str:
        """Claim a host of the plan not tried yet (probing due hosts first).

        :param exclude: hosts not to claim either (e.g. those a hedged call waits on).
        :param force: when no host is usable, probe the dead one due back soonest
            (False: raise ``NoHostAvailable`` instead, e.g. for a hedge).
        :param probe_limit: seconds a probe may take at most (``None``: ``probe_timeout``).
        :returns: the ``'host:port'`` claimed.
        :raises DeadlineExceeded: the deadline passed.
        :raises NoHostAvailable: every host was tried, or failed its probe.
        :raises ClientException: a host answered a transient error and no other host is left (that answer).
        """
        return drive(self.next_host_steps(exclude, force, probe_limit))

    def first_host(self) -> Optional[str]:
        """The first host of a call when it needs no wait (no probe: every host live), else ``None``.

        The common case of :meth:`next_host_steps`, without a generator (routed calls take it first).
        """
        if self.errors or (self.deadline is not None and time.monotonic() >= self.deadline):
            return None
        return self.router.first_claim(self.plan)

    def next_host_steps(self, exclude: Container[str] = (), force: bool = True,
                        probe_limit: Optional[float] = None) -> Steps[str]:
        """:meth:`next_host` as a generator of its waits (probes), for every I/O flavour."""
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise self.deadline_exceeded(sent=bool(self.errors))
        host = yield from self.router.claim_steps(self.plan, self.errors, exclude, self.deadline, force, probe_limit)
        if host is None:
            if self.deadline is not None and time.monotonic() >= self.deadline:
                raise self.deadline_exceeded(sent=bool(self.errors))
            if self.transient is not None and force:
                raise self.transient
            raise self.no_host()
        return host

    def answered_transient(self, host: str, exc: ClientException) -> None:
        """Record that ``host`` answered a transient broker error (:func:`~htcluster._policy.classify.is_transient`),
        and count the move to another host: the same rules as :meth:`failed`, but when no retry is left the
        broker's answer itself is raised.

        :raises ClientException: ``exc``, when the retry allows no other host or the retry budget is spent.
        """
        self.errors[host] = exc
        self.transient = exc
        self.retry = self.retry.increment(host)
        if self.retry.exhausted or not self.router.spend_retry(self.what):
            raise exc
        self.router.failed_over(self.what, host, exc)

    def failed(self, host: str, exc: BaseException) -> None:
        """Record that ``host`` failed to serve the call, and count the move to another host.

        :raises WriteOutcomeUnknown: the call is not idempotent and may have been sent.
        :raises NoHostAvailable: the retry allows no other host, or the retry budget is spent.
        """
        self.errors[host] = exc
        if isinstance(exc, BrokerUnavailable) and exc.sent and not self.plan.idempotent:
            raise WriteOutcomeUnknown(
                f"{self.what} failed on {host} after it was sent, and repeating it elsewhere could apply "
                f"it twice: it may or may not have been applied; read back before repeating it ({exc})",
                host=host, sent=True, type=exc.type) from exc
        self.retry = self.retry.increment(host)
        if self.retry.exhausted:
            raise self.no_host() from exc
        if not self.router.spend_retry(self.what):
            raise self.no_host("the retry budget is spent: too many calls failed over recently") from exc
        self.router.failed_over(self.what, host, exc)

    def deadline_exceeded(self, sent: bool) -> DeadlineExceeded:
        """Build the error of a call whose deadline passed, naming the hosts it tried."""
        return DeadlineExceeded(f"{self.what} ran out of its timeout after {len(self.errors)} attempt(s)",
                                self.errors, sent=sent)

    def no_host(self, why: str = "") -> NoHostAvailable:
        """Build the error naming each host of the plan and why it was not usable."""
        causes = dict(self.errors)
        health = self.router.health
        for host in self.plan.hosts:
            error = health.state(host).error
            if host not in causes and error is not None:
                causes[host] = error
        suffix = f"; {why}" if why else ""
        return NoHostAvailable(f"no broker could serve {self.what} ({len(self.plan.hosts)} host(s)){suffix}", causes)


class Router:
    """Route calls over pools: claim, probe, fail over, hedge, fan out; one instance per routing object.

    :param pools: ``{'host:port': Pool}``, in host order; :attr:`pools` is a
        :class:`~htcluster._routing.members.Members` snapshot that membership changes swap.
    :param retry: other hosts one call may try after a connection failure (see ``Retry.from_int``).
    :param backoff: how long a failed host is left alone (see ``Backoff.coerce``).
    :param clock: callable returning seconds, for backoffs and budgets (``time.monotonic``).
    :param rng: random source for choices and jitter.
    :param call_timeout: default deadline of routed calls in seconds, or ``None``.
    :param probe_timeout: seconds a probe may take (> 0).
    :param hedge: default hedge delay in seconds, or ``None``.
    :param hedge_ratio: hedges allowed per routed call (fraction), plus :data:`HEDGE_FLOOR` per second.
    :param retry_budget: see :func:`coerce_budget`.
    :param listeners: the :class:`~htcluster.events.Listeners` of the routing object.
    :param balancer: picks a host among usable candidates (an object with ``pick``; wins over ``balance``).
    :param balance: ``"cached"`` (lupyne's policy, the default) or ``"p2c"`` (power of two choices over
        a peak-EWMA latency x in-flight score, :class:`~htcluster._policy.balance.P2CBalancer`).
    :param max_ejection: fraction of a call's candidates that outlier ejection may set aside at once (0.5).
    :param slow_start: seconds of the traffic ramp of a host back from a probe or just added (0: none).
    :param decay_time: seconds, the time constant of ``balance="p2c"``'s latency costs (``None``: 10).
    :param consecutive_gateway_failure: transient broker errors in a row that eject a host (5).
    :param base_ejection_time: seconds of a first ejection, doubled at each further one (10).
    :param max_ejection_time: seconds an ejection lasts at most (300).
    """

    def __init__(self, pools: Mapping[str, Pool], *, retry: Union[Retry, int, bool, None] = None,
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
                 max_ejection_time: float = DEFAULT_MAX_EJECTION_TIME) -> None:
        #: The membership snapshot (``'host:port' -> Pool``), swapped as a whole by ``add``/``remove``/``set_hosts``.
        self.pools: Members[Pool] = pools if isinstance(pools, Members) else Members(pools)
        self.retry = Retry.from_int(retry)
        self.rng = rng or random.Random()
        self.listeners = listeners if listeners is not None else Listeners()
        outliers = Outliers(max_ejection=max_ejection, slow_start=slow_start,
                            consecutive_gateway_failure=consecutive_gateway_failure,
                            base_ejection_time=base_ejection_time, max_ejection_time=max_ejection_time,
                            clock=clock, rng=self.rng)
        self.health = HostHealth(list(pools), backoff, clock, self.rng, listeners=self.listeners, outliers=outliers)
        self.call_timeout = optional_seconds("call_timeout", call_timeout)
        self.probe_timeout = seconds("probe_timeout", probe_timeout)
        self.hedge = None if hedge is None else seconds("hedge", hedge)
        #: What failovers, hedges and forced probes draw on.
        self.retry_budget = coerce_budget(retry_budget, self.health.clock)
        #: The cap on hedges: ``hedge_ratio`` of the routed calls, plus :data:`HEDGE_FLOOR` per second.
        self.hedge_budget = RetryBudget(fraction("hedge_ratio", hedge_ratio), HEDGE_FLOOR, clock=self.health.clock)
        #: Picks a host among usable candidates (:mod:`htcluster._policy.plans`, :mod:`htcluster._policy.balance`).
        self.balancer: Balancer = coerce_balancer(balance, balancer, self.health.clock, decay_time)
        if isinstance(self.balancer, Meter):  # a load-aware balancer learns from every attempt
            self.health.meter = self.balancer
        self.after_fork()
        renew_after_fork(self)

    def after_fork(self) -> None:
        """Re-create the lock and restart the counters in a forked child."""
        self._lock = threading.Lock()
        self._failovers = 0
        self._exhausted = 0
        self._hedges: dict[str, int] = {}

    # ------------------------------------------------------------ options

    def deadline(self, timeout: Optional[float]) -> Optional[float]:
        """Return the ``time.monotonic()`` deadline of a call given ``timeout=`` (or ``call_timeout``),
        never later than the current ``htcluster.deadline()`` scope.

        :raises ConfigError: ``timeout`` is not a finite positive number of seconds.
        """
        if timeout is None:
            timeout = self.call_timeout
            if timeout is None:
                return earliest(None)
            return earliest(time.monotonic() + timeout)
        return earliest(time.monotonic() + seconds("timeout", timeout))

    def hedge_delay(self, hedge: Optional[float]) -> Optional[float]:
        """Return the seconds after which a call is hedged, given its ``hedge=`` (``None``: the default; 0: never).

        :raises ConfigError: ``hedge`` is negative, NaN, infinite or not a number.
        """
        if hedge is None:
            return self.hedge
        return seconds("hedge", hedge, allow_zero=True) or None

    # ------------------------------------------------------------ choosing

    def load(self, host: str) -> Load:
        """Return ``(idle, in_use)`` of ``host``'s pool, for the balancer."""
        pool = self.pools[host]
        return pool.idle, pool.in_use

    def claim(self, plan: Plan, tried: Container[str], exclude: Container[str] = (),
              deadline: Optional[float] = None, force: bool = True,
              probe_limit: Optional[float] = None) -> Optional[str]:
        """Claim a host of ``plan`` for one attempt; the attempt reports how it ended to :attr:`health`.

        Hosts of the plan whose backoff ended are probed first, all at once
        (:meth:`probe`); then the first usable host in order (``plan.ordered``),
        or the balancer's pick among usable hosts that do not lag after a lost
        hedge.  When none is usable and ``force``, the dead ones are probed,
        soonest back first, each drawing on the retry budget.

        :param plan: the candidates.
        :param tried: hosts this call already tried; ``exclude``: hosts not to claim either.
        :param deadline: the call's deadline (probes end by it).
        :param force: probe dead hosts when nothing is usable (False: return ``None``).
        :param probe_limit: seconds a probe may take at most (``None``: :attr:`probe_timeout`).
        :returns: the claimed host, or ``None`` when none can serve.
        """
        return drive(self.claim_steps(plan, tried, exclude, deadline, force, probe_limit))

    def claim_steps(self, plan: Plan, tried: Container[str], exclude: Container[str] = (),
                    deadline: Optional[float] = None, force: bool = True,
                    probe_limit: Optional[float] = None) -> Steps[Optional[str]]:
        """:meth:`claim` as a generator of its waits (probes), for every I/O flavour."""
        health = self.health
        hosts = plan.hosts
        if not tried and not exclude:
            first = self.first_claim(plan)
            if first is not None:
                return first
        pending = [h for h in hosts if h not in tried and h not in exclude]
        if not health.all_live:
            due = health.claim_due(pending)
            if due:
                yield from self.probe_steps(due, deadline, probe_limit)
        while pending:
            usable = [h for h in pending if health.usable(h)]
            if not usable:
                break
            prompt = [h for h in usable if not health.lagging(h)] or usable
            if health.outliers.active:  # ejected hosts set aside (within the cap), warming ones ramped up
                prompt = health.outliers.serving(prompt, self.rng, len(hosts), ramp=not plan.ordered)
            host = prompt[0] if plan.ordered else self.balancer.pick(prompt, self.load, self.rng)
            pending.remove(host)
            if health.claim(host):
                return host
        while pending and force:  # none usable: the soonest back first, each probed
            if deadline is not None and time.monotonic() >= deadline:
                return None
            soonest = health.soonest(pending)
            assert soonest is not None
            pending.remove(soonest)
            if not self.spend_retry(f"probe of {soonest}"):
                return None
            health.claim(soonest, force=True)
            if (yield from self.probe_steps([soonest], deadline, probe_limit))[soonest] is None \
                    and health.claim(soonest):
                return soonest
        return None

    def first_claim(self, plan: Plan) -> Optional[str]:
        """The host of a first try when every host is live (no probe, no claim to take), else ``None``."""
        if not self.health.all_live:
            return None
        hosts = plan.hosts
        if len(hosts) == 1 or plan.ordered:
            return hosts[0]
        return self.balancer.pick(hosts, self.load, self.rng)

    def unclaim(self, host: str) -> None:
        """Give back a claim of :meth:`claim` on which no attempt was made (e.g. a hedge the budget refused).

        Claims are the router's; outcomes are reported by the attempts alone.
        """
        self.health.release(host)

    def probe(self, hosts: Sequence[str], deadline: Optional[float] = None,
              limit: Optional[float] = None) -> dict[str, Optional[BaseException]]:
        """Send ``status()`` to each of ``hosts`` at once, on fresh connections; the attempts judge them.

        Each probe gets ``probe_timeout`` seconds (or ``limit``), never past ``deadline``.

        :param hosts: hosts whose trial the caller holds (``claim_due`` or a forced claim).
        :returns: ``{host: None}`` for a host that answered (it is live again),
            ``{host: exception}`` for one that did not (it is down again, or its pool was full).
        """
        return drive(self.probe_steps(hosts, deadline, limit))

    def probe_steps(self, hosts: Sequence[str], deadline: Optional[float] = None,
                    limit: Optional[float] = None) -> Steps[dict[str, Optional[BaseException]]]:
        """:meth:`probe` as a generator of its waits, for every I/O flavour."""
        timeout = self.probe_timeout if limit is None else min(limit, self.probe_timeout)
        end = time.monotonic() + timeout
        cut = deadline is not None and deadline < end  # the caller's deadline, not the probe's, ends it
        if cut:
            end = deadline  # type: ignore[assignment]
        attempts = [Attempt(self.pools[h], "status", (), None, end, self.health, h, probe=True) for h in hosts]

        def judge(attempt: Attempt) -> None:
            attempt.error = _probe_error(attempt.host, timeout, attempt.error, cut)

        yield from run_all_steps(attempts, judge)
        verdicts: dict[str, Optional[BaseException]] = {a.host: a.error for a in attempts}
        return verdicts

    # ------------------------------------------------------------ budgets and counters

    def routed(self) -> None:
        """Count one routed call: a deposit into :attr:`retry_budget` and the hedge cap."""
        self.retry_budget.deposit()
        self.hedge_budget.deposit()

    def spend_retry(self, what: str) -> bool:
        """Take one retry of ``what`` from :attr:`retry_budget`; False (and a ``BudgetExhausted`` event) when spent."""
        if self.retry_budget.withdraw():
            return True
        with self._lock:
            self._exhausted += 1
        log.warning("not retrying %s: the retry budget is spent (%s)", what, self.retry_budget)
        if self.listeners:
            self.listeners.emit(BudgetExhausted(what))
        return False

    def spend_hedge(self, method: str) -> bool:
        """Take one hedge of ``method`` from the hedge cap and the retry budget (False: not allowed now)."""
        if not self.hedge_budget.withdraw():
            return False
        if self.spend_retry(f"hedge of {method}"):
            return True
        self.hedge_budget.refund()
        return False

    def hedge_sent(self, host: str) -> None:
        """Count one hedge sent to ``host`` (for :meth:`budget_stats`)."""
        with self._lock:
            self._hedges[host] = self._hedges.get(host, 0) + 1

    def failed_over(self, what: str, host: str, exc: BaseException) -> None:
        """Count, log and report (:class:`~htcluster.events.FailedOver`) one failover of ``what`` away from ``host``."""
        with self._lock:
            self._failovers += 1
        log.info("%s failed on %s, trying another host: %s", what, host, exc)
        if self.listeners:
            self.listeners.emit(FailedOver(host, what, exc))

    @property
    def failovers(self) -> int:
        """How many times work was sent on to another host after a failure, since creation."""
        return self._failovers

    def budget_stats(self) -> BudgetStats:
        """Return the retry budget, the hedge cap and what was spent.

        :returns: ``{"retry": RetryBudget.stats(), "hedge": RetryBudget.stats() of the cap,
            "hedges": {host: hedges sent to it}, "exhausted": calls refused a retry or hedge
            by the retry budget, "failovers": int}``.
        """
        with self._lock:
            hedges, exhausted = dict(self._hedges), self._exhausted
        return {"retry": self.retry_budget.stats(), "hedge": self.hedge_budget.stats(), "hedges": hedges,
                "exhausted": exhausted, "failovers": self._failovers}

    # ------------------------------------------------------------ running plans

    def call(self, plan: Plan, method: str, args: tuple[Any, ...], namespace: Optional[str],
             timeout: Optional[float] = None, hedge: Optional[float] = None) -> Any:
        """Run one routed call: an attempt on a host of ``plan``, failing over; hedged when asked and safe.

        :param plan: the candidates (and whether the call may be repeated after it was sent).
        :param timeout: seconds for the whole call (``None``: :attr:`call_timeout`).
        :param hedge: seconds before a hedge (``None``: :attr:`hedge`; 0: not hedged).
        :returns: the broker's answer.
        :raises NoHostAvailable, DeadlineExceeded, WriteOutcomeUnknown, InvalidRequest,
            ClientResourceError, ClientException: see ``Resources.unicast``.
        """
        return drive(self.call_steps(plan, method, args, namespace, timeout, hedge))

    def call_steps(self, plan: Plan, method: str, args: tuple[Any, ...], namespace: Optional[str],
                   timeout: Optional[float] = None, hedge: Optional[float] = None) -> Steps[Any]:
        """:meth:`call` as a generator of its waits (:mod:`htcluster._policy.steps`), for every I/O flavour."""
        deadline = self.deadline(timeout)
        delay = self.hedge_delay(hedge) if plan.idempotent else None
        failover = Failover(self, method, plan, deadline)
        if delay is not None:
            return (yield from hedged_steps(self, failover, method, args, namespace, delay))
        pools, health = self.pools, self.health
        host = failover.first_host()
        while True:
            if host is None:
                host = yield from failover.next_host_steps()
            try:
                return (yield Run(Attempt(pools[host], method, args, namespace, deadline, health, host)))
            except BrokerUnavailable as exc:
                failover.failed(host, exc)
                host = None
            except ClientException as exc:
                if not (plan.idempotent and is_transient(exc)):
                    raise  # a semantic error (no such table, bad key ...): final
                failover.answered_transient(host, exc)
                host = None
            except DeadlineExceeded as exc:
                failover.errors[host] = exc
                raise failover.deadline_exceeded(exc.sent) from exc

    def fanout(self, hosts: Sequence[str], method: str, args: tuple[Any, ...], namespace: Optional[str],
               deadline: Optional[float] = None, force: bool = False) -> tuple[Results, Errors]:
        """Call ``method`` on every host of ``hosts`` at once (one multiplexing loop); ``(results, failures)``.

        A host in its backoff is not called (its error says why it is down)
        unless ``force``, or unless every host is down; hosts whose backoff
        ended are probed first, all at once, within the deadline.  Both dicts
        follow the order of ``hosts``; a host is in exactly one, unless it was
        removed from the members meanwhile (then in neither: it is not called).

        :param force: call the hosts in their backoff too (nothing else serves what they serve).
        """
        return drive(self.fanout_steps(hosts, method, args, namespace, deadline, force))

    def fanout_steps(self, hosts: Sequence[str], method: str, args: tuple[Any, ...], namespace: Optional[str],
                     deadline: Optional[float] = None, force: bool = False) -> Steps[tuple[Results, Errors]]:
        """:meth:`fanout` as a generator of its waits, for every I/O flavour."""
        health = self.health
        hosts = self.pools.restrict(hosts)  # a host removed since the caller listed it is not called
        due = health.claim_due(hosts)
        if due:
            yield from self.probe_steps(due, deadline)
        claimed = [h for h in hosts if health.claim(h, force)]
        if not claimed:
            claimed = [h for h in hosts if health.claim(h, force=True)]
        failures: dict[str, BaseException] = {
            h: BrokerUnavailable(health.describe(h), host=h, sent=False, type=TTransportException.NOT_OPEN)
            for h in hosts if h not in claimed}
        attempts = [Attempt(self.pools[h], method, args, namespace, deadline, health, h) for h in claimed]
        yield from run_all_steps(attempts)
        results: dict[str, Any] = {}
        for attempt in attempts:
            if attempt.error is None:
                results[attempt.host] = attempt.result
            else:
                failures[attempt.host] = attempt.error
        return ({h: results[h] for h in hosts if h in results}, {h: failures[h] for h in hosts if h in failures})

    def hold(self, plan: Plan, what: str = "connection",
             deadline: Optional[float] = None) -> tuple[str, Hold, Resource]:
        """Lease one connection to a host of ``plan`` (failing over while connecting), for the caller's block.

        :returns: ``(host, hold, resource)``; end the block with ``hold.end(exception or None)``.
        :raises NoHostAvailable: no host could be connected to.
        """
        return drive(self.hold_steps(plan, what, deadline))

    def hold_steps(self, plan: Plan, what: str = "connection",
                   deadline: Optional[float] = None) -> Steps[tuple[str, Hold, Resource]]:
        """:meth:`hold` as a generator of its waits, for every I/O flavour."""
        failover = Failover(self, what, plan, deadline)
        while True:
            host = yield from failover.next_host_steps()
            hold = Hold(self.pools[host], self.health, host, deadline)
            try:
                return host, hold, (yield from hold.begin_steps())
            except BrokerUnavailable as exc:
                failover.failed(host, exc)


def _probe_error(host: str, timeout: float, exc: Optional[BaseException], cut: bool) -> Optional[BaseException]:
    """Describe a failed probe as the host's error (a ``BrokerUnavailable`` that names the probe).

    A probe cut short by the caller's deadline (``cut``) stays a ``DeadlineExceeded``: nothing was learnt.
    """
    if exc is None or (cut and isinstance(exc, DeadlineExceeded)) or isinstance(exc, TLSError):
        return exc  # a TLS configuration mistake stays itself: it says nothing of the host
    if isinstance(exc, DeadlineExceeded) or (isinstance(exc, BrokerUnavailable)
                                              and exc.type == TTransportException.TIMED_OUT):
        error = BrokerUnavailable(f"ThriftBroker {host} did not answer a status() probe within {timeout:g} s "
                                  "(stopped, hung or overloaded)", host=host, sent=False,
                                  type=TTransportException.TIMED_OUT)
    elif isinstance(exc, BrokerUnavailable):
        error = BrokerUnavailable(f"status() probe of {host} failed: {exc}", host=host, sent=False, type=exc.type)
    else:  # a broker error answering status(): the host answers, so it is not down
        return exc
    error.__cause__ = exc
    return error


def coerce_budget(value: Union[RetryBudget, Mapping[str, float], None], clock: Clock) -> RetryBudget:
    """Normalise a ``retry_budget=`` option: a :class:`RetryBudget`, a mapping of its fields, or ``None``.

    :param clock: the clock of a budget built here (the router's).
    :raises ConfigError: another type, unknown fields or a value out of range.
    """
    if value is None:
        return RetryBudget(clock=clock)
    if isinstance(value, RetryBudget):
        return value
    if isinstance(value, Mapping):
        unknown = set(value) - {"ratio", "floor", "ttl"}
        if unknown:
            raise ConfigError(f"unknown retry_budget fields {sorted(unknown)}; allowed: ratio, floor, ttl")
        return RetryBudget(**value, clock=clock)
    raise ConfigError(f"retry_budget must be a RetryBudget, a mapping of ratio/floor/ttl or None, got {value!r}")

