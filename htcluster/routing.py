"""Routing decisions of :class:`~htcluster.resources.Resources`: rank, claim (with probes), budgets, hedging.

:class:`Routing` is the half of ``Resources`` that a :class:`~htcluster.failover.Failover`
talks to (its ``Router`` protocol): which host a routed call goes to
(:meth:`Routing.claim`, :meth:`Routing.rank`), the probe of a host whose
backoff ended (:mod:`htcluster.probe`), the retry budget and the hedge cap
(:mod:`htcluster.budget`), and :meth:`Routing.routed_call`, which runs a call
through a ``Failover``, hedged (:func:`~htcluster.hedge.hedged_call`) when
asked and safe.  It keeps no I/O of its own beyond the probes.

How hosts are ranked for routed calls: a usable host with an idle connection,
or with no connection in use at all, ranks 1 (the idle count capped at 1: all
such hosts tie, and ties are broken at random, so one thread's reads spread
over every replica); a host whose connections are all busy ranks 0 (lupyne's
bias: warm, free connections win under load); a host lagging after a lost
hedge comes after every other usable host, in order or not.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Container, Mapping, Optional, Sequence, Union, cast

from .budget import RetryBudget
from .stats import BudgetStats
from .errors import BrokerUnavailable, ConfigError
from .events import BudgetExhausted
from .failover import Failover
from .hedge import hedged_call
from .policy import ANSWERS, Clock, HostHealth
from .pool import Pool
from .probe import probe_many
from .units import seconds

__all__ = ["DEFAULT_HEDGE_RATIO", "HEDGE_FLOOR", "Routing", "coerce_budget"]

log = logging.getLogger("htcluster.resources")

#: Hedges allowed per routed call, at most (on top of :data:`HEDGE_FLOOR` per second).
DEFAULT_HEDGE_RATIO = 0.1
#: Hedges per second always allowed, so that a client that has just started can hedge.
HEDGE_FLOOR = 1.0


class Routing:
    """The routing half of ``Resources`` (a mixin: ``self`` is the ``{host: Pool}`` mapping).

    Set up by :meth:`_init_routing`; the attributes it relies on are those below.
    """

    health: HostHealth
    listeners: Any
    rng: Any
    probe_timeout: float
    hedge: Optional[float]
    retry_budget: RetryBudget
    hedge_budget: RetryBudget
    _lock: threading.Lock
    _failovers: int
    deadline: Callable[[Optional[float]], Optional[float]]

    @property
    def pools(self) -> Mapping[str, Pool]:
        """This mapping, ``{host: Pool}``, typed as such."""
        return cast("Mapping[str, Pool]", self)  # a string: no typing subscription on the hot path

    def _init_routing(self, probe_timeout: float, hedge: Optional[float], hedge_ratio: float,
                      retry_budget: Union[RetryBudget, Mapping[str, float], None]) -> None:
        """Check and keep the routing options (see ``Resources``)."""
        self.probe_timeout = seconds("probe_timeout", probe_timeout)
        self.hedge = None if hedge is None else seconds("hedge", hedge)
        #: What failovers, hedges and forced probes draw on (:class:`~htcluster.budget.RetryBudget`).
        self.retry_budget = coerce_budget(retry_budget, self.health.clock)
        #: The cap on hedges: ``hedge_ratio`` of the routed calls, plus :data:`HEDGE_FLOOR` per second.
        self.hedge_budget = RetryBudget(_fraction("hedge_ratio", hedge_ratio), HEDGE_FLOOR, clock=self.health.clock)
        self._hedges: dict[str, int] = {}
        self._exhausted = 0

    def rank(self, host: str) -> int:
        """Return the routing rank of a usable ``host``: 1 with an idle connection or none in use, else 0.

        The idle count capped at 1: every host with a warm connection ties (and so
        does a host nobody is using), so one thread's calls spread; a host whose
        connections are all busy ranks below them (lupyne's bias under load).
        """
        pool = self.pools[host]
        return 1 if pool._idle > 0 or pool._in_use == 0 else 0

    def _pick(self, pending: Sequence[str], ordered: bool) -> Optional[str]:
        """Return the usable host of ``pending`` a routed call goes to (``None``: none is usable)."""
        usable = [h for h in pending if self.health.usable(h)]
        if not usable:
            return None
        prompt = [h for h in usable if not self.health.lagging(h)] or usable
        if ordered:
            return prompt[0]
        top = max(self.rank(h) for h in prompt)
        chosen: str = self.rng.choice([h for h in prompt if self.rank(h) == top])
        return chosen

    def claim(self, hosts: Sequence[str], tried: Container[str], ordered: bool,
              probe_limit: Optional[float] = None, force: bool = True) -> Optional[str]:
        """Claim a host not yet ``tried`` for one call: the first usable one if ``ordered``,
        else by :meth:`rank` (random among the best); when none is usable, the dead one
        that comes back soonest, if a probe finds it answering.

        A host whose backoff ended is probed (:mod:`htcluster.probe`) before it
        is returned; a failed probe marks it down again and the next host is
        considered.  A probe of a host still in its backoff (every candidate is
        dead) draws on :attr:`retry_budget`.  The caller reports how the call
        ended to :attr:`health` (``succeeded``, ``failed`` or ``release``).
        This and :meth:`failed_over` are what a :class:`~htcluster.failover.Failover`
        needs of its router.

        :param hosts: candidate ``'host:port'`` keys.
        :param tried: hosts this call already tried.
        :param ordered: take the first usable host in ``hosts`` order (hosts that
            lag after a lost hedge come after the others).
        :param probe_limit: seconds a probe may take at most (``None``: :attr:`probe_timeout`).
        :param force: when no candidate is usable, probe the dead ones (soonest back
            first); False: return ``None`` then (a hedge never goes to a dead host).
        :returns: the claimed host, or ``None`` when every host was tried or failed its probe.
        """
        pending = [h for h in hosts if h not in tried]
        if len(pending) == 1 and self.health.claim(pending[0]):  # one candidate: nothing to rank
            return pending[0] if self._probed(pending[0], probe_limit) else None
        while pending:
            host = self._pick(pending, ordered)
            if host is None:
                break
            pending.remove(host)
            if self.health.claim(host) and self._probed(host, probe_limit):
                return host  # (a host refused was claimed by another caller meanwhile)
        while pending and force:  # none usable: the soonest back first, each probed
            host = self.health.soonest(pending)
            assert host is not None
            pending.remove(host)
            if not self.spend_retry(f"probe of {host}"):
                return None
            self.health.claim(host, force=True)
            if self._probed(host, probe_limit):
                return host
        return None

    def _probed(self, host: str, limit: Optional[float] = None) -> bool:
        """Return True when claimed ``host`` may take the call: live, or a trial whose probe answered."""
        if not self.health.is_trial(host):
            return True
        timeout = self.probe_timeout if limit is None else min(limit, self.probe_timeout)
        return self._judge(host, probe_many(self.pools, [host], timeout)[host])

    def _judge(self, host: str, verdict: Optional[BaseException]) -> bool:
        """Report a probe's ``verdict`` on ``host`` to :attr:`health`; True when the host answered."""
        if verdict is None or isinstance(verdict, ANSWERS):
            self.health.probed(host)
            return True
        if isinstance(verdict, BrokerUnavailable):
            delay = self.health.failed(host, verdict)
            log.warning("%s marked down for %.2f s: %s", host, delay, verdict)
        else:  # PoolTimeout: its pool is full, nothing learnt about the host
            self.health.release(host)
        return False

    def routed(self) -> None:
        """Count one routed call: a deposit into :attr:`retry_budget` and the hedge cap."""
        self.retry_budget.deposit()
        self.hedge_budget.deposit()

    def spend_retry(self, what: str) -> bool:
        """Take one retry of ``what`` from :attr:`retry_budget`.

        :returns: False when it is spent (a :class:`~htcluster.events.BudgetExhausted` event is emitted).
        """
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

    def hedges_sent(self, host: str) -> None:
        """Count one hedge sent to ``host`` (for :meth:`budget_stats`)."""
        with self._lock:
            self._hedges[host] = self._hedges.get(host, 0) + 1

    def budget_stats(self) -> BudgetStats:
        """Return the retry budget, the hedge cap and what was spent, apart from the per-host :meth:`stats`.

        :returns: ``{"retry": RetryBudget.stats(), "hedge": RetryBudget.stats() of the cap,
            "hedges": {host: hedges sent to it}, "exhausted": calls refused a retry or hedge
            by the retry budget, "failovers": int}``.
        """
        with self._lock:
            hedges, exhausted = dict(self._hedges), self._exhausted
        return {"retry": self.retry_budget.stats(), "hedge": self.hedge_budget.stats(), "hedges": hedges,
                "exhausted": exhausted, "failovers": self._failovers}

    def hedge_delay(self, hedge: Optional[float]) -> Optional[float]:
        """Return the seconds after which a call is hedged, given its ``hedge=`` (``None``: :attr:`hedge`).

        :param hedge: seconds (float > 0), 0 (no hedging for this call) or ``None`` (the default).
        :returns: seconds, or ``None`` when the call is not hedged.
        :raises ConfigError: ``hedge`` is negative, NaN, infinite or not a number.
        """
        if hedge is None:
            return self.hedge
        return seconds("hedge", hedge, allow_zero=True) or None

    def routed_call(self, method: str, args: Sequence[Any], namespace: Optional[str], hosts: Sequence[str],
                    ordered: bool, idempotent: bool, timeout: Optional[float], hedge: Optional[float]) -> Any:
        """Run one routed call through a :class:`~htcluster.failover.Failover`, hedged when asked and safe.

        :param hosts: the candidate hosts; ``ordered``: take the first usable one.
        :param idempotent: the call may be repeated (failover after sending, and hedging).
        :param timeout: seconds for the whole call (``None``: :attr:`call_timeout`).
        :param hedge: seconds before a hedge (``None``: :attr:`hedge`; 0: not hedged).
        :returns: the broker's answer (see :meth:`unicast` for the errors).
        """
        delay = self.hedge_delay(hedge)
        deadline = self.deadline(timeout)
        failover = Failover(self, method, hosts, ordered=ordered, deadline=deadline)  # type: ignore[arg-type]
        if delay is not None and idempotent:
            return hedged_call(self, failover, method, args, namespace, delay)
        return failover.run(lambda host: self.pools[host].call(method, *args, namespace=namespace, deadline=deadline),
                            idempotent=idempotent)


def _fraction(name: str, value: object) -> float:
    """Return ``value`` as a float in [0, 1], else raise :class:`ConfigError`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ConfigError(f"{name} must be a fraction between 0 and 1, got {value!r}")
    return float(value)


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
