"""A connection's socket watched by the event loop across calls: :class:`Watch`.

Registering a socket with asyncio for each wait (``add_reader``, a
``call_later`` timer, then ``remove_reader`` and ``cancel``) costs two
``epoll_ctl`` calls, three handles and a timer-heap entry per call, more than
the rest of an asyncio call together.  A :class:`Watch` is made once per
connection (and event loop) instead:

* its reader callback stays registered between calls.  It reads what the
  socket has (``Connection.recv_some``) in the event loop's own turn, so a
  reply frame is whole, or the connection failed, before the waiting task is
  woken (the level-triggered selector then has nothing left to report); with
  no call waiting (the connection is idle in its pool: the broker closed it,
  or sent what nobody asked for) it unregisters itself and reads nothing (the
  pool's checkout finds out, ``Connection.is_stale``);
* its one timer is lazy: armed at a call's deadline, it is left alone by the
  next calls, whose deadlines come later; when it fires it re-arms itself to
  the deadline of the call waiting now, times that call out when it is due,
  or, with no call waiting, unregisters the idle socket.  So an idle
  connection stays watched for at most one ``socket_timeout`` after its last call;
* :meth:`Connection.close <htcluster._io.connection.Connection.close>` tells it
  first (:class:`~htcluster._io.connection.Watcher`): the socket is
  unregistered before its descriptor is closed and its number reused, from
  the loop's thread (another thread's close is handed to the loop, which
  closes the socket once it is unregistered; a forked child never touches
  its parent's event loop).  A call waiting then fails with ``BrokerUnavailable``.

A task cancelled while it waits leaves the watch as it is; the exchange then
closes its connection (out of step), which unregisters it.
"""
from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Callable, Optional

from .._io.connection import Connection, fork_generation
from ..errors import BrokerUnavailable

__all__ = ["Watch", "watch_of", "watching"]


