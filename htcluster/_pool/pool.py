"""A thread-safe pool of connections to one ThriftBroker, lent out as :class:`Lease` s.

The pool is a LIFO stack pre-filled with ``size + max_overflow`` empty slots.
An empty slot is permission to open a connection; idle connections sit on top
of the empty slots, so a checkout takes the most recently used one (warm) and
opens a new one only when none is idle.  At most ``size`` connections stay
idle: overflow ones are closed when returned.  One lock guards this state; no
socket is opened, used or closed while it is held (decide under the lock, do
the I/O outside it).  Waiters are served first come, first served: a slot
coming back goes to the oldest waiter (:meth:`ConnectionPool._hand_over`, the
one function that hands slots over).

The public way in is :meth:`ConnectionPool.acquire`, which returns a
:class:`Lease`: the borrowed :class:`~htcluster._io.resource.Resource` and
its bookkeeping.  ``lease.release()`` gives it back exactly once; a
connection that failed, was interrupted mid-call or outlived ``max_age`` is
closed then.  Every way out of ``acquire``, including an interrupt
(``KeyboardInterrupt`` while waiting) or a listener that raises, leaves
``opened - closed == idle + in_use`` and no waiter behind.  After ``os.fork``
the child starts an empty pool of its own and leaves the parent's sockets
alone.

This class makes no calls: :class:`htcluster.Pool` adds ``call`` and
``scan`` on top of it (the attempt layer, :mod:`htcluster._routing.attempt`).
"""
from __future__ import annotations

import logging
import random
import ssl
import threading
import time
from collections import deque
from typing import NamedTuple, Optional

from .. import events as ev
from .._io.connection import fork_generation
from .._io.resource import DEFAULT_CONNECT_TIMEOUT, DEFAULT_SOCKET_TIMEOUT, Resource
from .._io.keepalive import KeepAlive, KeepAliveLike
from .._io.tls import check_context
from .._policy.health import Backoff
from .._policy.forks import renew_after_fork
from .._policy.latency import LatencyWindow
from .._policy.steps import Steps, drive
from .maintenance import maintainer
from .._validate import byte_size, optional_seconds, seconds
from .._wire import DEFAULT_MAX_FRAME_SIZE
from ..errors import BrokerUnavailable, ConfigError, DeadlineExceeded, PoolTimeout, TLSError
from ..hosts import Host, HostLike
from ..types import PoolStats

__all__ = ["DEFAULT_MAX_CONNECTING", "DEFAULT_MAX_OVERFLOW", "DEFAULT_POOL_TIMEOUT", "DEFAULT_RECONNECT_JITTER",
           "DEFAULT_SIZE", "UNSET", "ConnectionPool", "Lease", "Open", "Ping", "Sleep", "Wait", "Waiter"]

log = logging.getLogger("htcluster.pool")

#: Connections kept idle per host.
DEFAULT_SIZE = 5
#: Connections opened beyond ``size`` under load, closed again when returned.
DEFAULT_MAX_OVERFLOW = 10
#: Connections being opened at once per pool, at most (PyMongo's ``maxConnecting``).
DEFAULT_MAX_CONNECTING = 2
#: Seconds, at most, of the random pause before a reconnect to a host whose last connect failed.
DEFAULT_RECONNECT_JITTER = 0.05
#: How long a pool whose top-up (``min_size``) failed is left alone: about 1, 2, 4 ... 30 s, jittered.
_TOPUP_BACKOFF = Backoff(base=1.0, cap=30.0, jitter=0.5)
#: Seconds a checkout waits for a free connection before ``PoolTimeout``: long enough to ride out
#: a burst, short enough that a pool too small for its load shows as an error, not as a stall.
DEFAULT_POOL_TIMEOUT = 10.0

#: What :attr:`Waiter.item` holds until a slot is handed over.
UNSET = object()
_UNSET = UNSET


class Waiter:
    """One thread waiting for a slot; ``gate`` is released (:meth:`wake`) once :attr:`item` is set.

    Another I/O flavour subclasses it and overrides :meth:`wake` (the pool's
    ``new_waiter`` makes them); the hand-over is the same for every flavour.
    """

    __slots__ = ("gate", "item")

    def __init__(self) -> None:
        self.gate = threading.Lock()
        self.gate.acquire()
        #: The slot handed over (a ``Lease``, or ``None``: an empty slot and a connect permit), or :data:`UNSET`.
        self.item: object = UNSET

    def wake(self) -> None:
        """Tell the waiter that :attr:`item` is set (called under the pool's lock, never blocks)."""
        self.gate.release()


_Waiter = Waiter


class Wait(NamedTuple):
    """A step (:mod:`htcluster._policy.steps`): wait up to ``timeout`` seconds for ``waiter`` to be woken."""

    waiter: Waiter
    timeout: float

    def run(self) -> bool:
        """Wait blocking; True when woken in time."""
        return self.waiter.gate.acquire(timeout=self.timeout)


class Open(NamedTuple):
    """A step: connect ``resource`` before ``deadline`` (``Resource.open``)."""

    resource: Resource
    deadline: Optional[float]

    def run(self) -> None:
        """Connect blocking."""
        self.resource.open(self.deadline)


