"""The shapes of what ``stats()`` returns, as ``TypedDict`` s.

=====================  ==========================================================
type                   returned by
=====================  ==========================================================
:class:`Latency`       :meth:`LatencyWindow.snapshot <htcluster.latency.LatencyWindow.snapshot>`
:class:`PoolStats`     :meth:`Pool.stats <htcluster.pool.Pool.stats>`
:class:`HostStats`     each value of :meth:`Resources.stats <htcluster.resources.Resources.stats>`
                       (and of ``Shards.stats``, ``Replicas.stats``)
:class:`BudgetStats`   ``budget_stats()`` of a routing object that hedges
=====================  ==========================================================

They are plain dicts at run time; the types only tell a type checker (and a
reader) which keys there are and what each holds.  Durations are seconds.
"""
from __future__ import annotations

from typing import Optional, TypedDict

__all__ = ["BudgetStats", "HealthStats", "HostStats", "Latency", "PoolCounters", "PoolStats", "RetryBudgetStats"]


class Latency(TypedDict):
    """Recent call latencies of one host or pool, seconds; ``None`` while there are none."""

    count: int  #: samples in the window
    p50: Optional[float]
    p99: Optional[float]
    max: Optional[float]


class PoolCounters(TypedDict):
    """Connection counters of one :class:`~htcluster.pool.Pool` (ints).

    ``replaced``: idle connections found unusable at checkout; ``timeouts``:
    checkouts that ended in ``PoolTimeout``; ``waiting``: threads waiting for a
    connection now.  While nothing is checked out, ``opened - closed == idle``.
    """

    opened: int
    closed: int
    replaced: int
    idle: int
    in_use: int
    waiting: int
    timeouts: int


class PoolStats(PoolCounters):
    """:class:`PoolCounters` plus the pool's calls: attempts, those that raised, their latency."""

    calls: int
    errors: int
    latency: Latency


class _Health(TypedDict):
    live: bool
    failures: int  #: consecutive connection failures
    retry_in: float  #: seconds until the host is tried again (0.0 when live)
    error: Optional[str]  #: ``"Type: message"`` of the last failure, or ``None``


class HealthStats(_Health, total=False):
    """What :class:`~htcluster.policy.HostHealth` knows of one host.

    ``live``, ``failures``, ``retry_in`` and ``error`` are always there;
    ``lagging`` (it lost its last hedge and ranks last for now) where the
    routing object hedges.
    """

    lagging: bool


class HostStats(TypedDict):
    """One host of a routing object: its pool, its health, its calls and their latency."""

    pool: PoolCounters
    health: HealthStats
    calls: int
    errors: int
    latency: Latency


class RetryBudgetStats(TypedDict):
    """A retry budget: its settings, its balance, and what it granted and refused."""

    ratio: float  #: retries earned per call
    floor: float  #: retries per second allowed whatever the traffic
    ttl: float  #: seconds that deposits and withdrawals count for
    balance: float  #: retries available now
    deposits: int  #: calls in the last ``ttl`` seconds
    withdrawals: int  #: retries in the last ``ttl`` seconds
    granted: int  #: retries allowed since creation
    refused: int  #: retries refused since creation


class BudgetStats(TypedDict):
    """What a routing object spent beyond its calls: failovers and hedges, and what capped them."""

    retry: RetryBudgetStats  #: the budget shared by failovers, hedges and probes
    hedge: RetryBudgetStats  #: the cap on hedges
    hedges: dict[str, int]  #: hedges sent to each host
    exhausted: int  #: calls refused a retry or a hedge by the budget
    failovers: int
