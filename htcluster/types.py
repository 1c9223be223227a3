"""The ThriftBroker wire types under their upstream names.

These are the classes generated from ``htcluster/hypertable.thrift`` (so they
encode exactly like upstream's ``hyperthrift.gen.ttypes``).  Import them from
here, never from ``htcluster._thrift``::

    from htcluster.types import Cell, Key, ScanSpec, RowInterval
"""
from __future__ import annotations

from typing import Any, Optional, TypedDict

from ._thrift.ttypes import (
    AccessGroupOptions,
    AccessGroupSpec,
    Cell,
    CellInterval,
    ClientException,
    ColumnFamilyOptions,
    ColumnFamilySpec,
    ColumnPredicate,
    ColumnPredicateOperation,
    HqlResult,
    HqlResult2,
    HqlResultAsArrays,
    Key,
    KeyFlag,
    MutateSpec,
    MutatorFlag,
    NamespaceListing,
    Result,
    ResultAsArrays,
    ResultSerialized,
    RowInterval,
    ScanSpec,
    Schema,
    Status,
    StatusCode,
    TableSplit,
)

__all__ = [
    "AccessGroupOptions",
    "AccessGroupSpec",
    "BudgetStats",
    "Cell",
    "CellInterval",
    "ClientException",
    "ColumnFamilyOptions",
    "ColumnFamilySpec",
    "ColumnPredicate",
    "ColumnPredicateOperation",
    "Errors",
    "HealthBase",
    "HealthStats",
    "HostStats",
    "HqlResult",
    "HqlResult2",
    "HqlResultAsArrays",
    "Key",
    "KeyFlag",
    "Latency",
    "MutateSpec",
    "MutatorFlag",
    "NamespaceListing",
    "PoolCounters",
    "PoolStats",
    "Result",
    "ResultAsArrays",
    "ResultSerialized",
    "Results",
    "RetryBudgetStats",
    "RowInterval",
    "ScanSpec",
    "Schema",
    "Status",
    "StatusCode",
    "TableSplit",
]


# ---------------------------------------------------------------------------
# The shapes of what ``stats()`` returns, as ``TypedDict`` s: plain dicts at run time; the
# types tell a type checker (and a reader) which keys there are.  Durations are seconds.


class Latency(TypedDict):
    """Recent call latencies of one host or pool, seconds; ``None`` while there are none."""

    count: int  #: samples in the window
    p50: Optional[float]
    p99: Optional[float]
    max: Optional[float]


class PoolCounters(TypedDict):
    """Connection counters of one :class:`~htcluster._pool.pool.Pool` (ints).

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
    connecting: int  #: connects in progress now (at most ``max_connecting``)
    connecting_peak: int  #: the most connects in progress at once so far
    generation: int  #: times the pool was cleared (a host failure, ``close()``)
    timeouts: int


class PoolStats(PoolCounters):
    """:class:`PoolCounters` plus the pool's calls: attempts, those that raised, their latency."""

    calls: int
    errors: int
    latency: Latency


class HealthBase(TypedDict):
    """The fields of :class:`HealthStats` that are always there."""

    live: bool
    failures: int  #: consecutive connection failures
    retry_in: float  #: seconds until the host is tried again (0.0 when live)
    error: Optional[str]  #: ``"Type: message"`` of the last failure, or ``None``


class HealthStats(HealthBase, total=False):
    """What :class:`~htcluster._policy.health.HostHealth` knows of one host.

    ``live``, ``failures``, ``retry_in`` and ``error`` are always there;
    ``lagging`` (it lost its last hedge and ranks last for now) where the
    routing object hedges; ``ejected_for`` (seconds left of an outlier
    ejection, 0.0 when none) and ``ramp`` (the share of its traffic a host
    back from a probe gets during its slow start, 1.0 when none) from the
    routing classes; ``cost`` (the peak-EWMA latency estimate, seconds) and
    ``score`` (``cost x (in-flight + 1)``, what P2C compares) with
    ``balance="p2c"``.
    """

    lagging: bool
    ejected_for: float
    ramp: float
    cost: float
    score: float


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


#: ``{host: answer}`` of the hosts that answered a broadcast or multicast.
Results = dict[str, Any]
#: ``{host: exception}`` of the hosts that did not (``errors="return"``).
Errors = dict[str, BaseException]
