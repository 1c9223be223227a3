"""Health of many brokers at once: ping each with ``status()``, all at once, and print a table.

:func:`check_hosts` is what ``htcluster status`` and ``flask hypertable status``
run; :func:`format_status` renders its answer, :func:`down_message` sums up
the hosts that are down, and :func:`render_table` is the plain aligned-text
table every command of the CLI prints.

Example::

    >>> print(format_status(check_hosts(["ht1:15867", "ht2"], timeout=2.0)))
    host        state  latency ms  pool               error
    ht1:15867   up           0.41  -                  -
    ht2:15867   down            -  -                  BrokerUnavailable: ...
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Sequence, Union

from ..hosts import Host, HostLike

if TYPE_CHECKING:  # pragma: no cover
    from .._call.attempt import Pool

__all__ = ["DEFAULT_TIMEOUT", "HostStatus", "check_hosts", "down_message", "format_status", "render_table"]

#: Seconds one ping may take (connect plus answer) before the host counts as down.
DEFAULT_TIMEOUT = 5.0


@dataclass(frozen=True)
class HostStatus:
    """The answer of one host to ``status()``.

    :ivar host: ``'host:port'``.
    :ivar up: the broker answered with a ``Status`` in time.
    :ivar latency: seconds the ``status()`` round trip took, ``None`` when down.
    :ivar code: ``Status.code`` (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN; :ref:`broker-types`).
    :ivar text: ``Status.text``.
    :ivar pool: the pool's state (``"2 in use, 3 idle"``) when a pool was checked, else ``None``.
    :ivar error: ``"ExceptionType: message"`` when down, else ``None``.
    """

    host: str
    up: bool
    latency: Optional[float] = None
    code: Optional[int] = None
    text: str = ""
    pool: Optional[str] = None
    error: Optional[str] = None


def _pool_state(pool: "Pool") -> str:
    return f"{pool.in_use} in use, {pool.idle} idle"


def check_hosts(hosts: Union[Iterable[HostLike], Mapping[str, "Pool"]],
                timeout: float = DEFAULT_TIMEOUT) -> list[HostStatus]:
    """Call ``status()`` on every host at once and report who answered.

    The pings are attempts of the one call engine, multiplexed on one loop in
    the calling thread (non-blocking connects, one deadline); they tell no
    routing object's health anything.

    :param hosts: ``host[:port]`` values (each pinged through a fresh
        connection), or a mapping ``{'host:port': Pool}`` such as
        :class:`~htcluster.Resources` (each pinged through one of its pooled
        connections, and its pool state reported).
    :param timeout: seconds the whole check may take (connecting, waiting for a
        pooled connection and the answer); a host that has not answered by then
        is reported down.
    :returns: one :class:`HostStatus` per host, in the order given.
    :raises ConfigError: a host is malformed.
    """
    from .._call.attempt import Attempt, Pool  # imported late: rendering tables needs no Thrift client
    from .._call.loop import run_all

    given = isinstance(hosts, Mapping)
    if isinstance(hosts, Mapping):
        pools = list(hosts.values())
    else:
        pools = [Pool(Host.parse(h), size=1, max_overflow=0, pool_timeout=timeout, socket_timeout=timeout,
                      connect_timeout=timeout) for h in hosts]
    deadline = time.monotonic() + timeout
    attempts = [Attempt(pool, "status", (), None, deadline) for pool in pools]
    try:
        run_all(attempts)
    finally:
        if not given:
            for pool in pools:
                pool.close()
    results = []
    for pool, attempt in zip(pools, attempts):
        state = _pool_state(pool) if given else None
        if attempt.error is not None:
            results.append(HostStatus(pool.address, False, pool=state,
                                      error=f"{type(attempt.error).__name__}: {attempt.error}"))
        else:
            status = attempt.result
            results.append(HostStatus(pool.address, True, attempt.took, status.code, status.text or "", state))
    return results


def render_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[int] = ()) -> str:
    """Render ``rows`` as aligned plain text under ``headers``.

    :param headers: column titles.
    :param rows: one sequence of values per line (``None`` shows as ``-``).
    :param numeric: indexes of columns aligned to the right.
    :returns: the table, lines joined by newlines, without a trailing newline.
    """
    text_rows = [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in text_rows]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        cells = [v.rjust(w) if i in numeric else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths))]
        return "  ".join(cells).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, text_rows)])


def format_status(statuses: Iterable[HostStatus]) -> str:
    """Render :func:`check_hosts` results as a table: host, state, latency ms, pool, error.

    :param statuses: :class:`HostStatus` values, one per line.
    :returns: the table (see :func:`render_table`).
    """
    rows = [(s.host, "up" if s.up else "down",
             f"{s.latency * 1000:.2f}" if s.latency is not None else None,  # ms for people
             s.pool, s.error if s.error else (s.text or None))
            for s in statuses]
    return render_table(("host", "state", "latency ms", "pool", "error"), rows, numeric=(2,))


def down_message(statuses: Sequence[HostStatus]) -> Optional[str]:
    """Sum up the hosts of :func:`check_hosts` results that are down.

    :param statuses: :class:`HostStatus` values.
    :returns: ``'<n> of <m> hosts down: <host>, ...'``, or ``None`` when every host is up.
    """
    down = [s.host for s in statuses if not s.up]
    return f"{len(down)} of {len(statuses)} hosts down: {', '.join(down)}" if down else None
