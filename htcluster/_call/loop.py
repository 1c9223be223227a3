"""The multiplexing loop: many attempts' exchanges at once, in the calling thread, on one ``poll``.

A :class:`Loop` takes attempts that have a leased connection
(:meth:`Attempt.begin <htcluster._call.attempt.Attempt.begin>` with
``connect=False``) and drives each one through its steps without blocking:
connect (non-blocking, when the pool lent a new connection; with TLS, the
handshake too, stepped on the same ``poll``), open the call's
namespace on the connection if it is not open yet, send the request frame,
read the reply frame, decode it (:mod:`htcluster._wire`).  :meth:`Loop.wait`
returns the attempts that finished, with :attr:`~Attempt.result` or
:attr:`~Attempt.error` set; the caller then :meth:`~Attempt.finish` es each
(the attempt reports to health, never the loop).

Broadcasts, multicasts, hedged calls and probes all run on it: every host
costs one round trip of wall time whatever their number, every connect
starts at once, and a host that cannot connect costs its own slot only.  A
plain call is its one-connection case, made by the blocking
:meth:`Connection.exchange <htcluster._io.connection.Connection.exchange>`.
Each connection's own timeouts (``connect_timeout``, ``socket_timeout``) and
the attempt's deadline bound its steps; one that runs out is tainted (closed).

Connects here honour the pool's ``max_connecting`` like blocking ones: the
lease lent unopened holds a connect permit from checkout until its connection
is up (TLS handshake included; ``Lease.opened``) or the lease is released, and
a broadcast waits for a permit at checkout like any caller, within its
deadline.  Hosts differ per attempt, so a loop never waits for its own permits.
"""
from __future__ import annotations

import select
import time
from typing import Callable, NamedTuple, Optional, Sequence

from .._policy.steps import Steps, drive
from .._wire import ANSWERS
from .attempt import Attempt

__all__ = ["Loop", "LoopWait", "NewLoop", "run_all", "run_all_steps"]

_READ = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP
_WRITE = select.POLLOUT | select.POLLERR | select.POLLHUP
_CONNECTING, _SENDING, _RECEIVING, _DONE = 0, 1, 2, 3


class Loop:
    """Attempts in flight on one ``poll`` object (register/modify are user-space only: no syscall per host).

    Not thread-safe: one thread drives it.  ``len(loop)`` is the number of attempts in flight.
    """

    def __init__(self) -> None:
        self.poller = select.poll()
        self.live: dict[int, Attempt] = {}  # file descriptor -> its attempt
        self.ready: list[Attempt] = []  # finished, not yet returned by wait()

    def __len__(self) -> int:
        return len(self.live) + len(self.ready)

    def add(self, attempt: Attempt) -> None:
        """Start ``attempt``'s exchange (it has begun: it holds a connection, opened or not)."""
        conn = attempt.resource.connection
        try:
            if not conn.is_open and not conn.connecting:
                attempt.end = conn.begin_connect(attempt.deadline)
                attempt.phase = _CONNECTING
                self.watch(attempt, conn.fileno(), _WRITE)
                return
            self.send_first(attempt)
        except Exception as exc:
            self.fail(attempt, exc)

    def watch(self, attempt: Attempt, fd: int, mask: int) -> None:
        if attempt.fd != fd:
            if attempt.fd >= 0:
                self.unwatch(attempt)
            self.poller.register(fd, mask)
            attempt.fd = fd
            self.live[fd] = attempt
        else:
            self.modify(attempt, mask)

    def modify(self, attempt: Attempt, mask: int) -> None:
        """Wait for ``mask`` (``poll`` flags) on the socket ``attempt`` already watches."""
        self.poller.modify(attempt.fd, mask)

    def unwatch(self, attempt: Attempt) -> None:
        fd, attempt.fd = attempt.fd, -1
        if fd >= 0 and self.live.get(fd) is attempt:
            del self.live[fd]
            try:
                self.poller.unregister(fd)
            except KeyError:  # pragma: no cover - registered with the live entry
                pass

    def send_first(self, attempt: Attempt) -> None:
        """Send the namespace opening (when needed) or the call itself."""
        resource = attempt.resource
        ns = attempt.namespace
        if ns is not None and ns not in resource.mns:
            attempt.opening = True
            self.send(attempt, "namespace_open", (ns,))
        else:
            attempt.opening = False
            self.send(attempt, attempt.method, attempt.args if ns is None else (resource.mns[ns], *attempt.args))

    def send(self, attempt: Attempt, method: str, args: tuple[object, ...]) -> None:
        conn = attempt.resource.connection
        conn.check_ready()
        frame = conn.codec.encode(method, args)
        attempt.end = conn.start(frame, attempt.deadline)
        attempt.phase = _SENDING
        if conn.send_some():
            attempt.phase = _RECEIVING
            self.watch(attempt, conn.fileno(), _READ)
        else:
            self.watch(attempt, conn.fileno(), _WRITE)

    def fail(self, attempt: Attempt, exc: BaseException) -> None:
        self.unwatch(attempt)
        attempt.error, attempt.phase = exc, _DONE
        self.ready.append(attempt)

    def step(self, attempt: Attempt, mask: int) -> None:
        """Move ``attempt`` on after ``poll`` reported ``mask`` for its socket."""
        conn = attempt.resource.connection
        try:
            if attempt.phase == _CONNECTING:
                want = conn.finish_connect()  # TLS: one handshake step per readiness, all hosts at once
                if want:
                    self.modify(attempt, want)
                    return
                attempt.lease.opened()  # type: ignore[union-attr]  # its connect permit goes to the next connect
                self.send_first(attempt)
                return
            if attempt.phase == _SENDING:
                if conn.send_some():
                    attempt.phase = _RECEIVING
                    self.modify(attempt, _READ)
                return
            body = conn.recv_some()
            if body is None:
                return
            try:
                answer = conn.codec.decode(body)
            except ANSWERS:
                raise
            except BaseException:
                conn.taint()
                raise
            if attempt.opening:
                attempt.resource.mns.remember(str(attempt.namespace), answer)
                self.send_first(attempt)
                return
        except Exception as exc:
            self.fail(attempt, exc)
            return
        self.unwatch(attempt)
        attempt.result, attempt.phase = answer, _DONE
        self.ready.append(attempt)

    def expire_due(self, now: float) -> None:
        for attempt in [a for a in self.live.values() if a.end <= now]:
            conn = attempt.resource.connection
            self.fail(attempt, conn.connect_expired() if attempt.phase == _CONNECTING else conn.expire())

    def timeout(self, until: Optional[float]) -> Optional[float]:
        """Expire the attempts that are due; return the seconds to wait for a socket before looking again.

        The one clock of both flavours of :meth:`wait`.

        :param until: a ``time.monotonic()`` time to stop waiting at (``None``: none).
        :returns: seconds until the soonest deadline (or ``until``); ``None`` when the wait is over:
            an attempt finished, none is left in flight, or ``until`` has passed.
        """
        while not self.ready and self.live:
            now = time.monotonic()
            soonest = min(a.end for a in self.live.values())
            if until is not None and until < soonest:
                if until <= now:
                    return None
                soonest = until
            if soonest > now:
                return soonest - now
            self.expire_due(now)
        return None

    def wait(self, until: Optional[float] = None) -> list[Attempt]:
        """Drive the attempts in flight until at least one finishes, or until ``until`` passes.

        :param until: a ``time.monotonic()`` time to return by even if nothing finished (``None``: none).
        :returns: the attempts that finished (``result`` or ``error`` set), possibly empty at ``until``.
        :raises BaseException: an interrupt (``KeyboardInterrupt``) propagates after every
            connection still in flight is tainted; their attempts are left for the caller to finish.
        """
        try:
            while (timeout := self.timeout(until)) is not None:
                for fd, mask in self.poller.poll(timeout * 1000.0 + 1):
                    attempt = self.live.get(fd)
                    if attempt is not None:
                        self.step(attempt, mask)
                if until is not None and time.monotonic() >= until:
                    break
        except BaseException:
            self.abort()
            raise
        done, self.ready = self.ready, []
        return done

    def remove(self, attempt: Attempt) -> None:
        """Stop driving ``attempt`` (e.g. it lost a hedge); its connection is the caller's to close."""
        self.unwatch(attempt)
        if attempt in self.ready:
            self.ready.remove(attempt)

    def abort(self) -> list[Attempt]:
        """Taint every connection in flight and forget the attempts; return them (to be finished)."""
        pending = list(self.live.values())
        for attempt in pending:
            self.unwatch(attempt)
            if attempt.lease is not None:
                attempt.resource.connection.taint()
        return pending


