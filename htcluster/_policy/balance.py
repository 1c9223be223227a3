"""Load-aware balancing: power of two choices over a peak-sensitive latency score (``balance="p2c"``).

:class:`P2CBalancer` is a balancer of :mod:`htcluster._policy.plans` (it has
``pick``) that also learns: the attempt of every call tells it, through
:meth:`HostHealth.measured <htcluster._policy.health.HostHealth.measured>`,
how long the host took and whether it failed.  Its choice is Finagle's and
linkerd's P2C with Peak EWMA (tower's ``PeakEwma``):

* each host has a *cost*, a latency in seconds that jumps up to any slower
  answer at once (peak-sensitive) and comes down towards faster answers as an
  exponentially weighted moving average whose weight depends on the time
  between answers (``decay_time`` seconds, Finagle's ``decayTime``: an answer
  ``decay_time`` seconds after the previous one replaces about 63 % of the cost);
* a cost that has not been measured for a while decays towards zero by the
  same time constant, so a host that was once slow is tried again now and
  then (every few ``decay_time`` seconds), not avoided forever;
* each faster answer also closes at least ``answer_pull`` (10 %) of the gap
  between the cost and itself, however close in time it came: on a busy host
  answers come a fraction of a millisecond apart, so with the time weight
  alone one stall (a pause of the client's own threads, a collection) would
  stand as the host's cost for about ``decay_time`` seconds and send calls to
  a truly slower host; with it, a few dozen normal answers wash a stall out.
  A host that is not called keeps fading by time alone, so re-measuring a
  slow host is as frequent as before;
* a failure (a connection failure, a broker's transient error) counts as an
  answer of at least ``failure_penalty`` seconds: a host that fails fast does
  not attract traffic;
* a host never measured (new, or back after a probe) gets a prior: the
  median cost of the measured candidates, so it is neither flooded (a cost
  of 0 would win every choice) nor starved;
* the score of a host is ``cost * (in-flight calls + 1)``; two distinct
  candidates are drawn at random and the lower score wins.

Everything is injected (``clock``, the ``rng`` of :meth:`P2CBalancer.pick`),
so the policy is tested without sockets or sleeping.
"""
from __future__ import annotations

import math
import random
import threading
import time
from typing import Callable, Mapping, Optional, Protocol, Sequence, Union, runtime_checkable

from .._validate import fraction, seconds
from ..errors import ConfigError
from .forks import renew_after_fork
from .plans import Balancer, CachedBalancer, Load

__all__ = ["BALANCES", "DEFAULT_ANSWER_PULL", "DEFAULT_DECAY_TIME", "DEFAULT_FAILURE_PENALTY", "DEFAULT_PRIOR", "Meter",
           "P2CBalancer", "PeakEwma", "balance_name", "coerce_balancer", "costs_of"]

#: Seconds of the cost's time constant (Finagle's and linkerd's ``decayTime``, 10 s).
DEFAULT_DECAY_TIME = 10.0
#: Seconds a failed call counts as, at least, in the cost of its host.
DEFAULT_FAILURE_PENALTY = 1.0
#: Seconds of the cost of a never-measured host when no candidate was measured either.
DEFAULT_PRIOR = 0.001
#: The fraction of the gap to a faster answer that each answer closes, at least (see :class:`P2CBalancer`).
DEFAULT_ANSWER_PULL = 0.1
#: The ``balance=`` names and what they build.
BALANCES = ("cached", "p2c")


@runtime_checkable
class Meter(Protocol):
    """What learns from every call's outcome (a load-aware balancer); fed by ``HostHealth.measured``."""

    def observe(self, host: str, took: float, failed: bool) -> None:
        """Learn that a call on ``host`` took ``took`` seconds (``failed``: it failed)."""

    def forget(self, host: str) -> None:
        """Drop what is known of ``host`` (it came back after a probe, or left the members)."""


