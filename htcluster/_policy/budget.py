"""Retry budget: how much extra traffic (failovers, hedges) one routing object may add.

A :class:`RetryBudget` follows the shape of Finagle's ``RetryBudget``: every
routed call *deposits* ``ratio`` of a retry, every retry (a failover to
another host, a hedge, a probe of a host still in its backoff) *withdraws* a
whole one, and a reserve of ``floor`` retries per second lets a client that
has just started (or calls rarely) retry at all.  Deposits and withdrawals
count for ``ttl`` seconds, so the balance reflects recent traffic only::

    balance = floor * ttl + ratio * deposits(last ttl s) - withdrawals(last ttl s)

A withdrawal is allowed while the balance is at least 1.  When a whole
cluster is down, every call fails fast with ``NoHostAvailable`` once the
budget is spent instead of trying every host (the traffic a client sends is
then about ``1 + ratio`` times its calls, plus the floor).

The defaults are Finagle's: 20 % of recent calls, 10 retries per second,
counted over 10 seconds.  Counts go into one-second buckets (the last
``ttl`` of them), so the cost is O(1) per call and the memory O(ttl).
"""
from __future__ import annotations

import math
import threading
import time
from typing import Callable, Optional

from ..errors import ConfigError
from .forks import renew_after_fork
from ..types import RetryBudgetStats
from .._validate import seconds

__all__ = ["DEFAULT_RETRY_FLOOR", "DEFAULT_RETRY_RATIO", "DEFAULT_RETRY_TTL", "RetryBudget"]

#: Retries allowed per call, on top of the floor (Finagle's ``percentCanRetry`` 0.2).
DEFAULT_RETRY_RATIO = 0.2
#: Retries per second always allowed (Finagle's ``minRetriesPerSec`` 10).
DEFAULT_RETRY_FLOOR = 10.0
#: Seconds a deposit or withdrawal counts (Finagle's ``ttl`` 10 s).
DEFAULT_RETRY_TTL = 10.0


def _ratio(name: str, value: object, upper: float = 1000.0) -> float:
    """Return ``value`` as a finite float in ``[0, upper]``, else raise :class:`ConfigError`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if not 0 <= value <= upper:
        raise ConfigError(f"{name} must be between 0 and {upper:g}, got {value!r}")
    return float(value)


class RetryBudget:
    """A shared allowance of retries: a ratio of recent calls plus a floor per second.

    :param ratio: retries allowed per call deposited (float >= 0; 0.2 = one retry per five calls).
    :param floor: retries per second always allowed (float >= 0; 0: no reserve).
    :param ttl: seconds (float, 1 to 60) a deposit or a withdrawal counts.
    :param clock: callable returning seconds (``time.monotonic``).
    :raises ConfigError: a value is NaN, infinite, negative, a bool, or out of range.

    Thread-safe; one budget is shared by every call of one routing object.

    Example::

        budget = RetryBudget(ratio=0.1, floor=0.0)
        for _ in range(10):
            budget.deposit()
        budget.withdraw()   # True: 10 calls earned one retry
        budget.withdraw()   # False
    """

    def __init__(self, ratio: float = DEFAULT_RETRY_RATIO, floor: float = DEFAULT_RETRY_FLOOR,
                 ttl: float = DEFAULT_RETRY_TTL, clock: Optional[Callable[[], float]] = None) -> None:
        self.ratio = _ratio("retry ratio", ratio)
        self.floor = _ratio("retry floor (retries per second)", floor, upper=1e6)
        self.ttl = seconds("retry budget ttl", ttl)
        if not 1.0 <= self.ttl <= 60.0:
            raise ConfigError(f"retry budget ttl must be between 1 and 60 seconds, got {ttl!r}")
        self.clock = clock or time.monotonic
        self._buckets = max(1, int(math.ceil(self.ttl)))
        self._lock = threading.Lock()
        renew_after_fork(self)
        self._deposits = [0] * self._buckets
        self._withdrawals = [0] * self._buckets
        self._stamp = [-1] * self._buckets  # the second each bucket holds
        self._refused = 0
        self._granted = 0

    def after_fork(self) -> None:
        """Re-create the lock in a forked child (a parent thread may have held it at the fork)."""
        self._lock = threading.Lock()

    def _slot(self, now: float) -> int:
        """Return the bucket of second ``now``, emptied when it held an older second (lock held)."""
        second = int(now)
        i = second % self._buckets
        if self._stamp[i] != second:
            self._stamp[i] = second
            self._deposits[i] = self._withdrawals[i] = 0
        return i

    def _totals(self, now: float) -> tuple[int, int]:
        """Return ``(deposits, withdrawals)`` of the last ``ttl`` seconds (lock held)."""
        oldest = int(now) - self._buckets + 1
        deposits = withdrawals = 0
        for i in range(self._buckets):
            if self._stamp[i] >= oldest:
                deposits += self._deposits[i]
                withdrawals += self._withdrawals[i]
        return deposits, withdrawals

    def deposit(self) -> None:
        """Count one call: it earns ``ratio`` of a retry for the next ``ttl`` seconds."""
        with self._lock:
            self._deposits[self._slot(self.clock())] += 1

    def balance(self) -> float:
        """Return the retries that may be made now (float; a withdrawal needs >= 1)."""
        with self._lock:
            deposits, withdrawals = self._totals(self.clock())
        return self.floor * self.ttl + self.ratio * deposits - withdrawals

    def withdraw(self) -> bool:
        """Take one retry from the budget.

        :returns: True when the balance allowed it (it is then counted); False when spent.
        """
        with self._lock:
            now = self.clock()
            deposits, withdrawals = self._totals(now)
            if self.floor * self.ttl + self.ratio * deposits - withdrawals < 1.0:
                self._refused += 1
                return False
            self._withdrawals[self._slot(now)] += 1
            self._granted += 1
            return True

    def refund(self) -> None:
        """Give back the last retry taken (it was not used after all, e.g. another budget refused)."""
        with self._lock:
            i = self._slot(self.clock())
            if self._withdrawals[i] > 0:
                self._withdrawals[i] -= 1
                self._granted -= 1

    def stats(self) -> RetryBudgetStats:
        """Return ``{"ratio", "floor", "ttl", "balance", "deposits", "withdrawals", "granted", "refused"}``.

        ``deposits``/``withdrawals`` count the last ``ttl`` seconds; ``granted``
        and ``refused`` count every withdrawal asked for since creation.
        """
        with self._lock:
            deposits, withdrawals = self._totals(self.clock())
            granted, refused = self._granted, self._refused
        return {"ratio": self.ratio, "floor": self.floor, "ttl": self.ttl,
                "balance": self.floor * self.ttl + self.ratio * deposits - withdrawals,
                "deposits": deposits, "withdrawals": withdrawals, "granted": granted, "refused": refused}

    def __repr__(self) -> str:
        return (f"<RetryBudget ratio={self.ratio:g} floor={self.floor:g}/s ttl={self.ttl:g}s "
                f"balance={self.balance():.1f}>")