class Watch:
    """The watch of ``loop`` over ``conn``'s open socket: a reader callback and one lazy timer, kept across calls.

    Make it in the loop's thread, with the connection open (:func:`watch_of`).
    """

    __slots__ = ("loop", "conn", "fd", "thread", "fork", "reading", "waiter", "end", "timer", "due", "listener")

    def __init__(self, loop: asyncio.AbstractEventLoop, conn: Connection) -> None:
        self.loop = loop
        self.conn = conn
        self.fd = conn.fileno()
        self.thread = threading.get_ident()  # the loop's
        self.fork = fork_generation()
        self.reading = False  # the reader callback is registered
        self.waiter: Optional[asyncio.Future[Optional[memoryview]]] = None
        self.end = 0.0  # the waiting call's deadline (time.monotonic())
        self.timer: Optional[asyncio.TimerHandle] = None
        self.due = 0.0  # when the timer fires (time.monotonic())
        self.listener: Optional[Callable[[], None]] = None  # a multiplexing loop's step, called when readable

    def receive(self, end: float) -> "asyncio.Future[Optional[memoryview]]":
        """Wait for the reply frame of the request just sent, until the ``time.monotonic()`` time ``end``:
        return the future to await (a plain method: no coroutine of its own per call).

        The future's result is the reply frame's body, or ``None`` when ``end`` passed first.  Its
        exception: ``BrokerUnavailable``, ``BrokerProtocolError``, ``TLSError`` as ``Connection.recv_some``
        (the connection is closed), or ``BrokerUnavailable`` when it was closed by someone else meanwhile.
        A task cancelled while it awaits cancels the future; the caller then closes the connection.
        """
        loop = self.loop
        waiter: asyncio.Future[Optional[memoryview]] = loop.create_future()
        self.waiter = waiter  # every way of resolving it forgets it first
        self.end = end
        if not self.reading:
            loop.add_reader(self.fd, self.readable)
            self.reading = True
        if self.timer is None or self.due > end:
            self.arm(end)
        return waiter

    def listen(self, listener: Optional[Callable[[], None]]) -> None:
        """Call ``listener`` whenever the socket is readable (a multiplexing loop steps the connection
        itself), instead of reading it for :meth:`receive`; ``None``: stop calling it.

        The socket stays registered for the next call; the timer (armed at one
        ``socket_timeout`` from now unless it is armed) unregisters it once idle.
        """
        self.listener = listener
        if listener is None:
            return
        if not self.reading:
            self.loop.add_reader(self.fd, self.readable)
            self.reading = True
        if self.timer is None:
            self.arm(time.monotonic() + self.conn.timeout)

    def readable(self) -> None:
        """The loop's reader callback: read what came; wake the waiting call once its reply is whole."""
        waiter = self.waiter
        if waiter is None:
            listener = self.listener
            if listener is not None:
                listener()
            else:  # idle: end-of-file or bytes nobody asked for; the checkout decides
                self.stop_reading()
            return
        if waiter.done():  # cancelled: its task closes the connection when it runs
            self.waiter = None
            return
        self.waiter = None  # a close inside recv_some is then this call's own failure, not another's
        try:
            body = self.conn.recv_some()
        except Exception as exc:  # the connection is closed (unwatched) by now
            waiter.set_exception(exc)
            return
        except BaseException:
            self.waiter = waiter
            raise
        if body is None:
            self.waiter = waiter  # a part of the frame: wait on
        else:
            waiter.set_result(body)

    def arm(self, end: float) -> None:
        """Have the timer fire at the ``time.monotonic()`` time ``end`` (instead of when it was due)."""
        if self.timer is not None:
            self.timer.cancel()
        self.due = end
        self.timer = self.loop.call_later(max(0.0, end - time.monotonic()), self.expired)

    def expired(self) -> None:
        """The loop's timer callback: time the waiting call out, wait on for a later one, or stop watching."""
        self.timer = None
        waiter = self.waiter
        if waiter is None:
            if self.listener is not None:  # a multiplexing loop times its own steps
                self.arm(time.monotonic() + self.conn.timeout)
            else:  # idle for a whole timeout: the descriptor is the loop's no longer
                self.stop_reading()
            return
        if time.monotonic() < self.end:  # a later call is waiting now
            self.arm(self.end)
            return
        self.waiter = None
        if not waiter.done():
            waiter.set_result(None)

    def stop_reading(self) -> None:
        """Unregister the reader callback (in the loop's thread)."""
        if self.reading:
            self.reading = False
            self.loop.remove_reader(self.fd)

    def stop(self) -> None:
        """Unregister the socket and cancel the timer (in the loop's thread; the loop may be stopped)."""
        self.listener = None
        self.stop_reading()
        timer, self.timer = self.timer, None
        if timer is not None:
            timer.cancel()

    def closing(self, sock: socket.socket) -> bool:
        """:class:`~htcluster._io.connection.Watcher`: the connection is closing ``sock``; stop watching it.

        :returns: True when the socket is closed later, by the loop (a running loop of another
            thread), after it is unregistered; False when the caller closes it now.
        """
        if self.fork != fork_generation() or self.loop.is_closed():  # nothing of ours to unregister
            return False
        if threading.get_ident() == self.thread or not self.loop.is_running():
            self.closed()
            return False
        try:
            self.loop.call_soon_threadsafe(self.close_later, sock)
        except RuntimeError:  # the loop closed meanwhile: its registrations went with it
            return False
        return True

    def closed(self) -> None:
        """Stop watching; a call still waiting fails with ``BrokerUnavailable`` (``sent=True``)."""
        self.stop()
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            address = self.conn.address
            waiter.set_exception(BrokerUnavailable(
                f"the connection to ThriftBroker {address} was closed while a call waited for its answer",
                host=address, sent=True))

    def close_later(self, sock: socket.socket) -> None:
        """In the loop's thread: stop watching, then close ``sock`` (another thread's close)."""
        try:
            self.closed()
        finally:
            sock.close()

    def __repr__(self) -> str:
        state = "waiting" if self.waiter is not None else "reading" if self.reading else "idle"
        return f"<Watch {self.conn.address} fd={self.fd} {state}>"


def watch_of(conn: Connection, loop: asyncio.AbstractEventLoop) -> Watch:
    """Return ``loop``'s watch over ``conn``'s open socket, made (and the connection told) on first use.

    A watch of another event loop (one that is closed, or an object moved
    between loops) is dropped first: its registration is removed.
    """
    watch = conn.watcher
    if isinstance(watch, Watch) and watch.loop is loop:
        return watch
    if watch is not None:
        conn.watcher = None
        if isinstance(watch, Watch) and not watch.loop.is_closed() and watch.fork == fork_generation():
            if threading.get_ident() == watch.thread or not watch.loop.is_running():
                watch.stop()
            else:
                watch.loop.call_soon_threadsafe(watch.stop)
    watch = conn.watcher = Watch(loop, conn)
    return watch


def watching(conn: Connection) -> Optional[Watch]:
    """Return the watch over ``conn``'s socket, or ``None`` (none made, or the socket closed since)."""
    watch = conn.watcher
    return watch if isinstance(watch, Watch) else None
