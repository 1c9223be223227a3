"""The asyncio I/O of one connection: readiness waits, connect, one exchange; the engine's steps made with ``await``.

The blocking :class:`~htcluster._io.connection.Connection` already works in
non-blocking steps (``begin_connect``/``finish_connect``, ``start``,
``send_some``, ``recv_some``, ``expire``); here the waits between the steps
are the event loop's: a reply is awaited on the connection's
:class:`~htcluster._aio.watch.Watch` (its socket registered across calls, one
lazy deadline timer), a send or connect that must wait uses a one-shot
registration (:func:`ready`: ``loop.add_writer``/``add_reader`` and a
``loop.call_later`` timer).  The name is resolved by the loop's resolver
(``loop.getaddrinfo``; a numeric address without a lookup).  The codec and
frame reader are the same objects as for the blocking flavour.

:func:`adrive` runs the engine's generators (:mod:`htcluster._policy.steps`)
with an ``await`` per step: a pool wait, a connect, an idle ping, a new
multiplexing loop, a wait on it, one attempt.

Cancellation: a task cancelled (or timed out) in the middle of any of these
leaves nothing registered with the loop (closing the connection unregisters
its watch), closes the connection it was using
(it is out of step: a reply may still come) and re-raises; what the caller
holds (a lease, a claim) is given back by the generator's own ``except``.
"""
from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any, AsyncIterator, Awaitable, Callable, Optional, Sequence

from .._call.attempt import Attempt, Run
from .._call.loop import LoopWait, NewLoop
from .._io.resource import Call, Exchange, NamespaceId, Resource, reported_steps
from .._policy.steps import Deliver, Feed, Step, Steps, T
from .._pool.pool import Open, Ping, Sleep, Wait, Waiter
from .._wire import ANSWERS
from ..errors import BrokerUnavailable, DeadlineExceeded
from .watch import watch_of

__all__ = ["AsyncWaiter", "adrive", "astream", "connect", "exchange", "namespace_id", "numeric", "ping", "ready",
           "resolve", "run_attempt"]

_POLLOUT = 0x004  # select.POLLOUT: a mask asking for writability (Connection.finish_connect's answer)


class AsyncWaiter(Waiter):
    """A pool waiter that is a future of the pool's event loop (woken by the one hand-over of the pool)."""

    __slots__ = ("future", "thread")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.future: asyncio.Future[bool] = loop.create_future()
        self.thread = threading.get_ident()  # the loop's thread

    def wake(self) -> None:
        """Resolve the future (a waiter cancelled meanwhile finds :attr:`item` set and passes it on).

        From another thread (the pool's maintenance thread) the loop is asked to do it.
        """
        if threading.get_ident() == self.thread:
            _expire_true(self.future)
        else:
            self.future.get_loop().call_soon_threadsafe(_expire_true, self.future)


def _expire(future: "asyncio.Future[bool]") -> None:
    if not future.done():
        future.set_result(False)


