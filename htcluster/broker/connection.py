"""One client connection of the broker's connection loop (:mod:`.reactor`), and the rules for frame headers.

A :class:`Connection` is owned by the reactor thread, except :meth:`Connection.gone`,
which the worker running its call may use: the loop does not read the
socket while a call runs.
"""
from __future__ import annotations

import logging
import select
import socket
import ssl
import time
from typing import Any, Callable, Optional

from .._thrift import HqlService
from ._errors import ClientGone
from .guard import ArgumentGuard
from .handler import Handler
from .limits import Limits
from .objects import BrokerContext
from .wire import run_frame

__all__ = ["DISCONNECTED", "READ_CHUNK", "SMALL_FRAME", "Connection", "refuse_frame"]

#: A worker's result: the client went away while its answer was sent.
DISCONNECTED = object()

#: Bytes of a frame admitted whatever the bytes in flight, so that small calls (``status``,
#: scanner batches) still go through while big frames fill the budget; at most
#: ``max_connections`` of them can pass it.
SMALL_FRAME = 64 * 1024
#: Bytes read from one socket at a time.
READ_CHUNK = 256 * 1024


def refuse_frame(size: int, limits: Limits, inflight: int, budget: int) -> Optional[str]:
    """Return why a frame header announcing ``size`` bytes is refused, or ``None`` to read its body.

    :param inflight: bytes in flight across all connections now.
    :param budget: the in-flight budget in bytes (``limits.max_inflight_bytes``).
    :returns: the reason, for the log line, naming the option that sets the limit.
    """
    if size == 0:
        return "sent a zero-length frame"
    if size < 0:
        return f"sent a frame header of {size} bytes"
    if size > limits.max_frame_size:
        return (f"announced a frame of {size} bytes, over the largest accepted "
                f"({limits.max_frame_size}, --max-frame-size)")
    if size > SMALL_FRAME and inflight + size > budget:
        return (f"announced a frame of {size} bytes while {inflight} bytes are in flight "
                f"(budget {budget}, --max-inflight-bytes); refused")
    return None


