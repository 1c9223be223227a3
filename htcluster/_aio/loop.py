"""The multiplexing loop on asyncio: the attempt steps of :class:`htcluster._call.loop.Loop`, woken by the event loop.

:class:`AsyncLoop` is a :class:`~htcluster._call.loop.Loop` whose sockets are
watched by the running event loop (``add_reader``/``add_writer``) instead of
a ``poll`` object (for reading through each connection's
:class:`~htcluster._aio.watch.Watch`, registered across calls, which calls
the loop's step instead of reading): connecting (TLS handshake included), opening the
namespace, sending, receiving and decoding are the blocking loop's own steps
(``Loop.step``), so broadcasts, multicasts, hedges and probes run here with
the same rules.  :meth:`AsyncLoop.wait` is a coroutine; a task cancelled
while it waits aborts the loop (every connection in flight unwatched, then
closed) and re-raises, and the engine generator cancels its attempts
(connections closed, leases released, hosts untouched).
"""
from __future__ import annotations

import asyncio
import select
import time
from functools import partial
from typing import Optional

from .._call.attempt import Attempt
from .._call.loop import Loop
from .._io.connection import Connection
from .watch import watch_of, watching

__all__ = ["AsyncLoop"]

_READ = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP


class AsyncLoop(Loop):
    """Attempts in flight on the running event loop (create it inside a coroutine)."""

    def __init__(self) -> None:  # (no poll object: the event loop watches the sockets)
        self.live: dict[int, Attempt] = {}
        self.ready: list[Attempt] = []
        self.aloop = asyncio.get_running_loop()
        self.writing: dict[int, bool] = {}  # fd -> watched for writing (else reading)
        self.waker: Optional[asyncio.Future[None]] = None

    def watch(self, attempt: Attempt, fd: int, mask: int) -> None:
        if attempt.fd != fd:
            if attempt.fd >= 0:
                self.unwatch(attempt)
            attempt.fd = fd
            self.live[fd] = attempt
        self.modify(attempt, mask)

    def modify(self, attempt: Attempt, mask: int) -> None:
        fd = attempt.fd
        writing = not mask & select.POLLIN
        before = self.writing.get(fd)
        if before is writing:
            return
        conn = attempt.resource.connection
        if before is not None:
            self.stop(conn, fd, before)
        if writing:
            self.aloop.add_writer(fd, self.ready_fd, attempt, select.POLLOUT)
        else:  # the connection's watch, registered between calls, calls the step
            watch_of(conn, self.aloop).listen(partial(self.ready_fd, attempt, _READ))
        self.writing[fd] = writing

    def stop(self, conn: Connection, fd: int, writing: bool) -> None:
        """Stop waking the loop for ``fd``: its writer removed, or its watch told to stop calling the loop."""
        if writing:
            self.aloop.remove_writer(fd)
        else:
            watch = watching(conn)
            if watch is not None:  # (none when the socket was closed meanwhile: it unregistered itself)
                watch.listen(None)

    def unwatch(self, attempt: Attempt) -> None:
        fd, attempt.fd = attempt.fd, -1
        if fd >= 0 and self.live.get(fd) is attempt:
            del self.live[fd]
            before = self.writing.pop(fd, None)
            if before is not None:
                self.stop(attempt.resource.connection, fd, before)

    def ready_fd(self, attempt: Attempt, mask: int) -> None:
        """The event loop's callback: ``attempt``'s socket is ready; take its next step."""
        if attempt.fd < 0 or self.live.get(attempt.fd) is not attempt:
            return  # unwatched meanwhile
        self.step(attempt, mask)
        if self.ready:
            self.wake()

    def wake(self) -> None:
        waker = self.waker
        if waker is not None and not waker.done():
            waker.set_result(None)

    async def wait(self, until: Optional[float] = None) -> list[Attempt]:  # type: ignore[override]
        """Drive the attempts in flight until at least one finishes, or until ``until`` passes.

        :param until: a ``time.monotonic()`` time to return by even if nothing finished (``None``: none).
        :returns: the attempts that finished (``result`` or ``error`` set), possibly empty at ``until``.
        :raises asyncio.CancelledError: the task was cancelled: every connection still in flight is
            unwatched and closed first; their attempts are left for the caller to finish.
        """
        try:
            while (timeout := self.timeout(until)) is not None:
                self.waker = waker = self.aloop.create_future()
                timer = self.aloop.call_later(timeout, self.wake)
                try:
                    await waker
                finally:
                    timer.cancel()
                    self.waker = None
                if until is not None and time.monotonic() >= until:
                    break
        except BaseException:
            self.abort()
            raise
        done, self.ready = self.ready, []
        return done