class NewLoop:
    """A step (:mod:`htcluster._policy.steps`): a new multiplexing loop of the driver's I/O flavour."""

    __slots__ = ()

    def run(self) -> Loop:
        """A blocking :class:`Loop`."""
        return Loop()


class LoopWait(NamedTuple):
    """A step: drive ``loop`` until an attempt finishes or ``until`` passes (:meth:`Loop.wait`)."""

    loop: Loop
    until: Optional[float]

    def run(self) -> list[Attempt]:
        """Wait blocking."""
        return self.loop.wait(self.until)


def run_all(attempts: Sequence[Attempt], judge: Optional[Callable[[Attempt], None]] = None) -> None:
    """Run every attempt of ``attempts`` at once on one :class:`Loop`, each to its end.

    Each attempt begins (a non-blocking connect where the pool lends a new
    connection), is driven on the loop, and is finished (reported, released);
    a reused connection that broke before sending is retried once, fresh.
    Afterwards each attempt has :attr:`~Attempt.result` or :attr:`~Attempt.error`
    set and :attr:`~Attempt.took` (seconds).

    :param attempts: attempts not yet begun, on distinct hosts.
    :param judge: called with each attempt that completed, before it is finished
        (e.g. to describe a probe's error); it may replace ``attempt.error``.
    :raises BaseException: an interrupt propagates after every attempt in
        flight was cancelled (connection closed, nothing learnt of its host).
    """
    drive(run_all_steps(attempts, judge))


def run_all_steps(attempts: Sequence[Attempt], judge: Optional[Callable[[Attempt], None]] = None) -> Steps[None]:
    """:func:`run_all` as a generator of its waits (:mod:`htcluster._policy.steps`), for every I/O flavour."""
    loop: Loop = yield NewLoop()

    def start(attempt: Attempt) -> Steps[None]:
        try:
            yield from attempt.begin_steps(connect=False)
        except Exception as exc:  # no connection could be had: reported by the attempt, kept as its error
            attempt.error = exc
            return
        loop.add(attempt)

    try:
        for attempt in attempts:
            yield from start(attempt)
        while len(loop):
            done: list[Attempt] = yield LoopWait(loop, None)
            for attempt in done:
                if judge is not None:
                    judge(attempt)
                if attempt.finish(attempt.error):  # a reused connection broke before sending: once more
                    yield from start(attempt)
    except BaseException as exc:
        loop.abort()
        for attempt in attempts:  # every one still holding a connection, in the loop or not yet
            attempt.cancel(exc)
        raise