class Connection:
    """The state of one client connection, owned by the reactor thread."""

    def __init__(self, sock: socket.socket, peer: str, context: BrokerContext, limits: Limits, now: float) -> None:
        self.sock = sock
        self.peer = peer
        self.handler = Handler(context, peer, max_answer_size=limits.answer_size, client_gone=self.gone)
        self.processor = HqlService.Processor(ArgumentGuard(self.handler))
        self.header = bytearray()
        self.body: Optional[bytearray] = None
        self.size = 0
        self.reserved = 0  # bytes of the budget held by this connection
        self.frame_started: Optional[float] = None
        self.active = now  # when the last frame arrived or the last answer left
        self.busy = False  # a worker runs its call
        self.out: Optional[memoryview] = None
        self.out_started = 0.0
        self.last_answer = False  # the answer being sent is followed by the end of the connection
        self.events = 0
        self.closed = False
        #: TLS: the socket is an ``ssl.SSLSocket`` (no peeking at frames: a worker reads its next one).
        self.tls = isinstance(sock, ssl.SSLSocket)
        self.handshaking = self.tls  # the TLS handshake is under way (the loop steps it)
        self.discarding = False  # a failed handshake: its alert is sent, input is read and dropped until EOF
        self.greeted = False  # TLS: the first byte received was that of a TLS handshake record
        #: TLS: bytes of the next frame a worker read (and could not run), for the loop to take (:meth:`take_carried`).
        self.carried = bytearray()
        self.carried_since: Optional[float] = None  # when the first of them arrived
        self.carried_eof = False  # TLS: a worker read the end of the connection
        self._worker_poll: Optional[Any] = None

    def gone(self) -> bool:
        """Return True once the client has closed or reset its connection (a non-blocking peek)."""
        try:  # the raw socket's bytes (encrypted over TLS): only the end of file matters
            return socket.socket.recv(self.sock, 1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True

    def pending(self) -> int:
        """Return the decrypted bytes waiting inside the TLS layer (``select`` cannot see them); 0 without TLS."""
        sock = self.sock
        return sock.pending() if isinstance(sock, ssl.SSLSocket) else 0

    def handshake(self) -> None:
        """Take one non-blocking step of the TLS handshake (``ssl.SSLWantReadError``/``SSLWantWriteError``: wait)."""
        assert isinstance(self.sock, ssl.SSLSocket)
        self.sock.do_handshake()

    def wanted(self) -> int:
        """Return how many bytes to read next: the rest of the header, else the next piece of the body."""
        if self.body is None:
            return 4 - len(self.header)
        return min(self.size - len(self.body), READ_CHUNK)

    def expired(self, now: float, limits: Limits) -> Optional[tuple[int, str]]:
        """Return ``(log level, why)`` when a timeout of ``limits`` has passed, else ``None``.

        A call being run is never timed; an answer must be taken, and a frame
        completed, within ``frame_timeout``; a complete frame must come every
        ``idle_timeout`` seconds, half-received frames included.

        :param now: ``time.monotonic()``.
        """
        if self.busy:
            return None
        if (self.handshaking or self.discarding) and now - self.active > limits.frame_timeout:
            return logging.INFO, (f"did not finish its TLS handshake within the frame timeout "
                                  f"({limits.frame_timeout:g} s, --frame-timeout); closing its connection")
        if self.out is not None:
            if now - self.out_started > limits.frame_timeout:
                return logging.WARNING, (f"did not take its answer within {limits.frame_timeout:g} s "
                                         "(--frame-timeout); closing its connection")
            return None
        if self.frame_started is not None and now - self.frame_started > limits.frame_timeout:
            return logging.WARNING, (f"did not finish a frame within the frame timeout ({limits.frame_timeout:g} s, "
                                     "--frame-timeout); closing its connection")
        if limits.idle_timeout is not None and now - self.active > limits.idle_timeout:
            half = " (half a frame received)" if self.frame_started is not None else ""
            return logging.INFO, (f"sent no complete frame for {limits.idle_timeout:g} s{half} (--idle-timeout); "
                                  "closing its connection")
        return None

    def cork(self) -> None:
        """Hold partial segments back (Linux ``TCP_CORK``) until the shutdown: answer and end leave together."""
        cork = getattr(socket, "TCP_CORK", None)
        if cork is not None:
            try:
                self.sock.setsockopt(socket.IPPROTO_TCP, cork, 1)
            except OSError:
                pass

    # The methods below are a worker's, called while the connection is busy (the loop leaves it alone).

    def serve(self, frame: bytes, max_frame_size: int, stopping: Callable[[], bool], sticky: float) -> Any:
        """Run the call of ``frame``; while not ``stopping()``, answer it here and go on with the next frame.

        The next frame is taken only when it is small and arrives whole within
        ``sticky`` seconds (:meth:`next_small_frame`), so that a client calling
        in a loop is not handed between threads twice per call.

        :returns: what the loop must do: ``b''`` (read again), answer bytes to
            send, :data:`DISCONNECTED`, a ``ClientGone``, or a ``ValueError``
            saying why the connection is dropped.
        """
        while True:
            try:
                result: Any = run_frame(self.processor, frame, max_frame_size)
            except ClientGone as exc:
                return exc
            except EOFError:
                return ValueError("sent a frame holding a truncated message")
            except Exception as exc:  # garbage: only this connection is dropped
                return ValueError(f"sent a request that cannot be decoded ({type(exc).__name__}: {exc})")
            if not result or stopping():
                return result  # the loop sends it: corked with the end of the connection when stopping
            sent = self.send_now(result)
            if sent is None:
                return DISCONNECTED
            if sent < len(result):
                return result[sent:]
            next_frame = None if stopping() else self.next_small_frame(sticky, max_frame_size)
            if next_frame is None:
                return b""
            frame = next_frame

    def send_now(self, answer: bytes) -> Optional[int]:
        """Send what the socket takes of ``answer`` without waiting; return the bytes sent, ``None`` if it broke."""
        try:
            return self.sock.send(answer)
        except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return 0
        except OSError:
            return None

    def next_small_frame(self, wait: float, max_frame_size: int = SMALL_FRAME) -> Optional[bytes]:
        """Take the next frame if it is at most ``SMALL_FRAME`` bytes and arrives whole within ``wait`` seconds.

        Nothing is consumed otherwise (the bytes are only peeked at), so the
        loop reads that frame with every rule applied.  Over TLS, whose bytes
        cannot be peeked at, what was read is left in :attr:`carried` for the loop.

        :param max_frame_size: bytes of the largest frame accepted (``limits.max_frame_size``), when under
            ``SMALL_FRAME``.
        :returns: the frame's body, or ``None``.
        """
        limit = min(SMALL_FRAME, max_frame_size)
        if self.tls:
            return self._next_tls_frame(wait, limit)
        deadline = time.monotonic() + wait
        poller = self._poller()
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not poller.poll(left * 1000):
                return None
            try:
                head = self.sock.recv(4, socket.MSG_PEEK)
                if len(head) < 4:
                    return None  # end of file, or a header still in transit: the loop's business
                size = int.from_bytes(head, "big", signed=True)
                if not 0 < size <= limit:
                    return None
                whole = self.sock.recv(4 + size, socket.MSG_PEEK)
                if len(whole) == 4 + size:
                    self.sock.recv(4 + size)  # consumed now, known to be there
                    self.active = time.monotonic()
                    return whole[4:]
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                return None
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.0001)  # the rest of the frame is in transit

    def _next_tls_frame(self, wait: float, limit: int) -> Optional[bytes]:
        """:meth:`next_small_frame` over TLS: read through the TLS layer, never past the next frame.

        Bytes read of a frame that is too big or not whole within ``wait``
        seconds stay in :attr:`carried` (an end of file in :attr:`carried_eof`):
        the loop takes them first, with every rule applied.
        """
        sock, carried = self.sock, self.carried
        deadline = time.monotonic() + wait
        assert isinstance(sock, ssl.SSLSocket)
        while True:
            if len(carried) < 4:
                want = 4 - len(carried)
            else:
                size = int.from_bytes(carried[:4], "big", signed=True)
                if not 0 < size <= limit:
                    return None
                want = 4 + size - len(carried)
                if not want:
                    frame = bytes(carried[4:])
                    carried.clear()
                    self.carried_since = None
                    self.active = time.monotonic()
                    return frame
            if not sock.pending():  # nothing decrypted waiting: wait for the socket (no recv raising meanwhile)
                left = deadline - time.monotonic()
                if left <= 0 or not self._poller().poll(left * 1000):
                    return None
            try:
                data = sock.recv(want)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                if time.monotonic() >= deadline:  # records for the TLS layer only (a key update)
                    return None
                continue
            except OSError:
                return None  # the loop reads again and meets the failure
            if not data:  # the client closed the connection
                self.carried_eof = True
                return None
            if not carried:
                self.carried_since = time.monotonic()
            carried += data

    def _poller(self) -> Any:
        """A worker's ``poll`` object for this socket (``POLLIN``), made once."""
        if self._worker_poll is None:
            self._worker_poll = select.poll()
            self._worker_poll.register(self.sock, select.POLLIN)
        return self._worker_poll

    def take_carried(self) -> tuple[bytes, Optional[float], bool]:
        """The loop's: return and forget ``(bytes a worker read, when the first arrived, end of file seen)``."""
        data, since, eof = bytes(self.carried), self.carried_since, self.carried_eof
        self.carried.clear()
        self.carried_since, self.carried_eof = None, False
        return data, since, eof
