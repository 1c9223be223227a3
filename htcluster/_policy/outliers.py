"""Gray failures: outlier ejection of hosts whose answers keep failing, and slow start after recovery.

:class:`Outliers` is part of :class:`~htcluster._policy.health.HostHealth`
and, like it, pure bookkeeping (clock and random source injected, no I/O):

* **Ejection.**  A host whose answers are broker errors of the transient kind
  (:data:`~htcluster._policy.classify.TRANSIENT_CODES`: the broker could not
  reach the cluster: a gateway failure, in Envoy's terms)
  ``consecutive_gateway_failure`` times in a row is set aside for
  ``base_ejection_time`` seconds, doubled at each further ejection (capped at
  ``max_ejection_time``), with jitter; any other answer ends its streak (the
  names and meaning of Envoy's outlier detection).
  Connection failures are not counted here: they put the host in its backoff
  (:class:`~htcluster._policy.health.Backoff`), as always.
* **The ejection cap.**  Of the candidates of one call, at most
  ``floor(max_ejection * candidates)`` are set aside (Envoy's
  ``max_ejection_percent``; default half); when more are ejected, those with
  the longest streaks and most ejections stay aside and the least bad keep
  serving (panic mode).  A single candidate is never set aside.
* **Slow start.**  A host that answered a probe after a backoff, or that was
  just added to the members (``add``, ``set_hosts``), gets, for
  ``slow_start`` seconds, a share of its traffic that grows linearly from
  :data:`MIN_RAMP` to all of it: each balanced choice leaves it out with
  probability ``1 - ramp`` (Envoy's slow start, Netflix's probation of cold
  servers).  ``slow_start=0`` (the default) turns it off.
* **Slowness is not a failure.**  A slow host is never ejected nor marked
  down for being slow: a load-aware balancer (``balance="p2c"``) ranks it
  down by its latency score instead.
"""
from __future__ import annotations

import math
import random
import threading
import time
from typing import Callable, Iterable, Optional, Sequence

from .._validate import fraction, seconds
from ..errors import ConfigError
from .forks import renew_after_fork

__all__ = ["DEFAULT_BASE_EJECTION_TIME", "DEFAULT_CONSECUTIVE_GATEWAY_FAILURE", "DEFAULT_MAX_EJECTION",
           "DEFAULT_MAX_EJECTION_TIME", "MIN_RAMP", "Outliers"]

#: Share of the candidates that may be ejected at once (Envoy's ``max_ejection_percent``, here a fraction).
DEFAULT_MAX_EJECTION = 0.5
#: Transient broker errors in a row that eject a host (Envoy's ``consecutive_gateway_failure``).
DEFAULT_CONSECUTIVE_GATEWAY_FAILURE = 5
#: Seconds of a first ejection, doubled at each further one (Envoy's ``base_ejection_time``).
DEFAULT_BASE_EJECTION_TIME = 10.0
#: Seconds an ejection lasts at most (Envoy's ``max_ejection_time``).
DEFAULT_MAX_EJECTION_TIME = 300.0
#: The share of its traffic a slow-starting host gets at first.
MIN_RAMP = 0.1


