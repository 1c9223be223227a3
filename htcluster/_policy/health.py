"""Host health, backoff and retry: the decisions of the routing layer, without I/O.

==========================  ==================================================
name                        what it decides
==========================  ==================================================
:class:`Backoff`            how long a failed host stays dead (seconds), from
                            its number of consecutive failures
:class:`Retry`              how many *other* hosts one call may still try
:class:`HostState`          one host's consecutive failures, ``dead_until``,
                            last error and whether its trial call is taken
:class:`HostHealth`         the states of many hosts behind one lock: which
                            are usable now, which comes back soonest, which
                            lag (lost their last hedge)
:func:`is_write`            whether a broker call changes data (routing of
                            ``Replicas``, retry safety; :mod:`htcluster._policy.classify`)
==========================  ==================================================

The policy in one sentence: a connection failure (``BrokerUnavailable``) marks a
host dead for an exponentially growing, jittered backoff; when it expires the
host gets one trial (half-open), which the routing layer spends on a short
``status()`` probe (:mod:`htcluster._routing.probe`), not on a user call, and whose
success revives it; answers from the broker (``ClientException``,
``TApplicationException``) are not failures, nor is a local ``PoolTimeout``.
A host that lost a hedge is not dead but *lags*: it ranks last for a backoff's
length, and its next answer ends that.  Gray failures (a host that answers, but slowly or with
transient errors) are not deaths: :attr:`HostHealth.outliers` (:mod:`htcluster._policy.outliers`)
sets aside hosts whose answers keep failing, within a cap, and ramps up hosts back from a probe;
:attr:`HostHealth.meter` (a load-aware balancer, :mod:`htcluster._policy.balance`) learns every
call's latency.  Clocks and random sources are injectable, so all of this is tested without sleeping.
"""
from __future__ import annotations

import logging
import math
import random
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Mapping, Optional, Union

from ..errors import ConfigError
from ..events import HostDown, HostEjected, HostUp
from .forks import renew_after_fork
from .outliers import Outliers

__all__ = ["Backoff", "Clock", "HostHealth", "HostState", "Retry"]

log = logging.getLogger(__name__)