class PeakEwma:
    """One host's cost: a peak-sensitive, time-decayed moving average of its latency, in seconds.

    A value object changed only under :class:`P2CBalancer`'s lock.

    :param cost: seconds, the current estimate.
    :param stamp: clock time (seconds) of the last update.
    """

    __slots__ = ("cost", "stamp")

    def __init__(self, cost: float, stamp: float) -> None:
        self.cost, self.stamp = cost, stamp

    def decayed(self, now: float, decay: float) -> float:
        """Return the cost at clock time ``now``: it fades towards 0 with time constant ``decay`` seconds."""
        elapsed = now - self.stamp
        if elapsed <= 0:
            return self.cost
        return self.cost * math.exp(-elapsed / decay)

    def update(self, took: float, now: float, decay: float, pull: float = 0.0) -> None:
        """Fold in one answer of ``took`` seconds at clock time ``now``: a slower one is taken at once (peak),
        a faster one pulls the cost down by the weight its distance in time from the last answer gives,
        and by at least ``pull`` (a fraction) of the difference."""
        if took >= self.cost:
            self.cost = took
        else:
            weight = min(math.exp(-max(0.0, now - self.stamp) / decay), 1.0 - pull)
            self.cost = self.cost * weight + took * (1.0 - weight)
        self.stamp = now

    def __repr__(self) -> str:
        return f"<PeakEwma {self.cost * 1000:.3f} ms>"


class P2CBalancer:
    """Power of two choices over ``peak-EWMA cost x (in-flight + 1)``: the ``balance="p2c"`` balancer.

    Thread-safe; one instance belongs to one routing object (it learns that
    object's hosts).  See the module's text for the policy.

    :param decay_time: seconds (float > 0), the time constant of each host's cost (default 10; Finagle's
        ``decayTime``): shorter forgets a slow spell sooner, longer smooths more.
    :param failure_penalty: seconds (float >= 0) a failed call counts as, at least (default 1).
    :param prior: seconds (float > 0) of a never-measured host when no candidate is measured (default 0.001).
    :param answer_pull: fraction (0 to 1) of the gap to a faster answer that each answer closes at least
        (default 0.1; 0: the time weight alone, as tower's and Finagle's ``PeakEwma``).
    :param clock: callable returning seconds (``time.monotonic``).
    :raises ConfigError: a value is not a finite positive number of seconds.

    Example::

        balancer = P2CBalancer(clock=ManualClock())
        balancer.observe("ht1:15867", 0.0002, failed=False)
        balancer.observe("ht2:15867", 0.0200, failed=False)
        balancer.pick(["ht1:15867", "ht2:15867"], lambda h: (1, 0), random.Random(1))   # 'ht1:15867'
    """

    def __init__(self, decay_time: float = DEFAULT_DECAY_TIME, failure_penalty: float = DEFAULT_FAILURE_PENALTY,
                 prior: float = DEFAULT_PRIOR, clock: Optional[Callable[[], float]] = None,
                 answer_pull: float = DEFAULT_ANSWER_PULL) -> None:
        self.decay_time = seconds("decay_time", decay_time)
        self.failure_penalty = seconds("p2c failure_penalty", failure_penalty, allow_zero=True)
        self.prior = seconds("p2c prior", prior)
        self.answer_pull = fraction("answer_pull", answer_pull)
        self.clock = clock or time.monotonic
        self._costs: dict[str, PeakEwma] = {}
        self._lock = threading.Lock()
        renew_after_fork(self)

    def after_fork(self) -> None:
        """Re-create the lock in a forked child (a parent thread may have held it at the fork)."""
        self._lock = threading.Lock()

    def observe(self, host: str, took: float, failed: bool) -> None:
        """Fold one call's outcome into ``host``'s cost.

        :param host: ``'host:port'``.
        :param took: seconds the call took (float >= 0).
        :param failed: the call failed (it counts as at least ``failure_penalty`` seconds).
        """
        if failed:
            took = max(took, self.failure_penalty)
        now = self.clock()
        with self._lock:
            ewma = self._costs.get(host)
            if ewma is None:
                self._costs[host] = PeakEwma(took, now)
            else:
                ewma.cost = ewma.decayed(now, self.decay_time)
                ewma.update(took, now, self.decay_time, self.answer_pull)

    def forget(self, host: str) -> None:
        """Drop ``host``'s cost: it is unmeasured again and gets the prior (a host back after a probe)."""
        with self._lock:
            self._costs.pop(host, None)

    def costs(self, hosts: Sequence[str]) -> dict[str, float]:
        """Return ``{host: cost in seconds}`` of ``hosts`` now, the prior standing in for the unmeasured ones."""
        now = self.clock()
        with self._lock:
            known = {h: e.decayed(now, self.decay_time) for h in hosts if (e := self._costs.get(h)) is not None}
        if len(known) == len(hosts):
            return known
        prior = _median(sorted(known.values())) if known else self.prior
        return {h: known.get(h, prior) for h in hosts}

    def scores(self, hosts: Sequence[str], load: Callable[[str], Load]) -> dict[str, float]:
        """Return ``{host: cost x (in-flight + 1)}`` (seconds), what :meth:`pick` compares.

        :param load: ``host -> (idle, in_use)``; ``in_use`` counts the calls in flight.
        """
        return {h: cost * (load(h)[1] + 1) for h, cost in self.costs(hosts).items()}

    def pick(self, hosts: Sequence[str], load: Callable[[str], Load], rng: random.Random) -> str:
        """Draw two distinct hosts of ``hosts`` at random and return the one of lower score.

        :param hosts: usable candidate hosts (non-empty).
        :param load: ``host -> (idle, in_use)``.
        :param rng: the random source of the draw (and of ties).
        :returns: the chosen host.
        """
        n = len(hosts)
        if n == 1:
            return hosts[0]
        i = rng.randrange(n)
        j = rng.randrange(n - 1)
        if j >= i:
            j += 1
        a, b = hosts[i], hosts[j]
        score = self.scores((a, b), load)
        return a if score[a] <= score[b] else b

    def __repr__(self) -> str:
        return f"P2CBalancer(decay_time={self.decay_time:g}, failure_penalty={self.failure_penalty:g})"


