"""Many calls on many connections at once, in the calling thread: frames in flight, not threads.

:func:`exchange_all` encodes every request into memory, sends every frame,
then reads the replies as the sockets become readable (``selectors``) and
decodes each with the same checks as a single call (method name, sequence
id, one reply per frame).  It is how ``broadcast`` and ``multicast`` reach
many brokers with one thread, the way ``lupyne.client`` parallelised its
broadcasts "with asynchronous requests and responses"; every host costs one
round trip of wall time, whatever their number.

Each connection's own ``timeout`` and the shared deadline both bound its
exchange; a connection that fails or runs out of time is tainted (closed),
exactly as in :meth:`Connection.exchange <htcluster.transport.Connection.exchange>`.
"""
from __future__ import annotations

import selectors
import time
from typing import Any, Optional, Sequence

from .resource import CODECS, Resource, decode, encode

__all__ = ["Exchange", "exchange_all"]


class Exchange:
    """One call of a multiplexed batch: ``resource.method(*args)``, then its outcome.

    :ivar ok: True when :attr:`result` is the answer; False when it is the exception raised.
    """

    __slots__ = ("resource", "method", "args", "result", "ok", "end", "sock")

    def __init__(self, resource: Resource, method: str, args: Sequence[Any]) -> None:
        self.resource, self.method, self.args = resource, method, tuple(args)
        self.result: Any = None
        self.ok = False
        self.end = 0.0
        self.sock: Any = None

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
    selector = selectors.DefaultSelector()
    live: dict[int, Exchange] = {}
    try:
        for call in calls:
            conn = call.resource._conn
            try:
                encode(call.resource, call.method, CODECS[call.method][0], call.args)
                call.end = conn.start(deadline)
                call.sock = conn.sock
                if conn.send_some():
                    selector.register(conn.sock, selectors.EVENT_READ, call)  # type: ignore[arg-type]
                else:
                    selector.register(conn.sock, selectors.EVENT_WRITE, call)  # type: ignore[arg-type]
                live[id(call)] = call
            except Exception as exc:
                call.fail(exc)
        while live:
            now = time.monotonic()
            soonest = min(call.end for call in live.values())
            if soonest <= now:
                for call in [c for c in live.values() if c.end <= now]:
                    _drop(selector, live, call)
                    call.fail(call.resource._conn.expire())
                continue
            for key, mask in selector.select(soonest - now):
                call = key.data
                conn = call.resource._conn
                try:
                    if mask & selectors.EVENT_WRITE:
                        if conn.send_some():
                            selector.modify(key.fileobj, selectors.EVENT_READ, call)
                        continue
                    if not conn.recv_some():
                        continue
                except Exception as exc:
                    _drop(selector, live, call)
                    call.fail(exc)
                    continue
                _drop(selector, live, call)
                try:
                    call.result, call.ok = decode(call.resource, CODECS[call.method][1]), True
                except Exception as exc:
                    call.fail(exc)
    except BaseException:
        for call in live.values():
            call.resource._conn.taint()
        raise
    finally:
        selector.close()


def _drop(selector: selectors.BaseSelector, live: dict[int, Exchange], call: Exchange) -> None:
    """Stop watching ``call``'s socket (it is done, or failed and closed)."""
    live.pop(id(call), None)
    try:  # a socket closed meanwhile is found by identity (selectors searches its map)
        selector.unregister(call.sock)
    except (KeyError, ValueError):
        pass