async def ready(fd: int, writing: bool, end: float) -> bool:
    """Wait until ``fd`` is readable (or writable) or the ``time.monotonic()`` time ``end`` passes.

    A one-shot registration, for connects and sends that must wait (a reply is
    awaited on the connection's :class:`~htcluster._aio.watch.Watch`); ``fd``
    must not be watched for reading by a ``Watch`` (a connecting socket never is).

    :param fd: the socket's descriptor.
    :param writing: wait for writability (else readability).
    :param end: a ``time.monotonic()`` time, seconds.
    :returns: True when ready, False at ``end``.  Nothing stays registered with the loop on any way out.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[bool] = loop.create_future()
    if writing:
        loop.add_writer(fd, _expire_true, future)
    else:
        loop.add_reader(fd, _expire_true, future)
    timer = loop.call_later(max(0.0, end - time.monotonic()), _expire, future)
    try:
        return await future
    finally:
        timer.cancel()
        if writing:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


def _expire_true(future: "asyncio.Future[bool]") -> None:
    if not future.done():
        future.set_result(True)


def numeric(host: str, port: int) -> Optional[Sequence[Any]]:
    """Return the ``getaddrinfo`` entry of a numeric address (no lookup, never blocks), or ``None`` for a name."""
    try:
        return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)[0]
    except socket.gaierror:
        return None


async def resolve(host: str, port: int, timeout: float) -> Sequence[Any]:
    """Return the first ``getaddrinfo`` entry of ``host:port``: a numeric address at once, a name on the
    loop's resolver (within ``timeout`` seconds).

    :raises OSError: the name does not resolve (``socket.gaierror``), or not in time (``TimeoutError``).
    """
    entry = numeric(host, port)
    if entry is not None:
        return entry
    try:
        infos = await asyncio.wait_for(asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM),
                                       timeout)
    except asyncio.TimeoutError as exc:
        raise TimeoutError(f"the name lookup of {host} took over {timeout:g} s") from exc
    return infos[0]


async def connect(resource: Resource, deadline: Optional[float] = None) -> None:
    """Open ``resource``'s connection (with TLS, the handshake too) within ``connect_timeout`` and ``deadline``.

    :raises BrokerUnavailable: refused, unreachable, the name does not resolve, timed out (``sent=False``).
    :raises TLSError: the TLS handshake failed.
    :raises DeadlineExceeded: ``deadline`` passed first.
    :raises ClientResourceError: no descriptor left in this process.
    """
    conn = resource.connection
    host = conn.host
    try:
        try:
            resolved = await resolve(host.host, host.port, conn.connect_timeout)
        except OSError as exc:
            raise conn.cannot_connect(exc) from exc
        end = conn.begin_connect(deadline, resolved)
        writing = True
        while True:
            if not await ready(conn.fileno(), writing, end):
                raise conn.connect_expired()
            want = conn.finish_connect()
            if not want:
                return
            writing = bool(want & _POLLOUT)
    except BaseException:
        conn.taint()
        raise


async def exchange(resource: Resource, method: str, args: tuple[Any, ...], kwargs: Optional[dict[str, Any]] = None,
                   deadline: Optional[float] = None) -> Any:
    """Make one call on ``resource``'s open connection: encode, send, receive, decode (as ``Resource.exchange``).

    :raises InvalidRequest: an argument cannot be encoded (nothing sent; the connection stays usable).
    :raises BrokerUnavailable, BrokerProtocolError, DeadlineExceeded: the connection failed (it is closed).
    :raises ClientException: the broker's error answer (the connection stays in step).
    :raises asyncio.CancelledError: the task was cancelled; the connection is closed (out of step).
    """
    conn = resource.connection
    conn.check_ready()
    codec = conn.codec
    frame = codec.encode(method, args, kwargs)
    end = conn.start(frame, deadline)
    try:
        while not conn.send_some():
            if not await ready(conn.fileno(), True, end):
                raise conn.expire()
        body = await watch_of(conn, asyncio.get_running_loop()).receive(end)
        if body is None:
            raise conn.expire()
        return codec.decode(body)
    except ANSWERS:
        raise
    except BaseException:
        conn.taint()
        raise


async def namespace_id(resource: Resource, name: str, deadline: Optional[float] = None) -> int:
    """Return the id of namespace ``name`` on ``resource``'s connection, opening it first if needed.

    :raises ClientException: the namespace does not exist.
    :raises BrokerUnavailable: the connection failed.
    """
    mns = resource.mns
    if name in mns:
        return mns.id_of(name)
    if not isinstance(name, str):
        raise TypeError(f"a namespace name must be a str, got {name!r}")
    ns: int = await exchange(resource, "namespace_open", (name,), None, deadline)
    mns.remember(name, ns)
    return ns


async def ping(resource: Resource, timeout: Optional[float] = None) -> bool:
    """``Resource.ping`` on the loop: one ``status()`` within ``timeout`` (``None``: ``connect_timeout``).

    :returns: True when the broker answered; False when the connection failed (it is then closed).
    """
    limit = resource.connect_timeout if timeout is None else timeout
    try:
        await exchange(resource, "status", (), None, time.monotonic() + limit)
    except (BrokerUnavailable, DeadlineExceeded):
        resource.connection.taint()
        return False
    return True


async def run_attempt(attempt: Attempt) -> Any:
    """Make ``attempt`` on the loop, on one connection (``Attempt.run_steps``); its answer, or its error raised."""
    return await adrive(attempt.run_steps())


async def _wait(step: Wait) -> bool:
    """A pool wait: the waiter's future, resolved by the hand-over (True) or at ``step.timeout`` (False)."""
    future: asyncio.Future[bool] = step.waiter.future  # type: ignore[attr-defined]
    if future.done():
        return future.result()
    timer = asyncio.get_running_loop().call_later(step.timeout, _expire, future)
    try:
        return await future
    finally:
        timer.cancel()