class Ping(NamedTuple):
    """A step: one ``status()`` round trip on an idle ``resource`` (``Resource.ping``); True when it answered."""

    resource: Resource

    def run(self) -> bool:
        """Ping blocking."""
        return self.resource.ping()


class Sleep(NamedTuple):
    """A step: pause ``seconds`` (the jitter before a reconnect to a failing host)."""

    seconds: float

    def run(self) -> None:
        """Sleep blocking."""
        time.sleep(self.seconds)


class Lease:
    """A connection borrowed from a :class:`ConnectionPool`; give it back once with :meth:`release`.

    :ivar resource: the :class:`~htcluster._io.resource.Resource` lent.
    :ivar reused: True when it was idle in the pool before (it may have gone
        stale since; a failure before anything was sent is worth one retry on a
        fresh connection), False when it was opened for this lease.
    :ivar pool: the pool it belongs to.

    Also a context manager: ``with pool.acquire() as r:`` gives the resource
    and releases it at the end.
    """

    __slots__ = ("pool", "resource", "reused", "fork", "generation", "created", "returned", "out", "counted",
                 "permit")

    def __init__(self, pool: "ConnectionPool", resource: Resource, generation: int) -> None:
        self.pool = pool
        self.resource = resource
        self.reused = False
        self.fork = fork_generation()
        self.generation = generation
        self.created = self.returned = time.monotonic()
        self.out = False  # lent out right now
        self.counted = False  # counted in the pool's "opened" (and not yet in its "closed")
        self.permit = False  # holds one of the pool's ``max_connecting`` connect permits

    def opened(self) -> None:
        """Tell the pool that this lease's connection, lent unopened (``acquire(connect=False)``), is open now.

        Its connect permit (one of ``max_connecting``) goes to the next
        connect at once; without this call it is given back with the lease.
        """
        if self.permit:
            self.pool.connected(self)

    def release(self) -> None:
        """Give the connection back: kept idle when it is in step, else closed; idempotent."""
        if self.out:
            self.pool.give_back(self)  # clears ``out`` under the pool's lock as the slot changes hands

    def __enter__(self) -> Resource:
        return self.resource

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<Lease {self.pool.address} {'out' if self.out else 'returned'}>"