class Outliers:
    """Who is set aside for failing answers, and who is warming up after a recovery; one lock.

    :param max_ejection: fraction (0 to 1) of a call's candidates that may be ejected at once (0.5).
    :param slow_start: seconds (>= 0) of the traffic ramp of a host back from a probe (0: off).
    :param consecutive_gateway_failure: transient broker errors in a row that eject a host (int >= 1, 5).
    :param base_ejection_time: seconds (> 0) of a first ejection (10; doubled each time, at most
        ``max_ejection_time``).
    :param max_ejection_time: seconds (>= ``base_ejection_time``) an ejection lasts at most (300).
    :param clock: callable returning seconds (``time.monotonic``).
    :param rng: random source of the jitter.
    :raises ConfigError: a value out of range.

    Example::

        outliers = Outliers(consecutive_gateway_failure=2, clock=ManualClock())
        outliers.answered("a:1", error=True); outliers.answered("a:1", error=True)   # ejected
        outliers.serving(["a:1", "b:1"], random.Random())   # ['b:1']
    """

    def __init__(self, max_ejection: float = DEFAULT_MAX_EJECTION, slow_start: float = 0.0,
                 consecutive_gateway_failure: int = DEFAULT_CONSECUTIVE_GATEWAY_FAILURE,
                 base_ejection_time: float = DEFAULT_BASE_EJECTION_TIME,
                 max_ejection_time: float = DEFAULT_MAX_EJECTION_TIME,
                 clock: Optional[Callable[[], float]] = None, rng: Optional[random.Random] = None) -> None:
        self.max_ejection = fraction("max_ejection", max_ejection)
        self.slow_start = seconds("slow_start", slow_start, allow_zero=True)
        count = consecutive_gateway_failure
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ConfigError(f"consecutive_gateway_failure must be an int >= 1 (the transient broker errors in a "
                              f"row that eject a host; default {DEFAULT_CONSECUTIVE_GATEWAY_FAILURE}), got {count!r}")
        self.consecutive_gateway_failure = count
        self.base_ejection_time = seconds("base_ejection_time", base_ejection_time)
        self.max_ejection_time = seconds("max_ejection_time", max_ejection_time)
        if self.max_ejection_time < self.base_ejection_time:
            raise ConfigError(f"max_ejection_time ({max_ejection_time!r} s) must be >= base_ejection_time "
                              f"({base_ejection_time!r} s): raise max_ejection_time or lower base_ejection_time")
        self.clock = clock or time.monotonic
        self.rng = rng or random.Random()
        self._lock = threading.Lock()
        renew_after_fork(self)
        self._streak: dict[str, int] = {}  # host -> transient errors in a row
        self._ejections: dict[str, int] = {}  # host -> ejections since its last good answer
        self._ejected: dict[str, float] = {}  # host -> clock time its ejection ends
        self._warm: dict[str, float] = {}  # host -> clock time it came back (slow start)

    def after_fork(self) -> None:
        """Re-create the lock in a forked child (a parent thread may have held it at the fork)."""
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        """True while some host is ejected or warming up (no lock: two dict reads)."""
        return bool(self._ejected) or bool(self._warm)

    def clean(self, host: str) -> bool:
        """True when ``host`` has no streak of errors and no ejection on record (no lock)."""
        return host not in self._streak and host not in self._ejections

    def answered(self, host: str, error: bool) -> bool:
        """Record an answer of ``host``: ``error`` when it was a transient broker error.

        :returns: True when this answer ejected the host.
        """
        with self._lock:
            if not error:
                self._streak.pop(host, None)
                self._ejections.pop(host, None)
                return False
            streak = self._streak.get(host, 0) + 1
            if streak < self.consecutive_gateway_failure:
                self._streak[host] = streak
                return False
            self._streak.pop(host, None)
            count = self._ejections.get(host, 0) + 1
            self._ejections[host] = count
            length = min(self.max_ejection_time, self.base_ejection_time * 2.0 ** min(count - 1, 32))
            self._ejected[host] = self.clock() + length * (1.0 - 0.2 * self.rng.random())
            return True

    def revived(self, host: str) -> None:
        """Start the slow start of ``host``, which just answered a probe or joined the members
        (nothing when ``slow_start`` is 0)."""
        if self.slow_start > 0:
            with self._lock:
                self._warm[host] = self.clock()

    def ejected(self, host: str) -> float:
        """Return the seconds left of ``host``'s ejection (0.0 when it is not ejected)."""
        until = self._ejected.get(host)
        return 0.0 if until is None else max(0.0, until - self.clock())

    def ramp(self, host: str) -> float:
        """Return the share (``MIN_RAMP`` to 1.0) of its traffic ``host`` gets now (1.0 when not warming)."""
        since = self._warm.get(host)
        if since is None:
            return 1.0
        elapsed = self.clock() - since
        if elapsed >= self.slow_start:
            with self._lock:
                self._warm.pop(host, None)
            return 1.0
        return max(MIN_RAMP, elapsed / self.slow_start)

    def serving(self, hosts: Sequence[str], rng: random.Random, total: Optional[int] = None,
                ramp: bool = True) -> list[str]:
        """Return the hosts of ``hosts`` that take calls now: ejected ones left out within the cap,
        warming ones left out at random by their ramp (never all of them).

        :param hosts: usable candidates.
        :param rng: the random source of the slow-start draw.
        :param total: the number of candidates the cap is a share of (default ``len(hosts)``).
        :param ramp: apply slow start (False for an ordered plan: the write order stays).
        :returns: a list, never empty when ``hosts`` is not.
        """
        if not self._ejected and not self._warm:
            return list(hosts)
        now = self.clock()
        with self._lock:
            for host in [h for h, until in self._ejected.items() if until <= now]:
                del self._ejected[host]
            out = [h for h in hosts if h in self._ejected]
            cap = math.floor(self.max_ejection * (len(hosts) if total is None else total) + 1e-9)
            if len(out) > cap:  # panic: only the worst stay aside
                out.sort(key=lambda h: (self._ejections.get(h, 0), self._ejected[h]), reverse=True)
                out = out[:cap]
        left = [h for h in hosts if h not in out] or list(hosts)
        if ramp and self._warm:
            kept = [h for h in left if (share := self.ramp(h)) >= 1.0 or rng.random() < share]
            left = kept or left
        return left

    def forget(self, keep: Iterable[str]) -> None:
        """Drop what is known of every host but ``keep`` (a membership change)."""
        keep = frozenset(keep)
        with self._lock:
            for table in (self._streak, self._ejections, self._ejected, self._warm):
                for host in [h for h in table if h not in keep]:
                    del table[host]

    def describe(self, host: str) -> dict[str, float]:
        """Return ``{"ejected_for": seconds, "ramp": share, "error_streak": n}`` of ``host``, for ``stats()``."""
        return {"ejected_for": self.ejected(host), "ramp": self.ramp(host),
                "error_streak": float(self._streak.get(host, 0))}

    def __repr__(self) -> str:
        return (f"<Outliers max_ejection={self.max_ejection:g} slow_start={self.slow_start:g}s "
                f"{len(self._ejected)} ejected, {len(self._warm)} warming>")