async def _new_loop(step: NewLoop) -> Any:
    from .loop import AsyncLoop  # (the loop module imports this one)
    return AsyncLoop()


#: How each step of an engine generator is made on the loop: its type -> a function returning an awaitable.
_STEPS: dict[type, Callable[[Any], Awaitable[Any]]] = {
    Exchange: lambda step: exchange(*step),
    NamespaceId: lambda step: namespace_id(*step),
    Call: lambda step: adrive(reported_steps(step.resource, step.method, step.args, None, step.deadline)),
    Run: lambda step: adrive(step.attempt.run_steps()),
    LoopWait: lambda step: step.loop.wait(step.until),
    Wait: _wait,
    NewLoop: _new_loop,
    Open: lambda step: connect(step.resource, step.deadline),
    Sleep: lambda step: asyncio.sleep(step.seconds),
    Ping: lambda step: ping(step.resource),
}


def _step(step: Step) -> Awaitable[Any]:
    """Make one step of an engine generator on the running loop: the awaitable of its maker."""
    maker = _STEPS.get(type(step))
    if maker is None:
        raise TypeError(f"no asyncio way to make the step {step!r}")
    return maker(step)


async def adrive(steps: "Steps[T]") -> T:
    """Run an engine generator to its end on the running loop, one ``await`` per step; return its result.

    The asyncio twin of :func:`htcluster._policy.steps.drive`: an exception of
    a step, ``CancelledError`` included, is thrown into the generator where it
    waited.  A step that is itself an engine generator to run (``Run``: an
    attempt; ``Call``: a lent connection's reported call) is run here, on a
    stack (its result sent, or its exception thrown, into the generator that
    asked for it), not by a nested ``adrive``: no coroutine frame per level.
    """
    outer: list[Steps[Any]] = []  # the generators waiting for the one running
    running: Steps[Any] = steps
    value: Any = None
    error: Optional[BaseException] = None
    while True:
        try:
            step = running.send(value) if error is None else running.throw(error)
        except StopIteration as stop:
            if not outer:
                result: T = stop.value
                return result
            running, value, error = outer.pop(), stop.value, None
            continue
        except BaseException as exc:
            if not outer:
                raise
            running, value, error = outer.pop(), None, exc
            continue
        value = error = None
        kind = type(step)
        if kind is Run:
            outer.append(running)
            running = step.attempt.run_steps()  # type: ignore[attr-defined]
            continue
        if kind is Call:
            outer.append(running)
            running = reported_steps(step.resource, step.method, step.args, None,  # type: ignore[attr-defined]
                                     step.deadline)  # type: ignore[attr-defined]
            continue
        try:
            if kind is Exchange:  # the most frequent step: no maker in between
                value = await exchange(*step)  # type: ignore[misc]
            else:
                value = await _step(step)
        except BaseException as exc:
            error = exc


async def astream(steps: "Steps[Any]") -> AsyncIterator[Any]:
    """Run a streaming engine generator on the loop; yield the items it delivers (``stream``'s twin).

    Closing the async generator (``aclose()``) throws ``GeneratorExit`` into
    ``steps``, whose cleanup steps (closing a scanner) are still awaited.
    """
    feed = Feed(steps)
    while (step := feed.next()) is not None:
        if isinstance(step, Deliver):
            try:
                yield step.item
            except GeneratorExit:  # the consumer left: the engine cleans up (its own steps still made)
                feed.leave()
            except BaseException as exc:
                feed.error = exc
            continue
        try:
            feed.value = await _step(step)
        except BaseException as exc:
            feed.error = exc