#: A callable returning seconds (``time.monotonic`` by default): injectable so tests need not sleep.
Clock = Callable[[], float]


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: how long a failing host is left alone.

    The n-th consecutive failure keeps the host dead for
    ``min(cap, base * factor ** (n - 1))`` seconds, shortened by a random
    fraction of at most ``jitter`` so that many clients do not come back at
    the same instant.  With the defaults: about 1, 2, 4, 8, 16, 30, 30 ... s.

    :param base: seconds of the first backoff, > 0.
    :param factor: growth per further failure, >= 1.
    :param cap: upper bound in seconds, >= ``base``.
    :param jitter: fraction in [0, 1) of the delay that may be taken off at random.
    :raises ConfigError: a value is out of range.

    Example::

        Backoff(base=0.5, cap=10.0).delay(3, rng=random.Random(1))  # ~2.0 s
    """

    base: float = 1.0
    factor: float = 2.0
    cap: float = 30.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        for name in ("base", "factor", "cap", "jitter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"Backoff {name} must be a finite number, got {value!r}")
        if not self.base > 0:
            raise ConfigError(f"Backoff base must be > 0 seconds, got {self.base!r}")
        if not self.factor >= 1:
            raise ConfigError(f"Backoff factor must be >= 1, got {self.factor!r}")
        if not self.cap >= self.base:
            raise ConfigError(f"Backoff cap ({self.cap!r} s) must be >= base ({self.base!r} s)")
        if not 0 <= self.jitter < 1:
            raise ConfigError(f"Backoff jitter must be a fraction in [0, 1), got {self.jitter!r}")

    @classmethod
    def coerce(cls, value: Union["Backoff", float, Mapping[str, float], None]) -> "Backoff":
        """Normalise ``None`` (defaults), a number (the base in seconds) or a mapping of fields.

        :param value: the user's setting.
        :returns: a :class:`Backoff`.
        :raises ConfigError: the value is of none of these shapes, or out of range.
        """
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, bool):
            raise ConfigError(f"backoff must be a Backoff, seconds or a mapping, got {value!r}")
        if isinstance(value, (int, float)):
            return cls(base=float(value), cap=max(float(value), cls.cap))
        if isinstance(value, Mapping):
            unknown = set(value) - {"base", "factor", "cap", "jitter"}
            if unknown:
                raise ConfigError(f"unknown Backoff fields {sorted(unknown)}; allowed: base, factor, cap, jitter")
            return cls(**value)
        raise ConfigError(f"backoff must be a Backoff, seconds or a mapping, got {value!r}")

    def delay(self, failures: int, rng: Optional[random.Random] = None) -> float:
        """Return the seconds a host stays dead after its ``failures``-th consecutive failure.

        :param failures: consecutive failures so far, >= 1 (0 gives 0.0).
        :param rng: random source for the jitter (``random`` module's by default).
        :returns: seconds, in ``[(1 - jitter) * d, d]`` with ``d`` the capped exponential.
        """
        if failures <= 0:
            return 0.0
        # the exponent is bounded so that huge failure counts cannot overflow
        raw = min(self.cap, self.base * self.factor ** min(failures - 1, 64))
        draw = (rng or random).random()
        return raw * (1.0 - self.jitter * draw)


@dataclass(frozen=True)
class Retry:
    """How many other hosts one call may still try after a connection failure.

    A value, never changed in place: :meth:`increment` returns the next one,
    so one instance is shared by every thread.

    :param total: other hosts to try; ``None``: each host of the call once.
    :param history: the hosts that failed so far in this call, in order.
    :raises ConfigError: ``total`` is negative at construction by the user.

    Example::

        retry = Retry.from_int(2)
        retry = retry.increment("ht1:15867")   # one more host allowed
        retry.exhausted                         # False
    """

    total: Optional[int] = None
    history: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def from_int(cls, value: Union["Retry", int, bool, None]) -> "Retry":
        """Normalise user input: a ``Retry``; ``None``/``True`` (every host once);
        ``False`` (never fail over); an int >= 0 (that many other hosts).

        :param value: the user's setting.
        :returns: a :class:`Retry`.
        :raises ConfigError: a negative number or another type.
        """
        if value is None or value is True:
            return cls()
        if value is False:
            return cls(total=0)
        if isinstance(value, cls):
            return value
        if isinstance(value, int):
            if value < 0:
                raise ConfigError(f"retry must be >= 0 other hosts, got {value}")
            return cls(total=value)
        raise ConfigError(f"retry must be a Retry, an int >= 0, a bool or None, got {value!r}")

    def increment(self, host: str) -> "Retry":
        """Return the Retry that follows a failure on ``host`` (``'host:port'``), one host fewer to try."""
        total = None if self.total is None else self.total - 1
        return replace(self, total=total, history=self.history + (host,))

    @property
    def exhausted(self) -> bool:
        """True when no other host may be tried any more."""
        return self.total is not None and self.total < 0


@dataclass(frozen=True)
class HostState:
    """What is known about one host: a value, replaced as a whole under :class:`HostHealth`'s lock.

    :param failures: consecutive connection failures (0: the host is live).
    :param dead_until: clock time (seconds) until which the host is not tried.
    :param trial: the one trial call after the backoff is taken by some caller.
    :param error: the last connection failure, for error messages.
    :param strikes: the failures before the probe that revived the host: live
        again, but a user call that fails before one succeeds resumes the
        backoff from there (a host that answers probes and fails calls does
        not come back every ``base`` seconds).
    """

    failures: int = 0
    dead_until: float = 0.0
    trial: bool = False
    error: Optional[BaseException] = field(default=None, compare=False)
    strikes: int = 0

    @property
    def live(self) -> bool:
        """True when the host has not failed since its last success."""
        return self.failures == 0

    def usable(self, now: float) -> bool:
        """True when a call may go to the host at clock time ``now`` (seconds)."""
        return self.live or (now >= self.dead_until and not self.trial)


#: The state of a host that has not failed: shared, so that "is it live?" is an identity test.
LIVE = HostState()


class HostHealth:
    """The :class:`HostState` of many hosts, one lock around all of them.

    The usage protocol of a call: the router :meth:`claim` s a host (refused
    when it is dead or its trial is taken); the attempt on it reports exactly
    one of :meth:`succeeded` (the broker answered, even with an error),
    :meth:`failed` (connection failure), :meth:`lagged` (it lost a hedge) or
    :meth:`release` (nothing learnt: the caller's deadline, a bad argument, a
    local limit, an interrupt).  The attempt (:mod:`htcluster._routing.attempt`)
    is the only caller of these verbs.  The lock is re-created in a forked child.

    :param hosts: the known hosts (others are added on first use).
    :param backoff: a :class:`Backoff` or anything :meth:`Backoff.coerce` takes.
    :param clock: callable returning seconds (``time.monotonic`` by default).
    :param rng: random source for jitter (a private ``random.Random`` by default).
    """

    def __init__(self, hosts: Iterable[str] = (), backoff: Union[Backoff, float, Mapping[str, float], None] = None,
                 clock: Optional[Clock] = None, rng: Optional[random.Random] = None,
                 listeners: Any = None, outliers: Optional[Outliers] = None) -> None:
        self.backoff = Backoff.coerce(backoff)
        self.clock: Clock = clock or time.monotonic
        self.rng = rng or random.Random()
        #: Ejection of hosts whose answers keep failing, and slow start (:class:`~htcluster._policy.outliers.Outliers`).
        self.outliers = outliers if outliers is not None else Outliers(clock=self.clock, rng=self.rng)
        #: What learns each call's latency (a :class:`~htcluster._policy.balance.Meter`: ``observe``,
        #: ``forget``), or ``None``; set by the router when its balancer learns.
        self.meter: Any = None
        self._lock = threading.Lock()
        renew_after_fork(self)
        self._states: dict[str, HostState] = {host: LIVE for host in hosts}
        self._down: set[str] = set()  # hosts whose state is not LIVE (failed, or revived by a probe)
        self._lag: dict[str, tuple[int, float]] = {}  # host -> (hedges lost in a row, ranked last until)
        self._tracked: Optional[frozenset[str]] = None  # set by track(): verdicts on other hosts are ignored
        #: an :class:`~htcluster.events.Listeners` told of ``HostDown``/``HostUp``, or ``None``.
        self.listeners = listeners

    def after_fork(self) -> None:
        """Re-create the lock in a forked child (a parent thread may have held it at the fork)."""
        self._lock = threading.Lock()

    def _set(self, host: str, state: HostState) -> None:
        """Replace the state of ``host`` (the lock held)."""
        self._states[host] = state
        if state is LIVE:
            self._down.discard(host)
        else:
            self._down.add(host)

    @property
    def all_live(self) -> bool:
        """True when no host has failed since its last success, nor lags after a lost hedge, nor is
        ejected or warming up (no lock)."""
        return not self._down and not self._lag and not self.outliers.active

    def track(self, hosts: Iterable[str]) -> tuple[str, ...]:
        """Follow exactly ``hosts`` from now on (a membership change): new hosts start live, the others are forgotten.

        A forgotten host's state, backoff and lag are dropped, and what calls
        still in flight on it report later (:meth:`failed`, :meth:`succeeded`,
        :meth:`lagged`) is ignored, so no event is emitted for it; a host
        tracked again starts live.  Before the first ``track`` every host is
        followed (the hosts given at construction, others on first use).

        A new host is treated like a host that just answered a probe: it starts
        its slow start (:meth:`Outliers.revived <htcluster._policy.outliers.Outliers.revived>`,
        when ``slow_start`` is set) and the :attr:`meter` knows nothing of it (the prior,
        never a cost left from an earlier stay); the meter forgets the removed hosts too.

        :param hosts: ``'host:port'`` keys.
        :returns: the hosts new to this object, in the order given.
        """
        order = list(dict.fromkeys(hosts))
        keep = frozenset(order)
        with self._lock:
            before = self._tracked if self._tracked is not None else frozenset(self._states)
            gone = [h for h in self._states if h not in keep]
            for host in gone:
                del self._states[host]
                self._down.discard(host)
            for host in [h for h in self._lag if h not in keep]:
                del self._lag[host]
            for host in keep:
                self._states.setdefault(host, LIVE)
            self._tracked = keep
        new = tuple(h for h in order if h not in before)
        self.outliers.forget(keep)
        meter = self.meter
        for host in new:
            self.outliers.revived(host)  # ramps up like a host back from a probe (nothing without slow_start)
            if meter is not None:
                meter.forget(host)
        if meter is not None:
            for host in before - keep:
                meter.forget(host)
        return new

    def _ignored(self, host: str) -> bool:
        """True when ``host`` was forgotten by :meth:`track` (no lock: one attribute read)."""
        tracked = self._tracked
        return tracked is not None and host not in tracked

    def claim_due(self, hosts: Iterable[str]) -> list[str]:
        """Take the trial of every host of ``hosts`` whose backoff ended and whose trial is free.

        The caller probes them (all at once) and an attempt reports each verdict.

        :returns: the hosts claimed, in the order given (empty when all are live).
        """
        if not self._down:
            return []
        due = []
        with self._lock:
            now = self.clock()
            for host in hosts:
                state = self._states.get(host, LIVE)
                if not state.live and not state.trial and now >= state.dead_until:
                    self._set(host, replace(state, trial=True))
                    due.append(host)
        return due

    def state(self, host: str) -> HostState:
        """Return the current state of ``host`` (a fresh one if never seen)."""
        with self._lock:
            return self._states.get(host, LIVE)

    def usable(self, host: str) -> bool:
        """True when ``host`` is live, or its backoff expired and nobody holds its trial."""
        state = self._states.get(host, LIVE)
        if state is LIVE:  # the common case, read without the lock (one dict read is atomic)
            return True
        with self._lock:
            return self._states.get(host, LIVE).usable(self.clock())

    def claim(self, host: str, force: bool = False) -> bool:
        """Take ``host`` for one call; a dead host whose backoff expired gives its trial to one caller.

        :param force: take the host even when it is dead (every host is dead
            and this one comes back soonest).
        :returns: True if the caller may call the host and must report the outcome.
        """
        if self._states.get(host, LIVE) is LIVE:
            return True
        with self._lock:
            state = self._states.get(host, LIVE)
            if state.live:
                return True
            if not force and not state.usable(self.clock()):
                return False
            self._set(host, replace(state, trial=True))
            return True

    def soonest(self, hosts: Iterable[str]) -> Optional[str]:
        """Return the host of ``hosts`` whose backoff ends first (``None`` for no hosts)."""
        with self._lock:
            candidates = [(self._states.get(h, LIVE).dead_until, i, h) for i, h in enumerate(hosts)]
        return min(candidates)[2] if candidates else None

    def measured(self, host: str, took: float, failed: bool) -> None:
        """Record that a call on ``host`` took ``took`` seconds (``failed``: it failed, or answered a
        transient error), for the :attr:`meter` (a load-aware balancer); nothing without one."""
        meter = self.meter
        if meter is not None and not self._ignored(host):
            meter.observe(host, took, failed)

    def succeeded(self, host: str, probe: bool = False, transient: Optional[BaseException] = None) -> None:
        """Record that ``host`` answered (a broker error is an answer too).

        :param host: ``'host:port'``.
        :param transient: the answer, when it was a transient broker error
            (:func:`~htcluster._policy.classify.is_transient`): the host is alive, but
            such answers in a row eject it for a while (:attr:`outliers`, a
            :class:`~htcluster.events.HostEjected` event).
        :param probe: the answer was a probe's: the host is live again but keeps its
            failures as strikes, so a user call that fails before one succeeds resumes
            the backoff from there (a host that answers probes and fails calls does not
            come back every ``base`` seconds).  Otherwise its failure count (and lag) restart at 0.
        """
        if self._ignored(host):
            return
        if probe:
            with self._lock:
                was = self._states.get(host, LIVE)
                if was.live:
                    return
                self._set(host, HostState(strikes=was.failures))
            self.outliers.revived(host)
            meter = self.meter
            if meter is not None:
                meter.forget(host)  # unmeasured again: the prior, not its cost from before it failed
            if self.listeners:
                self.listeners.emit(HostUp(host))
            return
        if transient is None and self.outliers.clean(host):
            if self._states.get(host) is LIVE and host not in self._lag:
                return
        elif self.outliers.answered(host, transient is not None):
            ejected_for = self.outliers.ejected(host)
            log.warning("%s ejected for %.2f s: its answers keep failing (%s)", host, ejected_for, transient)
            if self.listeners:
                self.listeners.emit(HostEjected(host, transient, ejected_for))
        with self._lock:
            self._lag.pop(host, None)
            was = self._states.get(host, LIVE)
            self._set(host, LIVE)
        if was is not LIVE and was.failures and self.listeners:
            self.listeners.emit(HostUp(host))

    def failed(self, host: str, error: Optional[BaseException] = None) -> float:
        """Record a connection failure of ``host``; return the seconds it now stays dead.

        Failures of calls that were already in flight when the host was marked
        dead do not lengthen the backoff: only a live host or a trial escalates.

        :param host: ``'host:port'``.
        :param error: the failure, kept for :meth:`describe` and ``NoHostAvailable``.
        :returns: seconds (float) until the host may be tried again (0.0 for a host forgotten by :meth:`track`).
        """
        if self._ignored(host):
            return 0.0
        with self._lock:
            now = self.clock()
            state = self._states.get(host, LIVE)
            if not state.live and not state.trial and now < state.dead_until:
                self._set(host, replace(state, error=error or state.error))
                return state.dead_until - now
            failures = max(state.failures, state.strikes) + 1
            delay = self.backoff.delay(failures, self.rng)
            self._set(host, HostState(failures, now + delay, False, error))
        if self.listeners:
            self.listeners.emit(HostDown(host, error, failures, delay))
        return delay

    def is_trial(self, host: str) -> bool:
        """True when ``host`` is not live: a caller that claimed it holds its trial (and probes it first)."""
        return self._states.get(host, LIVE) is not LIVE and not self.state(host).live

    def lagged(self, host: str) -> float:
        """Record that ``host`` lost a hedge (another host answered first); return the seconds it ranks last.

        A lagging host is not dead: it is still used when no other host is
        usable, and a call it answers ends the lag.  Consecutive lost hedges
        lengthen the lag as :class:`Backoff` lengthens a backoff.

        :param host: ``'host:port'``.
        :returns: seconds (float) during which :meth:`lagging` is true.
        """
        if self._ignored(host):
            return 0.0
        with self._lock:
            count = self._lag.get(host, (0, 0.0))[0] + 1
            delay = self.backoff.delay(count, self.rng)
            self._lag[host] = (count, self.clock() + delay)
        return delay

    def lagging(self, host: str) -> bool:
        """True while ``host`` lost its last hedge less than its lag ago (see :meth:`lagged`)."""
        if not self._lag:
            return False
        with self._lock:
            lag = self._lag.get(host)
            return lag is not None and self.clock() < lag[1]

    def release(self, host: str) -> None:
        """End a claim that taught nothing about the host (its trial, if any, goes to the next caller)."""
        with self._lock:
            state = self._states.get(host)
            if state is not None and state.trial:
                self._set(host, replace(state, trial=False))

    def down(self) -> dict[str, HostState]:
        """Return ``{host: state}`` of the hosts that are not live, for monitoring."""
        with self._lock:
            return {host: s for host, s in self._states.items() if not s.live}

    def describe(self, host: str) -> str:
        """Return one line on why ``host`` is not used: failures, seconds left, last error."""
        state = self.state(host)
        if state.live:
            return f"{host} is live"
        left = max(0.0, state.dead_until - self.clock())
        cause = f"{type(state.error).__name__}: {state.error}" if state.error else "unknown error"
        return (f"{host} is down after {state.failures} consecutive failure(s), "
                f"retried in {left:.2f} s; last error {cause}")
