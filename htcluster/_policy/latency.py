"""A recent-window latency recorder: :class:`LatencyWindow`.

It keeps the last ``size`` latencies (seconds) and answers their percentiles
by nearest rank, the figures each host shows in ``stats()``.
"""
from __future__ import annotations

import math
import threading
from collections import deque
from typing import Optional

from ..errors import ConfigError
from .forks import renew_after_fork
from ..types import Latency

__all__ = ["DEFAULT_WINDOW", "LatencyWindow"]


#: Samples a :class:`LatencyWindow` keeps.
DEFAULT_WINDOW = 1024


class LatencyWindow:
    """The latencies of the last ``size`` calls, and their percentiles.

    Thread-safe; :meth:`record` is one comparison and a deque append under a
    lock, the sorting happens in :meth:`percentile` / :meth:`snapshot`.

    :param size: samples kept (int, >= 1); older ones fall out.
    :raises ConfigError: ``size`` is not a positive int.
    """

    __slots__ = ("__weakref__", "_lock", "_samples", "total")

    def __init__(self, size: int = DEFAULT_WINDOW) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError(f"LatencyWindow size must be an int >= 1 (samples kept), got {size!r}")
        self._samples: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()
        renew_after_fork(self)
        #: Samples recorded since creation, also those that fell out of the window.
        self.total = 0

    def after_fork(self) -> None:
        """A forked child gets a fresh lock, in case a thread of the parent held it at the fork."""
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        """The number of samples kept."""
        return self._samples.maxlen or 0

    def __len__(self) -> int:
        return len(self._samples)

    def __repr__(self) -> str:
        return f"<LatencyWindow {len(self._samples)}/{self.size} samples>"

    def record(self, seconds: float) -> None:
        """Add one latency.

        :param seconds: a duration in seconds (float, >= 0).
        :raises ConfigError: ``seconds`` is negative or NaN.
        """
        if not seconds >= 0:
            raise ConfigError(f"a latency is a duration in seconds >= 0, got {seconds!r}")
        self._samples.append(seconds)  # one C call under the GIL: atomic, no lock on the hot path
        self.total += 1  # a lost increment under a race only blurs a monitoring figure

    def _sorted(self) -> list[float]:
        with self._lock:
            samples = list(self._samples.copy())  # deque.copy runs in C without releasing the GIL
        samples.sort()
        return samples

    @staticmethod
    def _rank(samples: list[float], p: float) -> Optional[float]:
        if not samples:
            return None
        index = max(0, math.ceil(p / 100.0 * len(samples)) - 1)
        return samples[index]

    def percentile(self, p: float) -> Optional[float]:
        """The ``p``-th percentile (nearest rank) of the window, in seconds.

        :param p: a percentile from 0 to 100 (float), e.g. 99.
        :returns: a recorded latency in seconds, or ``None`` when nothing was recorded.
        :raises ConfigError: ``p`` is outside 0..100.
        """
        if not 0 <= p <= 100:
            raise ConfigError(f"a percentile is between 0 and 100, got {p!r}")
        return self._rank(self._sorted(), p)

    def snapshot(self) -> Latency:
        """The window at a glance.

        :returns: ``{"count": int, "p50": float|None, "p99": float|None,
            "max": float|None}`` (:class:`~htcluster.types.Latency`); ``count``
            is the samples in the window, latencies are seconds, ``None`` when
            it is empty.
        """
        samples = self._sorted()
        return {"count": len(samples), "p50": self._rank(samples, 50), "p99": self._rank(samples, 99),
                "max": samples[-1] if samples else None}