def _median(values: Sequence[float]) -> float:
    n = len(values)
    mid = n // 2
    return values[mid] if n % 2 else (values[mid - 1] + values[mid]) / 2.0


def coerce_balancer(balance: Union[str, None], balancer: Optional[Balancer],
                    clock: Optional[Callable[[], float]] = None, decay_time: Optional[float] = None) -> Balancer:
    """Normalise the ``balance=`` (a name) and ``balancer=`` (an object) options into one balancer.

    :param balance: ``"cached"`` (lupyne's policy, the default), ``"p2c"``, or ``None``.
    :param balancer: an object with ``pick`` (wins when given; ``balance`` must then be unset).
    :param clock: the clock of a :class:`P2CBalancer` built here.
    :param decay_time: seconds, the time constant of a :class:`P2CBalancer` built here (``None``: 10 s);
        it tunes ``balance="p2c"`` only.
    :returns: the balancer.
    :raises ConfigError: an unknown name, both options given, a ``decay_time`` that is not a finite
        positive number of seconds, or one given without ``balance="p2c"``.
    """
    if decay_time is not None and balance != "p2c":
        seconds("decay_time", decay_time)
        raise ConfigError(f"decay_time={decay_time!r} tunes balance='p2c' only (the balancer here is "
                          f"{balance or ('a custom balancer' if balancer is not None else 'cached')!s}): "
                          "add balance='p2c' or drop decay_time")
    if balancer is not None:
        if balance is not None:
            raise ConfigError("give balance= (a name) or balancer= (an object), not both")
        return balancer
    if balance is None or balance == "cached":
        return CachedBalancer()
    if balance == "p2c":
        return P2CBalancer(clock=clock) if decay_time is None else P2CBalancer(decay_time, clock=clock)
    raise ConfigError(f"balance must be one of {', '.join(BALANCES)}, got {balance!r}")


def balance_name(balancer: Balancer) -> str:
    """Return the ``balance=`` name of ``balancer`` (``"custom"`` for another object)."""
    if isinstance(balancer, P2CBalancer):
        return "p2c"
    if isinstance(balancer, CachedBalancer):
        return "cached"
    return "custom"


def costs_of(balancer: Balancer, hosts: Sequence[str]) -> Mapping[str, float]:
    """Return the cost of each host when ``balancer`` keeps costs (a :class:`P2CBalancer`), else ``{}``."""
    return balancer.costs(hosts) if isinstance(balancer, P2CBalancer) else {}