class ConnectionPool:
    """Keep up to ``size`` idle connections to one broker, and open up to ``max_overflow`` more under load.

    :param host: ``'host[:port]'``, a ``(host, port)`` pair or a :class:`~htcluster.hosts.Host`.
    :param size: connections kept open while idle (int, >= 0).
    :param max_overflow: connections opened beyond ``size`` when all are busy,
        closed when returned (int, >= 0).
    :param pool_timeout: seconds (float) a checkout waits for a free connection
        (waiters are served first come, first served; default 10 s).
    :param socket_timeout: seconds (float) one call may take on its connection,
        request and whole answer (``Resource`` ``socket_timeout``; default 30 s).
    :param connect_timeout: seconds (float) a connection attempt may take.
    :param idle_ping: seconds (float) or ``None``; a connection idle longer
        than this is checked at checkout with a ``status()`` round trip that
        must answer within ``connect_timeout``, and replaced if it does not
        (a connection a firewall dropped silently, which the free check misses).
    :param max_age: seconds (float) or ``None``; an older connection is closed
        when returned, or replaced at checkout if it aged while idle.
    :param max_idle_time: seconds (float > 0) or ``None`` (the default); a connection
        idle longer than this is closed by the maintenance thread, or replaced at
        checkout if it is found first (PyMongo's ``maxIdleTimeMS``, in seconds): set it
        below the idle timeout of the broker or of a NAT, firewall or load balancer
        between, so that no call meets a connection they forgot.
    :param max_frame_size: largest request or answer frame, in bytes (``Resource``).
    :param listeners: the :class:`~htcluster.events.Listeners` that get this
        pool's events (calls, checkouts, connections); default: a registry of
        its own (its parent is the process-wide one).
    :param ssl_context: a client ``ssl.SSLContext`` for TLS (``Resource``;
        hostname checked by default, handshake within ``connect_timeout``);
        ``None``: plaintext.
    :param max_connecting: connections being opened at once, at most (int, >= 1;
        default 2, PyMongo's ``maxConnecting``): more callers that need a new
        connection wait for a connect permit or for a connection given back,
        whichever comes first, within their ``pool_timeout`` and deadline.
    :param reconnect_jitter: seconds (float, >= 0); after a connect to the host
        failed, each blocking connect first pauses a random time up to this long,
        until one succeeds, so that many threads and processes do not hit a
        restarting broker in step (default 0.05 s; 0: no pause).  The pause comes
        before the caller takes a slot and a connect permit, so it delays no other
        connect; a caller that finds an idle connection afterwards takes it.
    :param min_size: connections kept open at least (int, 0 to ``size``; default 0):
        the process's one maintenance thread (:mod:`htcluster._pool.maintenance`)
        opens what is missing in the background, within ``max_connecting``, so
        that calls after a quiet spell or a restart find warm connections; user
        calls never open connections for the minimum.  :meth:`close` stops it.
        The same thread visits a pool with ``min_size`` or ``max_idle_time`` every
        half second and closes the idle connections that the broker closed or that
        outlived ``max_idle_time`` or ``max_age`` (:meth:`sweep`), then refills the minimum.
    :param keepalive: TCP keepalive on every connection (``Resource``'s
        ``keepalive``): ``True`` (the default: first probe after 60 s idle),
        ``False``, seconds of idleness, or a mapping of ``idle``, ``interval``, ``count``.
    :raises ConfigError: a value is out of range (NaN, infinite, negative, a bool...).
    """

    def __init__(self, host: HostLike, size: int = DEFAULT_SIZE, max_overflow: int = DEFAULT_MAX_OVERFLOW,
                 pool_timeout: float = DEFAULT_POOL_TIMEOUT, *, socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT, idle_ping: Optional[float] = None,
                 max_age: Optional[float] = None, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
                 listeners: Optional[ev.Listeners] = None, ssl_context: Optional[ssl.SSLContext] = None,
                 max_connecting: int = DEFAULT_MAX_CONNECTING,
                 reconnect_jitter: float = DEFAULT_RECONNECT_JITTER, min_size: int = 0,
                 keepalive: KeepAliveLike = True, max_idle_time: Optional[float] = None) -> None:
        for name, value in (("size", size), ("max_overflow", max_overflow)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name} must be an integer >= 0, got {value!r}")
        if isinstance(max_connecting, bool) or not isinstance(max_connecting, int) or max_connecting < 1:
            raise ConfigError(f"max_connecting must be an integer >= 1 (connects in progress at once), "
                              f"got {max_connecting!r}")
        if isinstance(min_size, bool) or not isinstance(min_size, int) or not 0 <= min_size <= size:
            raise ConfigError(f"min_size must be an integer from 0 to size ({size}): connections kept open at "
                              f"least, got {min_size!r}")
        if size + max_overflow < 1:
            raise ConfigError("size + max_overflow must allow at least one connection, got 0")
        self.host = Host.parse(host)
        self.size = size
        self.max_overflow = max_overflow
        self.pool_timeout = seconds("pool_timeout", pool_timeout, allow_zero=True)
        self.socket_timeout = seconds("socket_timeout", socket_timeout)
        self.connect_timeout = seconds("connect_timeout", connect_timeout)
        self.idle_ping = optional_seconds("idle_ping", idle_ping, allow_zero=True)
        self.max_age = optional_seconds("max_age", max_age)
        self.max_idle_time = optional_seconds("max_idle_time", max_idle_time)
        self.max_frame_size = byte_size("max_frame_size", max_frame_size, minimum=1024)
        self.max_connecting = max_connecting
        self.reconnect_jitter = seconds("reconnect_jitter", reconnect_jitter, allow_zero=True)
        self.min_size = min_size
        self.keepalive = KeepAlive.coerce(keepalive)
        self.address = str(self.host)
        self.ssl_context = check_context(ssl_context)  # TLS (htcluster._io.tls)
        self.listeners = ev.Listeners() if listeners is None else listeners
        self._generation = 0
        self._cleared_by = "pool closed"  # why the last generation ended
        self._rng = random.Random()
        self._cut = 0  # abort(): connections of a generation below this one are shut
        self._kept = False  # registered with the maintenance thread (min_size)
        self._topup_failures = 0
        self._topup_after = 0.0  # time.monotonic() before which a failed top-up is not tried again
        self.after_fork()
        renew_after_fork(self)
        self._keep()

    @property
    def maintained(self) -> bool:
        """True when the maintenance thread looks after this pool (it has a ``min_size`` or a ``max_idle_time``)."""
        return bool(self.min_size) or self.max_idle_time is not None

    def _keep(self) -> None:
        """Have the maintenance thread keep this pool (``min_size``, ``max_idle_time``; no-op without either)."""
        if self.maintained and not self._kept:
            self._kept = True
            maintainer.watch(self)

    def after_fork(self) -> None:
        """Start from an empty pool: all slots free, nothing open, counters at zero (a new process)."""
        self._lock = threading.Lock()
        self._stack: deque[Optional[Lease]] = deque([None] * (self.size + self.max_overflow))
        self._waiters: deque[Waiter] = deque()
        self._idle = 0
        self._in_use = 0
        self._connecting = 0  # connect permits out (at most max_connecting)
        self._connecting_peak = 0  # the most permits out at once
        self._failing = False  # the last connect failed: jitter the next ones
        self._opened = 0
        self._closed = 0
        self._replaced = 0
        self._timeouts = 0
        self._lent: set[Lease] = set()  # the leases out, for abort()
        self._calls = 0
        self._errors = 0
        #: The latencies of the recent call attempts on this pool (seconds).
        self.latency = LatencyWindow()

    # -- state --------------------------------------------------------------

    @property
    def idle(self) -> int:
        """Connections open and waiting in the pool."""
        return self._idle

    @property
    def in_use(self) -> int:
        """Connections lent out right now."""
        return self._in_use

    @property
    def generation(self) -> int:
        """How many times the pool was cleared (:meth:`clear`: a host failure, :meth:`close`, :meth:`abort`).

        A lease remembers the generation it began in; one of an older generation is never lent again.
        """
        return self._generation

    @property
    def connecting(self) -> int:
        """Connections being opened right now (at most ``max_connecting``)."""
        return self._connecting

    @property
    def waiting(self) -> int:
        """Threads waiting for a connection right now."""
        return len(self._waiters)

    def stats(self) -> PoolStats:
        """Return the counters of this process's connections and calls.

        :returns: ``{"opened", "closed", "replaced", "idle", "in_use", "waiting",
            "connecting", "connecting_peak", "generation", "timeouts", "calls", "errors"}``
            (ints) and ``"latency"``: the
            snapshot of the recent call attempts (``count``, ``p50``, ``p99``,
            ``max``; seconds).  ``replaced`` counts idle connections found
            unusable at checkout (stale, too old, no answer to the idle ping),
            ``timeouts`` the checkouts that ended in ``PoolTimeout``, ``errors``
            the call attempts that raised (broker answers included), ``connecting``
            the connects in progress now (``connecting_peak``: the most at once since the
            pool was made, at most ``max_connecting``), ``generation`` how many times the pool
            was cleared (:attr:`generation`).  Always
            ``opened - closed == idle + in_use``.
        """
        with self._lock:
            counters: PoolStats = {
                "opened": self._opened, "closed": self._closed, "replaced": self._replaced,
                "idle": self._idle, "in_use": self._in_use, "waiting": len(self._waiters),
                "connecting": self._connecting, "connecting_peak": self._connecting_peak,
                "generation": self._generation,
                "timeouts": self._timeouts, "calls": self._calls, "errors": self._errors,
                "latency": {"count": 0, "p50": None, "p99": None, "max": None}}
        counters["latency"] = self.latency.snapshot()
        return counters

    def record(self, took: float, failed: bool = False) -> None:
        """Count one call attempt of ``took`` seconds, ``failed`` or not, for :meth:`stats`."""
        self._calls += 1  # a lost increment under a thread race only blurs a monitoring figure
        if failed:
            self._errors += 1
        self.latency.record(took)

    def __repr__(self) -> str:
        connecting = f", {self._connecting} connecting" if self._connecting else ""
        return f"<{type(self).__name__} {self.host} [{self._in_use} in use, {self._idle} idle{connecting}]>"

    # -- acquire / release --------------------------------------------------

    def acquire(self, deadline: Optional[float] = None, *, pool_timeout: Optional[float] = None,
                fresh: bool = False, connect: bool = True) -> Lease:
        """Borrow a connection: an idle one (checked first), or a new one opened in a free slot.

        A new connection needs one of the pool's ``max_connecting`` connect
        permits as well as a free slot; while every permit is taken, the
        caller waits in line for a permit or for a connection given back,
        whichever comes first (a connection storm after a restart opens at
        most ``max_connecting`` connections at a time).

        :param deadline: a ``time.monotonic()`` time by which waiting and connecting must end.
        :param pool_timeout: seconds to wait for a free slot (``None``: the pool's ``pool_timeout``; 0: do not
            wait).
        :param fresh: open a new connection rather than reuse an idle one (an idle one found is closed).
        :param connect: open a new connection here, blocking; False: a new connection is
            lent unopened (``lease.resource.is_open`` is False) for the caller to open, e.g.
            without blocking (``Connection.begin_connect``), then to call ``lease.opened()``;
            it holds a connect permit until then.  If it fails, releasing the lease closes it
            and frees the slot and the permit.
        :returns: a :class:`Lease`; call ``release()`` on it exactly once (or use it in a ``with``).
        :raises PoolTimeout: no slot (or no connect permit) became free within ``pool_timeout`` seconds.
        :raises DeadlineExceeded: ``deadline`` passed while waiting or connecting.
        :raises BrokerUnavailable: a new connection could not be opened.
        :raises ClientResourceError: this process has no descriptor left for a new connection.
        """
        return drive(self.acquire_steps(deadline, pool_timeout, fresh, connect))

    def acquire_steps(self, deadline: Optional[float] = None, pool_timeout: Optional[float] = None,
                      fresh: bool = False, connect: bool = True) -> Steps[Lease]:
        """:meth:`acquire` as a generator of its waits (:class:`Wait`, :class:`Ping`, :class:`Sleep`, :class:`Open`).

        The one checkout logic of every I/O flavour (:mod:`htcluster._policy.steps`):
        the blocking :meth:`acquire` drives it with ``run()``, the asyncio pool with ``await``.
        An exception thrown in at a wait (an interrupt, a cancelled task) leaves the
        pool consistent: the slot and permit go back, the waiter leaves the line.
        """
        listeners = self.listeners
        started = time.monotonic()
        if not self._kept and self.maintained:  # used again after close()
            self._keep()
        wait = self.pool_timeout if pool_timeout is None else seconds("pool_timeout", pool_timeout, allow_zero=True)
        # The slot taken, and what is in it, live in ``slot`` (a list, so that a step cut by an
        # interrupt between a call and an assignment cannot lose it): the except path gives it back.
        # ``None`` in it is an empty slot *with* a connect permit; a lease holds its permit itself.
        slot: list[Optional[Lease]] = []
        if connect and self._failing and self.reconnect_jitter and not self._idle:
            # Spread the reconnects of many threads (and processes) to a failing host: the pause is
            # taken before any slot or connect permit, so a pausing caller keeps no other connect waiting.
            pause = self._rng.random() * self.reconnect_jitter
            if deadline is not None:
                pause = min(pause, max(0.0, deadline - started))
            yield Sleep(pause)
        try:
            yield from self._take(started + wait, wait, fresh, deadline, slot, False)
            while slot[0] is not None:
                lease = slot[0]
                why = "a fresh one was asked for" if fresh else self._unusable(lease)
                if why is None and self._ping_due(lease) and not (yield Ping(lease.resource)):
                    why = f"no answer to the idle ping within {lease.resource.connect_timeout:g} s"
                if why is None:
                    lease.reused = True
                    break
                if not fresh:
                    log.info("replacing a connection to %s idle for %.1f s: %s",
                             self.host, time.monotonic() - lease.returned, why)
                self._close(lease, replaced=not fresh, reason=why)  # (idempotent: counted once)
                # a permit to connect in this slot, or back in line (first) for one or for a connection
                if not self._permit_for(slot):
                    yield from self._take(started + wait, wait, False, deadline, slot, True)
            else:
                lease = yield from self._new_lease(deadline, connect, slot)
            lease.out = True
            self._lent.add(lease)
            if lease.generation < self._cut:  # abort() ran while this lease was being taken
                lease.resource.connection.interrupt()
            if listeners:
                listeners.emit(ev.PoolCheckedOut(self.address, time.monotonic() - started))
            return lease
        except BaseException:
            if slot:
                held = slot[0]
                if held is not None and held.out:  # handed out, then a listener raised
                    held.release()
                else:
                    if held is not None:  # an idle connection whose check was interrupted, or a new one
                        self._close(held)
                    self._hand_over(None, held, permit=held is None)
            raise

    def _new_lease(self, deadline: Optional[float], connect: bool, slot: list[Optional[Lease]]) -> Steps[Lease]:
        """Open a connection in the empty slot of ``slot`` (its permit held); a generator of its waits.

        The pause before a reconnect to a failing host (``reconnect_jitter``) is taken by
        :meth:`acquire_steps` before the slot and permit, never here.
        """
        r = Resource(self.host, socket_timeout=self.socket_timeout, connect_timeout=self.connect_timeout,
                     max_frame_size=self.max_frame_size, open=False, ssl_context=self.ssl_context,
                     keepalive=self.keepalive)
        lease = Lease(self, r, self._generation)
        lease.permit = True
        slot[0] = lease  # the permit moves with it (the except path gives back the lease's permit)
        if connect:
            try:
                yield Open(r, deadline)
            except BrokerUnavailable as exc:
                self._failing = not isinstance(exc, TLSError)  # a TLS mistake is not the host failing
                raise
            self._failing = False
            self.connected(lease)
        self._opened_one(lease, report=connect)
        return lease

    def connected(self, lease: Lease) -> None:
        """Give back the connect permit of ``lease`` (its connection is open): the next connect may start.

        A lease lent unopened (``Lease.opened``) is reported as ``ConnectionOpened`` here, once it is up.
        """
        with self._lock:
            if not lease.permit:
                return
            lease.permit = False
            self._connecting -= 1
            self._serve()
        if lease.out and self.listeners:  # lent unopened: its connection is up now
            self.listeners.emit(ev.ConnectionOpened(self.address))

    def _permit_for(self, slot: list[Optional[Lease]]) -> bool:
        """Take a connect permit for the slot of ``slot`` (its connection just closed): True if one was free.

        Otherwise the empty slot goes back to the pool, in the same locked step, and ``slot`` is emptied.
        """
        with self._lock:
            if self._connecting < self.max_connecting:
                self._connecting += 1
                if self._connecting > self._connecting_peak:
                    self._connecting_peak = self._connecting
                slot[0] = None  # the last step: the slot now carries the permit
                return True
            self._in_use -= 1
            self._stack.appendleft(None)
            del slot[0]  # the last step: an interrupt after it leaves nothing with the caller
            return False

    def _grab(self, fresh: bool, slot: list[Optional[Lease]]) -> bool:
        """Take what the stack offers now (the lock held): an idle lease, or an empty slot with a permit."""
        stack = self._stack
        if not stack:
            return False
        # Subscripts, not pop(): a signal handler runs only at calls and loops, so these steps
        # cannot be interrupted half done (a slot taken but not counted).
        if stack[-1] is not None and not (fresh and stack[0] is None):
            at = 0 if fresh else -1  # fresh, every slot idle: the oldest idle one, to be replaced
            lease = stack[at]
            del stack[at]
            self._in_use += 1
            self._idle -= 1
            slot.append(lease)  # the last step: an interrupt after it leaves the slot with the caller
            return True
        return self._grab_empty(slot)

    def _serve(self) -> None:
        """Give empty slots, each with a connect permit, to the oldest waiters while both last (the lock held)."""
        stack, waiters = self._stack, self._waiters
        while waiters and stack and stack[0] is None and self._connecting < self.max_connecting:
            waiter = waiters[0]
            del stack[0]
            self._in_use += 1
            self._connecting += 1
            if self._connecting > self._connecting_peak:
                self._connecting_peak = self._connecting
            waiter.item = None
            del waiters[0]
            waiter.wake()

    def new_waiter(self) -> Waiter:
        """Return a waiter for a checkout that must wait in line (an I/O flavour overrides it)."""
        return Waiter()

    def _take(self, end: float, wait: float, fresh: bool, deadline: Optional[float], slot: list[Optional[Lease]],
              first: bool) -> Steps[None]:
        """Take a slot into ``slot`` (an idle lease, or ``None``: an empty slot and a connect permit), waiting in line.

        :param first: the caller was served already (its connection was unusable): it goes first in line.
        """
        with self._lock:
            if (first or not self._waiters) and self._grab(fresh, slot):
                return
            waiter = self.new_waiter()
            if first:
                self._waiters.appendleft(waiter)
            else:
                self._waiters.append(waiter)
        now = time.monotonic()
        by_deadline = False
        if deadline is not None and deadline < end:
            end, by_deadline = deadline, True
        try:
            if (yield Wait(waiter, max(0.0, end - now))):
                slot.append(waiter.item)  # type: ignore[arg-type]
                return
        except BaseException:  # interrupted while waiting (KeyboardInterrupt ...): leave the line first
            with self._lock:
                item = waiter.item
                if item is _UNSET:
                    self._waiters.remove(waiter)
            if item is not _UNSET and not slot:  # a slot was handed over meanwhile: pass it on
                self._pass_on(item)  # type: ignore[arg-type]
            raise
        with self._lock:
            if waiter.item is not _UNSET:  # handed over just as the wait ended: take it
                slot.append(waiter.item)  # type: ignore[arg-type]
                return
            self._waiters.remove(waiter)
            if self._grab(fresh, slot):  # freed meanwhile without a hand-over (an interrupted give-back)
                return
            self._timeouts += 1
            in_use, connecting = self._in_use, self._connecting
        if self.listeners:
            self.listeners.emit(ev.PoolTimedOut(self.address, time.monotonic() - now))
        busy = (f"{in_use} in use, {connecting} connecting" if connecting >= self.max_connecting
                else f"{in_use} in use")
        if by_deadline:
            raise DeadlineExceeded(f"the call's deadline passed while waiting for a connection to {self.host} "
                                   f"({busy})", sent=False)
        hint = (f"; {connecting} connects were in progress (max_connecting {self.max_connecting}): the broker "
                "is slow to accept, or raise max_connecting" if connecting >= self.max_connecting else "")
        raise PoolTimeout(
            f"no connection to {self.host} became free within {wait:g} s "
            f"({in_use} in use = size {self.size} + max_overflow {self.max_overflow}){hint}; "
            "raise size, max_overflow or pool_timeout, or hold connections for less time",
            host=self.address)

    def _pass_on(self, item: Optional[Lease]) -> None:
        """Give back a slot handed to a waiter that left (an idle lease, or an empty slot with its permit)."""
        if item is None:
            self._hand_over(None, permit=True)
        elif not self._hand_over(item):
            self._close(item, reason="older generation" if item.generation != self._generation else "overflow")
            self._hand_over(None)

    def _hand_over(self, lease: Optional[Lease], returning: Optional[Lease] = None, closed: bool = False,
                   permit: bool = False) -> bool:
        """Give a slot to the oldest waiter, or put it back: a lease on top, an empty slot at the bottom.

        The one place a returned slot changes hands; ``lease`` is ``None`` for an empty slot.
        ``returning`` is the lease being given back (its ``out`` flag is cleared in the same
        locked step, so that a give-back interrupted before this point can be made again, and
        its connect permit, if it still holds one, is given back); ``closed`` counts its
        connection as closed in that same step; ``permit``: the caller gives back a connect
        permit that no lease holds (an empty slot taken for a connect that never started).
        An empty slot goes to a waiter only with a free permit (:meth:`_serve`).

        :returns: False when ``lease`` was not taken (no waiter and ``size`` connections
            are idle already, or it belongs to an older generation): the caller closes it and
            hands over an empty slot instead.
        """
        now = time.monotonic()  # before the lock: the locked steps below make no call until the last
        with self._lock:
            if lease is not None and ((not self._waiters and self._idle >= self.size)
                                      or lease.generation != self._generation):
                return False
            if returning is not None:
                returning.out = False
                if closed and returning.counted:
                    returning.counted = False
                    self._closed += 1
                if returning.permit:
                    returning.permit = False
                    self._connecting -= 1
            if permit:
                self._connecting -= 1
            if lease is not None and self._waiters:
                waiter = self._waiters[0]
                waiter.item = lease
                del self._waiters[0]
                waiter.wake()  # (interrupted before this: the waiter takes the item when its wait ends)
                return True
            self._in_use -= 1
            if lease is None:
                self._stack.appendleft(None)
                self._serve()  # (interrupted before this: a waiter looks at the stack when its wait ends)
            else:
                lease.returned = now
                self._idle += 1
                self._stack.append(lease)  # the last step: a signal may only land after it
            return True

    def _unusable(self, lease: Lease) -> Optional[str]:
        """Check an idle connection before lending it again, without I/O: why it must be replaced, or ``None``.

        Free checks: its generation, its age, one non-blocking poll that sees a
        broker that closed the connection (e.g. by restarting).  The idle ping,
        when due (:meth:`_ping_due`), is a step of :meth:`acquire_steps`.
        """
        r = lease.resource
        if lease.generation != self._generation:
            return f"of an older generation of the pool ({self._cleared_by})"
        if r.connection.is_stale():
            return "stale (the broker closed it, e.g. it restarted)"
        now = time.monotonic()
        if self.max_age is not None and now - lease.created > self.max_age:
            return f"older than max_age {self.max_age:g} s"
        if self.max_idle_time is not None and now - lease.returned > self.max_idle_time:
            return f"idle longer than max_idle_time {self.max_idle_time:g} s"
        return None

    def _ping_due(self, lease: Lease) -> bool:
        """True when ``lease`` sat idle longer than ``idle_ping``: a ``status()`` round trip must vouch for it."""
        return self.idle_ping is not None and time.monotonic() - lease.returned > self.idle_ping

    def _opened_one(self, lease: Lease, report: bool = True) -> None:
        """Count a connection opened for ``lease`` (once) and report it; the caller's except path closes it.

        :param report: emit ``ConnectionOpened`` now; False for a connection lent unopened, reported
            when it is up (:meth:`connected`).
        """
        with self._lock:
            if not lease.counted:
                self._opened += 1
                lease.counted = True
        if report and self.listeners:
            self.listeners.emit(ev.ConnectionOpened(self.address))

    def _close(self, lease: Lease, replaced: bool = False, reason: str = "interrupted") -> None:
        """Close a connection; count it closed if it was counted open (once); its slot stays with the caller."""
        with self._lock:
            if lease.counted:
                lease.counted = False
                self._closed += 1
                self._replaced += replaced
        lease.resource.close()
        if self.listeners:
            self.listeners.emit(ev.ConnectionReplaced(self.address, reason) if replaced
                                else ev.ConnectionClosed(self.address, reason))

    def give_back(self, lease: Lease) -> None:
        """Take back a lent connection (``Lease.release`` calls this): keep it idle, or close it.

        It is closed when it failed or is out of step, outlived ``max_age``,
        belongs to a closed generation of the pool, or would exceed ``size``
        idle connections.  The slot goes to the oldest waiter first.
        """
        if lease.fork != fork_generation():
            lease.out = False
            return  # the parent's connection, seen in a forked child: not ours to use or close
        self._lent.discard(lease)
        r = lease.resource
        conn = r.connection
        keep = conn.reusable and lease.generation == self._generation
        if keep and self.max_age is not None and time.monotonic() - lease.created > self.max_age:
            keep = False
        try:
            if keep and self._hand_over(lease, lease):
                return
            reason = ("failed" if conn.failed else "out of step" if conn.pending or conn.extra
                      else self._cleared_by if lease.generation != self._generation
                      else "max_age" if keep is False and conn.reusable and self.max_age is not None
                      and time.monotonic() - lease.created > self.max_age else "overflow")
            r.close()  # idempotent; the slot is given back once the socket is closed
            self._hand_over(None, lease, closed=True)
            if self.listeners:
                self.listeners.emit(ev.ConnectionClosed(self.address, reason))
        finally:
            if self.listeners:
                self.listeners.emit(ev.PoolCheckedIn(self.address))

    def top_up(self) -> int:
        """Open connections until ``min_size`` are open (idle or lent), as the maintenance thread does.

        Takes free slots and connect permits without waiting (never more than
        ``max_connecting`` connects at once, never ahead of a waiting caller);
        stops at the first failure, after which the pool is not topped up again
        for a jittered, growing backoff.

        :returns: how many connections were opened.
        """
        opened = 0
        now = time.monotonic()
        if now < self._topup_after:
            return 0
        while True:
            slot: list[Optional[Lease]] = []
            with self._lock:
                if (self._idle + self._in_use >= self.min_size or self._waiters
                        or not self._grab_empty(slot)):
                    return opened
            try:
                lease = drive(self._new_lease(time.monotonic() + self.connect_timeout, True, slot))
            except BaseException as exc:
                if slot:
                    held = slot[0]
                    if held is not None:
                        self._close(held, reason="min_size connect failed")
                    self._hand_over(None, held, permit=held is None)
                if not isinstance(exc, Exception):
                    raise
                self._topup_failures += 1
                delay = _TOPUP_BACKOFF.delay(self._topup_failures, self._rng)
                self._topup_after = time.monotonic() + delay
                log.info("could not open a connection to %s for min_size %d (retried in %.1f s): %s",
                         self.host, self.min_size, delay, exc)
                return opened
            self._topup_failures = 0
            opened += 1
            if not self._hand_over(lease, lease):  # the pool was cleared meanwhile: not of this generation
                self._close(lease, reason=self._cleared_by)
                self._hand_over(None)
                return opened

    def sweep(self) -> int:
        """Close the idle connections that cannot serve any more, as the maintenance thread does.

        An idle connection goes when the broker closed it (its socket polls
        readable: an end of file, a reset, or bytes nobody asked for; over TLS,
        records for the TLS layer alone are read and the connection kept), or
        when it sat idle longer than ``max_idle_time`` or is older than
        ``max_age``.  Under the lock only times are compared and one
        non-blocking ``poll`` made per idle connection; the suspects are taken
        out of the stack, checked and closed outside it, and their slots go to
        waiters first.  :meth:`top_up` refills ``min_size`` afterwards.

        :returns: how many connections were closed.
        """
        now = time.monotonic()
        taken: list[tuple[Lease, Optional[str]]] = []
        with self._lock:
            for lease in [held for held in self._stack if held is not None]:
                why = self._expired(lease, now)
                if why is None and not lease.resource.connection.readable():
                    continue
                self._stack.remove(lease)  # lent to the sweep for a moment: in use, not idle
                self._idle -= 1
                self._in_use += 1
                taken.append((lease, why))
        closed = 0
        for lease, why in taken:
            if why is None and not lease.resource.connection.is_stale():  # TLS records only: still good
                if self._hand_over(lease, lease):
                    continue
                why = self._cleared_by if lease.generation != self._generation else "overflow"
            self._close(lease, reason=why or "stale (the broker closed it while idle)")
            self._hand_over(None)
            closed += 1
        if closed:
            log.info("closed %d idle connection(s) to %s that could not serve any more", closed, self.host)
        return closed

    def _expired(self, lease: Lease, now: float) -> Optional[str]:
        """Why the idle ``lease`` must go by the clock alone (``max_idle_time``, ``max_age``), or ``None``."""
        if self.max_idle_time is not None and now - lease.returned > self.max_idle_time:
            return f"idle longer than max_idle_time {self.max_idle_time:g} s"
        if self.max_age is not None and now - lease.created > self.max_age:
            return f"older than max_age {self.max_age:g} s"
        return None

    def _grab_empty(self, slot: list[Optional[Lease]]) -> bool:
        """Take an empty slot and a connect permit if both are free now (the lock held)."""
        stack = self._stack
        if stack and stack[0] is None and self._connecting < self.max_connecting:
            del stack[0]
            self._in_use += 1
            self._connecting += 1
            if self._connecting > self._connecting_peak:
                self._connecting_peak = self._connecting
            slot.append(None)  # the last step
            return True
        return False

    def connection(self, pool_timeout: Optional[float] = None) -> "Checkout":
        """Check a connection out for a ``with`` block: ``with pool.connection() as r:``.

        The connection goes back to the pool when the block ends, or is closed
        if it failed in transport.  Its calls are reported to the pool's
        listeners while it is out.

        :param pool_timeout: seconds to wait for a free connection; ``None``: the pool's ``pool_timeout``.
        :returns: a context manager whose ``__enter__`` gives a :class:`~htcluster._io.resource.Resource`.
        :raises PoolTimeout: none became free in time.
        :raises BrokerUnavailable: a new connection could not be opened.
        """
        return Checkout(self, pool_timeout)

    def close(self) -> None:
        """Close the idle connections now; those lent out are closed when returned.

        The pool stays usable: later checkouts open new connections.  The
        maintenance thread stops keeping ``min_size`` open until the pool is used again.
        """
        if self._kept:
            self._kept = False
            maintainer.forget(self)
        self.clear("pool closed")

    def clear(self, reason: str = "host failed") -> int:
        """Start a new generation of the pool: close the idle connections now, and the lent ones when they come back.

        The attempt layer calls this when a call finds the host failed (a
        transport failure: the broker may have restarted), so that no
        connection opened before the failure is handed out again (PyMongo's
        CMAP "pool generations").  :meth:`close` is ``clear("pool closed")``.

        :param reason: why, for the ``ConnectionClosed`` events and the log.
        :returns: the new generation (an int, one more than before).
        """
        with self._lock:
            leases = [lease for lease in self._stack if lease is not None]
            self._stack = deque([None] * len(self._stack))
            self._idle = 0
            self._generation += 1
            self._cleared_by = reason
            generation = self._generation
            for lease in leases:
                if lease.counted:
                    lease.counted = False
                    self._closed += 1
            self._serve()
        for lease in leases:
            lease.resource.close()
            if self.listeners:
                self.listeners.emit(ev.ConnectionClosed(self.address, reason))
        return generation

    def abort(self) -> int:
        """Close every connection at once: the idle ones, and those lent out, whose calls in flight fail.

        A call in flight fails as when the broker goes away (``BrokerUnavailable``,
        ``sent=True``), and its connection is closed when it comes back.  The pool
        stays usable (a host removed with ``remove(host, drain=False)``).

        :returns: how many lent connections were shut.
        """
        self.close()
        self._cut = self._generation  # leases of older generations are cut, also those being taken now
        lent = [lease for lease in list(self._lent) if lease.out]
        for lease in lent:
            lease.resource.connection.interrupt()
        return len(lent)

    def __enter__(self) -> "ConnectionPool":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Checkout:
    """The context manager of :meth:`ConnectionPool.connection`: acquire on enter, release on exit."""

    __slots__ = ("pool", "pool_timeout", "lease")

    def __init__(self, pool: ConnectionPool, pool_timeout: Optional[float]) -> None:
        self.pool = pool
        self.pool_timeout = pool_timeout
        self.lease: Optional[Lease] = None

    def __enter__(self) -> Resource:
        if self.lease is not None:
            raise RuntimeError("this pool.connection() is already in use; call pool.connection() again")
        self.lease = self.pool.acquire(pool_timeout=self.pool_timeout)
        resource = self.lease.resource
        resource.listeners = self.pool.listeners  # its calls are reported while it is lent out
        return resource

    def __exit__(self, *exc_info: object) -> None:
        lease, self.lease = self.lease, None
        if lease is not None:
            lease.resource.listeners = None
            lease.release()

