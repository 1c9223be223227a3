"""Many calls on many connections at once, in the calling thread: frames in flight, not threads.

:func:`exchange_all` encodes every request into memory, sends every frame,
then reads the replies as the sockets become readable (one ``poll`` loop)
and decodes each with the same checks as a single call (method name,
sequence id, one reply per frame).  It is how ``broadcast`` and
``multicast`` reach many brokers with one thread, the way ``lupyne.client`` parallelised its
broadcasts "with asynchronous requests and responses"; every host costs one
round trip of wall time, whatever their number.

Each connection's own ``timeout`` and the shared deadline both bound its
exchange; a connection that fails or runs out of time is tainted (closed),
exactly as in :meth:`Connection.exchange <htcluster.transport.Connection.exchange>`.
"""
from __future__ import annotations

import select
import time
from typing import Any, Optional, Sequence

from .resource import CODECS, Resource, decode, encode

__all__ = ["Exchange", "exchange_all"]

_READ = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP
_WRITE = select.POLLOUT | select.POLLERR | select.POLLHUP


class Exchange:
    """One call of a multiplexed batch: ``resource.method(*args)``, then its outcome.

    :ivar ok: True when :attr:`result` is the answer; False when it is the exception raised.
    """

    __slots__ = ("resource", "method", "args", "result", "ok", "end", "fd")

    def __init__(self, resource: Resource, method: str, args: Sequence[Any]) -> None:
        self.resource, self.method, self.args = resource, method, tuple(args)
        self.result: Any = None
        self.ok = False
        self.end = 0.0
        self.fd = -1

    def fail(self, exc: BaseException) -> None:
        self.result, self.ok = exc, False

    def __repr__(self) -> str:
        state = "ok" if self.ok else type(self.result).__name__ if self.result is not None else "pending"
        return f"<Exchange {self.method} on {self.resource.host}: {state}>"


def exchange_all(calls: Sequence[Exchange], deadline: Optional[float] = None) -> None:
    """Run every call of ``calls`` concurrently on its own connection; set each one's outcome.

    Never raises for a call's failure: each :class:`Exchange` gets its answer
    (``ok``) or its exception (``InvalidRequest``, ``BrokerUnavailable``,
    ``DeadlineExceeded``, ``ClientException`` ...).  ``KeyboardInterrupt`` and
    the like propagate, after every connection still in flight is tainted.

    :param calls: the calls; their resources must be distinct connections.
    :param deadline: ``time.monotonic()`` time by which every exchange must
        end (each connection's own ``timeout`` may end it sooner).
    """
    poller = select.poll()  # register/modify are user-space only: no syscall per host, unlike epoll
    live: dict[int, Exchange] = {}  # file descriptor -> its call
    try:
        for call in calls:
            conn = call.resource._conn
            try:
                encode(call.resource, call.method, CODECS[call.method][0], call.args)
                call.end = conn.start(deadline)
                fd = conn.sock.fileno()  # type: ignore[union-attr]
                poller.register(fd, _READ if conn.send_some() else _WRITE)
                call.fd = fd
                live[fd] = call
            except Exception as exc:
                call.fail(exc)
        while live:
            now = time.monotonic()
            soonest = min(call.end for call in live.values())
            if soonest <= now:
                for call in [c for c in live.values() if c.end <= now]:
                    _drop(poller, live, call)
                    call.fail(call.resource._conn.expire())
                continue
            for fd, mask in poller.poll((soonest - now) * 1000.0 + 1):
                found = live.get(fd)
                if found is None:
                    continue
                call = found
                conn = call.resource._conn
                try:
                    if mask & select.POLLOUT:
                        if conn.send_some():
                            poller.modify(fd, _READ)
                        continue
                    if not conn.recv_some():
                        continue
                except Exception as exc:
                    _drop(poller, live, call)
                    call.fail(exc)
                    continue
                _drop(poller, live, call)
                try:
                    call.result, call.ok = decode(call.resource, CODECS[call.method][1]), True
                except Exception as exc:
                    call.fail(exc)
    except BaseException:
        for call in live.values():
            call.resource._conn.taint()
        raise


def _drop(poller: "select.poll", live: dict[int, Exchange], call: Exchange) -> None:
    """Stop watching ``call``'s socket (it is done, or failed and closed); before its number can be reused."""
    live.pop(call.fd, None)
    try:
        poller.unregister(call.fd)
    except KeyError:
        pass
