"""A thread-safe pool of connections to one ThriftBroker: :class:`Pool`.

The pool is a LIFO stack pre-filled with ``size + max_overflow`` empty slots.
An empty slot is permission to open a connection; idle connections sit on top
of the empty slots, so a checkout takes the most recently used one (warm) and
opens a new one only when none is idle.  At most ``size`` connections stay
idle: overflow ones are closed at checkin.  One lock guards this state; no
socket is opened, used or closed while it is held.

A connection is never handed out twice and never returned broken: one that
failed in transport, was interrupted mid-call, or outlived ``max_age`` is
closed at checkin; an idle one that the broker closed meanwhile (a restart)
is replaced at checkout.  After ``os.fork`` the child starts an empty pool of
its own and leaves the parent's sockets alone.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Union

from ._thrift.ttypes import Cell, ScanSpec
from . import events as ev
from .errors import BrokerUnavailable, ConfigError, DeadlineExceeded, PoolTimeout
from .latency import LatencyWindow
from .hosts import Host, HostLike
from .stats import PoolStats
from .resource import DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, Resource, scan_cells
from .transport import _forks, DEFAULT_MAX_FRAME_SIZE, fork_generation
from .units import byte_size, optional_seconds, seconds

__all__ = ["DEFAULT_MAX_OVERFLOW", "DEFAULT_POOL_TIMEOUT", "DEFAULT_SIZE", "Pool"]

log = logging.getLogger(__name__)

#: Connections kept idle per host.
DEFAULT_SIZE = 5
#: Connections opened beyond ``size`` under load, closed again at checkin.
DEFAULT_MAX_OVERFLOW = 10
#: Seconds a checkout waits for a free connection before ``PoolTimeout``.
DEFAULT_POOL_TIMEOUT = 30.0

_UNSET = object()


class _Waiter:
    """One thread waiting for a connection; served first come, first served.

    ``gate`` is acquired at creation; the thread that hands over a slot sets
    :attr:`item` (an idle entry, or ``None`` for an empty slot) and releases it.
    """

    __slots__ = ("gate", "item")

    def __init__(self) -> None:
        self.gate = threading.Lock()
        self.gate.acquire()
        self.item: object = _UNSET


@dataclass(eq=False)
class _Entry:
    """A pooled connection and its bookkeeping (times from ``time.monotonic``, in seconds)."""

    resource: Resource
    fork: int
    generation: int
    created: float
    returned: float


class Pool:
    """Keep up to ``size`` idle connections to one broker, and open up to ``max_overflow`` more under load.

    :param host: ``'host[:port]'``, a ``(host, port)`` pair or a :class:`~htcluster.hosts.Host`.
    :param size: connections kept open while idle (int, >= 0).
    :param max_overflow: connections opened beyond ``size`` when all are busy,
        closed at checkin (int, >= 0).
    :param timeout: seconds (float) a checkout waits for a free connection
        (waiters are served first come, first served).
    :param socket_timeout: seconds (float) one call may take on its connection,
        request and whole answer (``Resource`` ``timeout``).
    :param connect_timeout: seconds (float) a connection attempt may take.
    :param idle_ping: seconds (float) or ``None``; a connection idle longer
        than this is checked at checkout with a ``status()`` round trip that
        must answer within ``connect_timeout``, and replaced if it does not
        (a connection a firewall dropped silently, which the free check misses).
    :param max_age: seconds (float) or ``None``; an older connection is closed
        at checkin, or replaced at checkout if it aged while idle.
    :param max_frame_size: largest request or answer frame, in bytes (``Resource``).
    :param listeners: the :class:`~htcluster.events.Listeners` that get this
        pool's events (calls, checkouts, connections); default: a registry of
        its own (its parent is the process-wide one).
    :raises ConfigError: a value is out of range (NaN, infinite, negative, a bool...).

    Example::

        pool = Pool('localhost:15867', size=4)
        status = pool.call('status', timeout=2.0)
        with pool.connection() as r:
            cells = r.get_cells(r.mns['test'], 'logs', ScanSpec(row_limit=10))
    """

    def __init__(self, host: HostLike, size: int = DEFAULT_SIZE, max_overflow: int = DEFAULT_MAX_OVERFLOW,
                 timeout: float = DEFAULT_POOL_TIMEOUT, *, socket_timeout: float = DEFAULT_TIMEOUT,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT, idle_ping: Optional[float] = None,
                 max_age: Optional[float] = None, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
                 listeners: Optional[ev.Listeners] = None) -> None:
        for name, value in (("size", size), ("max_overflow", max_overflow)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name} must be an integer >= 0, got {value!r}")
        if size + max_overflow < 1:
            raise ConfigError("size + max_overflow must allow at least one connection, got 0")
        self.host = Host.parse(host)
        self.size = size
        self.max_overflow = max_overflow
        self.timeout = seconds("timeout", timeout, allow_zero=True)
        self.socket_timeout = seconds("socket_timeout", socket_timeout)
        self.connect_timeout = seconds("connect_timeout", connect_timeout)
        self.idle_ping = optional_seconds("idle_ping", idle_ping, allow_zero=True)
        self.max_age = optional_seconds("max_age", max_age)
        self.max_frame_size = byte_size("max_frame_size", max_frame_size, minimum=1024)
        self.address = str(self.host)
        self.listeners = ev.Listeners() if listeners is None else listeners
        self._generation = 0
        self._reset()

    def _reset(self) -> None:
        """Start from an empty pool: all slots free, nothing open, counters at zero."""
        self._fork = fork_generation()
        self._lock = threading.Lock()
        self._stack: deque[Optional[_Entry]] = deque([None] * (self.size + self.max_overflow))
        self._waiters: deque[_Waiter] = deque()
        self._idle = 0
        self._in_use = 0
        self._opened = 0
        self._closed = 0
        self._replaced = 0
        self._timeouts = 0
        self._calls = 0
        self._errors = 0
        self.latency = LatencyWindow()

    def _check_fork(self) -> None:
        """In a forked child, drop the parent's connections unclosed and start afresh (one int compare)."""
        if self._fork != fork_generation():
            log.debug("pool for %s: new process %d; leaving the parent's connections alone", self.host, os.getpid())
            self._reset()  # the parent's Resources become garbage here, never used

    # -- state --------------------------------------------------------------

    @property
    def idle(self) -> int:
        """Connections open and waiting in the pool."""
        self._check_fork()
        return self._idle

    @property
    def in_use(self) -> int:
        """Connections checked out right now."""
        self._check_fork()
        return self._in_use

    @property
    def waiting(self) -> int:
        """Threads waiting for a connection right now."""
        self._check_fork()
        return len(self._waiters)

    def stats(self) -> PoolStats:
        """Return the counters of this process's connections and calls.

        :returns: ``{"opened", "closed", "replaced", "idle", "in_use", "waiting",
            "timeouts", "calls", "errors"}`` (ints) and ``"latency"``: the
            :meth:`LatencyWindow.snapshot <htcluster.latency.LatencyWindow.snapshot>`
            of the recent :meth:`call` attempts (``count``, ``p50``, ``p99``,
            ``max``; seconds).  ``replaced`` counts idle connections found
            unusable at checkout (stale, too old, no answer to the idle ping),
            ``timeouts`` the checkouts that ended in ``PoolTimeout``, ``errors``
            the call attempts that raised (broker answers included).  While
            nothing is checked out, ``opened - closed == idle``.
        """
        self._check_fork()
        with self._lock:
            counters: PoolStats = {
                "opened": self._opened, "closed": self._closed, "replaced": self._replaced,
                "idle": self._idle, "in_use": self._in_use, "waiting": len(self._waiters),
                "timeouts": self._timeouts, "calls": self._calls, "errors": self._errors,
                "latency": {"count": 0, "p50": None, "p99": None, "max": None}}
        counters["latency"] = self.latency.snapshot()
        return counters

    def __repr__(self) -> str:
        return f"<Pool {self.host} [{self.in_use} in use, {self.idle} idle]>"

    # -- checkout / checkin -------------------------------------------------

    def _checkout(self, timeout: Optional[float], fresh: bool = False, deadline: Optional[float] = None,
                  active: Optional[bool] = None) -> tuple[_Entry, bool]:
        """Take a connection; ``fresh`` prefers opening one to reusing an idle one.

        :param timeout: seconds to wait for a slot (``None``: the pool's ``timeout``).
        :param deadline: a ``time.monotonic()`` time the whole call must end by.
        :param active: whether :attr:`listeners` listen (``None``: ask them).
        :returns: ``(entry, reused)``; ``reused`` is True for an idle connection handed out again.
        :raises PoolTimeout: no slot became free within ``timeout`` seconds.
        :raises DeadlineExceeded: ``deadline`` passed while waiting.
        :raises BrokerUnavailable: a new connection could not be opened.
        """
        if self._fork != _forks[0]:
            self._check_fork()
        listeners = self.listeners
        if active is None:
            active = bool(listeners)
        started = time.monotonic() if active else 0.0
        item = self._take(self.timeout if timeout is None else seconds("timeout", timeout, allow_zero=True),
                          fresh, deadline)
        entry: Optional[_Entry] = item
        try:
            generation = self._generation
            if entry is not None:
                why = "a fresh one was asked for" if fresh else self._unusable(entry)
                if why is None:
                    if active:
                        listeners.emit(ev.PoolCheckedOut(self.address, time.monotonic() - started))
                    return entry, True
                if not fresh:
                    log.info("replacing a connection to %s idle for %.1f s: %s",
                             self.host, time.monotonic() - entry.returned, why)
                old, entry = entry, None
                self._discard(old.resource, replaced=not fresh, reason=why)
            new = self._connect(generation, deadline)
            if active:
                listeners.emit(ev.PoolCheckedOut(self.address, time.monotonic() - started))
            return new, False
        except BaseException:
            if entry is not None:  # an idle connection whose check was interrupted
                self._discard(entry.resource)
            self._give(None)
            raise

    def _take(self, wait: float, fresh: bool, deadline: Optional[float]) -> Optional[_Entry]:
        """Take a slot (an idle entry, or ``None``: permission to connect), waiting in line for one."""
        with self._lock:
            if self._stack and not self._waiters:
                entry = self._stack.popleft() if fresh and self._stack[0] is None else self._stack.pop()
                self._in_use += 1
                if entry is not None:
                    self._idle -= 1
                return entry
            waiter = _Waiter()
            self._waiters.append(waiter)
        now = time.monotonic()
        end, by_deadline = now + wait, False
        if deadline is not None and deadline < end:
            end, by_deadline = deadline, True
        if waiter.gate.acquire(timeout=max(0.0, end - now)):
            return waiter.item  # type: ignore[return-value]
        with self._lock:
            if waiter.item is not _UNSET:  # handed over just as the wait ended: take it
                return waiter.item  # type: ignore[return-value]
            self._waiters.remove(waiter)
            self._timeouts += 1
            in_use = self._in_use
        if self.listeners:
            self.listeners.emit(ev.PoolTimedOut(self.address, time.monotonic() - now))
        if by_deadline:
            raise DeadlineExceeded(f"the call's deadline passed while waiting for a connection to {self.host} "
                                   f"({in_use} in use)", sent=False)
        raise PoolTimeout(
            f"no connection to {self.host} became free within {wait:g} s "
            f"({in_use} in use = size {self.size} + max_overflow {self.max_overflow}); "
            "raise size, max_overflow or timeout, or hold connections for less time",
            host=self.address)

    def _give(self, entry: Optional[_Entry]) -> None:
        """Hand a slot to the oldest waiter, or put it back: an entry on top, an empty slot at the bottom."""
        with self._lock:
            if self._waiters:
                waiter = self._waiters.popleft()
                waiter.item = entry
                waiter.gate.release()
                return
            self._in_use -= 1
            if entry is None:
                self._stack.appendleft(None)
            else:
                self._stack.append(entry)
                self._idle += 1

    def _unusable(self, entry: _Entry) -> Optional[str]:
        """Check an idle connection before handing it out again.

        Free checks first (its age, one non-blocking poll that sees a broker
        that closed the connection, e.g. by restarting); then, when it sat idle
        longer than ``idle_ping``, one ``status()`` round trip.

        :returns: why it must be replaced, or ``None`` when it can be used.
        """
        r = entry.resource
        if r._conn.is_stale():
            return "stale (the broker closed it, e.g. it restarted)"
        if self.max_age is None and self.idle_ping is None:
            return None
        now = time.monotonic()
        if self.max_age is not None and now - entry.created > self.max_age:
            return f"older than max_age {self.max_age:g} s"
        if self.idle_ping is not None and now - entry.returned > self.idle_ping and not r.ping():
            return f"no answer to the idle ping within {r.connect_timeout:g} s"
        return None

    def _connect(self, generation: int, deadline: Optional[float] = None) -> _Entry:
        r = Resource(self.host, timeout=self.socket_timeout, connect_timeout=self.connect_timeout,
                     max_frame_size=self.max_frame_size, open=False)
        r.open(deadline)
        with self._lock:
            self._opened += 1
        if self.listeners:
            self.listeners.emit(ev.ConnectionOpened(self.address))
        now = time.monotonic()
        return _Entry(r, fork_generation(), generation, now, now)

    def _discard(self, r: Resource, replaced: bool = False, reason: str = "interrupted") -> None:
        with self._lock:
            self._closed += 1
            self._replaced += replaced
        r.close()
        if self.listeners:
            self.listeners.emit(ev.ConnectionReplaced(self.address, reason) if replaced
                                else ev.ConnectionClosed(self.address, reason))

    def _checkin(self, entry: _Entry, active: Optional[bool] = None) -> None:
        """Give a checked-out connection back; close it if it is broken, too old or overflow."""
        if entry.fork != _forks[0]:
            return  # the parent's connection, seen in a forked child: not ours to use or close
        r = entry.resource
        listeners = self.listeners
        if active is None:
            active = bool(listeners)
        if active:
            listeners.emit(ev.PoolCheckedIn(self.address))
        keep = r._conn.reusable and entry.generation == self._generation
        if keep and self.max_age is not None and time.monotonic() - entry.created > self.max_age:
            keep = False
        if keep:
            with self._lock:
                if self._waiters:  # the oldest waiter gets it: the returning thread cannot take it back
                    waiter = self._waiters.popleft()
                    waiter.item = entry
                    waiter.gate.release()
                    return
                if self._idle < self.size:
                    entry.returned = time.monotonic()
                    self._stack.append(entry)
                    self._idle += 1
                    self._in_use -= 1
                    return
        with self._lock:
            self._closed += 1
        try:  # the slot is given back once the socket is closed: never more open than allowed
            r.close()
        finally:
            self._give(None)
        if active:
            reason = ("failed" if r._conn.failed else "out of step" if r._conn.pending or r._conn.extra
                      else "max_age" if keep else "overflow" if entry.generation == self._generation
                      else "pool closed")
            listeners.emit(ev.ConnectionClosed(self.address, reason))

    def connection(self, timeout: Optional[float] = None) -> "_Checkout":
        """Check a connection out for a ``with`` block: ``with pool.connection() as r:``.

        The connection goes back to the pool when the block ends, or is closed
        if it failed in transport.

        :param timeout: seconds to wait for a free connection; ``None``: the pool's ``timeout``.
        :returns: a context manager whose ``__enter__`` gives a :class:`~htcluster.resource.Resource`.
        :raises PoolTimeout: none became free in time.
        :raises BrokerUnavailable: a new connection could not be opened.
        """
        return _Checkout(self, timeout)

    # -- calls ----------------------------------------------------------------

    def call(self, method: str, *args: Any, namespace: Optional[str] = None, timeout: Optional[float] = None,
             deadline: Optional[float] = None) -> Any:
        """Call broker ``method`` on a pooled connection (see :meth:`Resource.call`).

        When a reused idle connection fails before the request left
        (``BrokerUnavailable`` with ``sent=False``), the call is retried once on
        a fresh connection: the broker cannot have seen it.

        :param method: a broker method name (protocol.md section 2), e.g. ``'get_cell'``.
        :param args: its arguments after the namespace id.
        :param namespace: a namespace name whose id on the connection goes before ``args``.
        :param timeout: seconds (float) for the whole call: the wait for a
            connection, connecting, and the exchange.  ``None``: the wait is
            bounded by the pool's ``timeout`` and the exchange by ``socket_timeout``.
        :param deadline: the same bound as a ``time.monotonic()`` time (used by
            the routing layers, which share one deadline across attempts).
        :returns: the broker's answer.
        :raises InvalidRequest: an argument cannot be encoded (nothing sent, connection kept).
        :raises BrokerUnavailable: the broker cannot be reached, or the
            connection broke after the request was sent.
        :raises DeadlineExceeded: ``timeout`` ran out.
        :raises PoolTimeout: no connection became free in time.
        :raises ClientException: the broker refused the call.
        """
        if timeout is not None:
            end = time.monotonic() + seconds("timeout", timeout)
            deadline = end if deadline is None else min(deadline, end)
        listeners = self.listeners
        active = bool(listeners)  # asked once per call: an event is built only when someone listens
        for attempt in (1, 2):
            entry, reused = self._checkout(None, attempt == 2, deadline, active)
            if active:
                listeners.emit(ev.CallStarted(self.address, method, namespace, attempt, args))
            start = time.monotonic()
            try:
                result = entry.resource.call(method, *args, namespace=namespace, deadline=deadline)
            except BaseException as exc:
                took = time.monotonic() - start
                self._count(took, True)
                if active:
                    listeners.emit(ev.CallFailed(self.address, method, namespace, attempt, took, exc, args))
                if (attempt == 1 and reused and isinstance(exc, BrokerUnavailable) and not exc.sent
                        and entry.resource.failed):
                    log.info("retrying %s on a fresh connection to %s: %s", method, self.host, exc)
                    continue
                raise
            finally:
                self._checkin(entry, active)
            took = time.monotonic() - start
            self._count(took)
            if active:
                listeners.emit(ev.CallSucceeded(self.address, method, namespace, attempt, took, args))
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _count(self, seconds: float, failed: bool = False) -> None:
        """Count one call attempt of ``seconds`` (float), ``failed`` or not, for :meth:`stats`."""
        self._calls += 1  # a lost increment under a thread race only blurs a monitoring figure
        if failed:
            self._errors += 1
        self.latency.record(seconds)

    def scan(self, table: str, scan_spec: Optional[ScanSpec] = None, *, namespace: str,
             batch: bool = False, timeout: Optional[float] = None) -> Iterator[Union[Cell, list[Cell]]]:
        """Scan ``table`` of ``namespace`` on one pooled connection, yielding cells.

        The connection is held while the generator runs and returned (the
        scanner closed) when it ends, also when the consumer stops early.

        :param table: the table name.
        :param scan_spec: what to read; ``None`` reads everything.
        :param namespace: the namespace name.
        :param batch: yield lists of cells, one per ``scanner_get_cells`` round trip.
        :param timeout: seconds each round trip (opening, each batch) may take.
        :returns: a generator of :class:`~htcluster.types.Cell` (or of lists of them).
        :raises ClientException: e.g. the namespace or table does not exist.
        :raises BrokerUnavailable: the connection failed.
        :raises PoolTimeout: no connection became free in time.
        """
        with self.connection() as r:
            yield from scan_cells(r, r.mns[namespace], table, scan_spec, batch=batch, timeout=timeout)

    def close(self) -> None:
        """Close the idle connections now; those in use are closed at their checkin.

        The pool stays usable: later checkouts open new connections.
        """
        self._check_fork()
        with self._lock:
            entries = [e for e in self._stack if e is not None]
            self._stack = deque([None] * len(self._stack))
            self._idle = 0
            self._generation += 1
            self._closed += len(entries)
        active = bool(self.listeners)
        for entry in entries:
            entry.resource.close()
            if active:
                self.listeners.emit(ev.ConnectionClosed(self.address, "pool closed"))

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _Checkout:
    """The context manager of :meth:`Pool.connection`: checkout on enter, checkin on exit."""

    __slots__ = ("_pool", "_timeout", "_entry")

    def __init__(self, pool: Pool, timeout: Optional[float]) -> None:
        self._pool = pool
        self._timeout = timeout
        self._entry: Optional[_Entry] = None

    def __enter__(self) -> Resource:
        if self._entry is not None:
            raise RuntimeError("this pool.connection() is already in use; call pool.connection() again")
        self._entry, _ = self._pool._checkout(self._timeout)
        resource = self._entry.resource
        resource.listeners = self._pool.listeners  # its calls are reported while it is lent out
        return resource

    def __exit__(self, *exc_info: object) -> None:
        entry, self._entry = self._entry, None
        if entry is not None:
            entry.resource.listeners = None
            self._pool._checkin(entry)
