"""The broker's connections: one selector thread moves bytes, a bounded pool of workers runs calls.

Upstream's ThriftBroker gives every connection a thread (:ref:`calling-methods`);
here one thread (:class:`Reactor`) accepts, reads frames incrementally and
writes answers for every connection, so an idle connection costs a socket,
not a thread, and :class:`~.limits.Limits` are enforced where bytes arrive:

* beyond ``max_connections`` a new connection is closed at once (logged);
* a frame header of zero, negative or over ``max_frame_size`` bytes closes
  the connection; so does one whose announced size would take the bytes in
  flight (frames announced but not yet answered, plus answers not yet sent)
  past ``max_inflight_bytes`` -- before its body is read (frames of at most
  ``SMALL_FRAME`` bytes are always admitted);
* a frame must be complete ``frame_timeout`` seconds after its first byte,
  and a connection must send a complete frame every ``idle_timeout`` seconds;
  an answer must be taken by the client within ``frame_timeout``;
* a complete frame is one call: a worker decodes it from those bytes only
  (:func:`.wire.run_frame`), so a truncated message closes the connection
  instead of reading the next frame.  A connection has one call at a time
  and is not read by the loop meanwhile; a worker asks ``gone()`` to learn
  that its client has left.  The worker answers itself and takes the next
  frame when it is small and already there (``STICKY``), so a client
  calling in a loop stays with one thread.  Over TLS the worker reads that
  frame through the TLS layer (its bytes cannot be peeked at); what it read
  of a frame it does not run goes back to the loop, which applies every rule
  to it as if it had read it itself.

Graceful stop (:meth:`Reactor.request_stop`): the listener's backlog is
accepted and the listener closed; every connection keeps being served until
it has been idle for ``LINGER`` seconds; an answer given while stopping is
followed by the end of the connection (corked with it, so the client sees
the end before it can send another request); at the grace deadline the
rest is closed.  Connections' handlers are closed (their mutators flushed)
by the workers; what is left when the loop ends is closed by the loop.
"""
from __future__ import annotations

import collections
import logging
import os
import selectors
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional

from ._errors import ClientGone
from .connection import DISCONNECTED, Connection, refuse_frame
from .limits import Limits
from .objects import BrokerContext
from .tls import PLAINTEXT_ALERT, is_tls_record

__all__ = ["LINGER", "Reactor"]

log = logging.getLogger("htcluster.broker")

#: Seconds between two looks at the timeouts of every connection.
TICK = 0.1
#: Seconds a connection must be idle, while stopping, before it is closed without waiting for a request.
LINGER = 0.5
#: Seconds a worker that has just answered waits for the same connection's next small frame.
STICKY = 0.002
#: Seconds between two log lines about refused connections.
REFUSAL_LOG_INTERVAL = 5.0
#: Connections accepted per readiness event of the listener.
ACCEPT_BATCH = 64
#: Seconds the listener is left alone after accepting failed (out of file descriptors).
ACCEPT_PAUSE = 1.0
#: Bytes read (and dropped) at a time from a connection whose TLS handshake was refused.
READ_AWAY = 65536
_CLOSED = object()  # a worker's result: the connection's handler is closed


class Reactor:
    """The thread serving every connection of one broker.

    :param listener: the bound, listening socket.
    :param context: what the connections share (store, flusher, shared mutators).
    :param limits: the limits enforced.
    :param ssl_context: a server ``ssl.SSLContext``: every connection speaks TLS, its
        handshake stepped by this loop without blocking; ``None``: plaintext.
    """

    def __init__(self, listener: socket.socket, context: BrokerContext, limits: Limits,
                 ssl_context: Optional[ssl.SSLContext] = None) -> None:
        self.listener: Optional[socket.socket] = listener
        self.ssl_context = ssl_context
        self.context = context
        self.limits = limits
        assert limits.max_inflight_bytes is not None  # resolved by Limits
        self.budget: int = limits.max_inflight_bytes
        self.inflight = 0
        #: Frames the loop handed to a worker (a worker takes its connection's next small frames itself).
        self.dispatched = 0
        self.finished = threading.Event()
        self._conns: dict[int, Connection] = {}
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._wake_lock = threading.Lock()  # never taken in a signal handler: serve() has a pipe of its own
        self._wake_closed = False
        self._done: collections.deque = collections.deque()
        self._pool = ThreadPoolExecutor(limits.workers, thread_name_prefix="htcluster-broker-worker")
        self._tasks = 0
        self._unclosed: set[Connection] = set()  # connections whose handler is not closed yet
        self._stop_at: Optional[float] = None  # the grace deadline, once stopping
        self._refused = 0
        self._refusal_logged = 0.0
        self._accept_paused_until: Optional[float] = None
        self._thread = threading.Thread(target=self._run, name="htcluster-broker-io", daemon=True)

    @property
    def connections(self) -> int:
        """Number of client connections open right now."""
        return len(self._conns)

    def start(self) -> None:
        """Start serving in the reactor thread."""
        listener = self.listener
        assert listener is not None
        listener.setblocking(False)
        self._selector.register(listener, selectors.EVENT_READ, "listener")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread.start()

    def request_stop(self, grace: float) -> None:
        """Ask for a stop within ``grace`` seconds (0: at once); returns at once; any thread, not a signal handler."""
        deadline = time.monotonic() + max(grace, 0.0)
        if self._stop_at is None or deadline < self._stop_at:
            self._stop_at = deadline
        self._wake()

    def join(self, timeout: Optional[float] = None) -> bool:
        """Wait up to ``timeout`` seconds for the thread to end; return whether it did."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _wake(self) -> None:
        with self._wake_lock:  # a late worker must not write to a descriptor number reused since
            if self._wake_closed:
                return
            try:
                os.write(self._wake_w, b"\0")
            except BlockingIOError:  # the pipe is full: a wake-up is pending anyway
                pass

    # ------------------------------------------------------------ loop

    def _run(self) -> None:
        try:
            self._loop()
        except Exception:  # pragma: no cover - a bug here must not leave stop() waiting forever
            log.exception("the broker's connection loop failed")
        finally:
            self._finish()
            self.finished.set()

    def _loop(self) -> None:
        next_sweep = time.monotonic() + TICK
        while True:
            for key, mask in self._selector.select(TICK):
                if key.data == "listener":
                    self._accept()
                elif key.data == "wake":
                    self._drain_wake()
                else:
                    conn = key.data
                    if conn.handshaking or conn.discarding:
                        self._tls_event(conn)
                        continue
                    if mask & selectors.EVENT_WRITE and not conn.closed:
                        self._send(conn)
                    if mask & selectors.EVENT_READ and not conn.closed:
                        self._receive(conn)
            while self._done:
                self._complete(*self._done.popleft())
            now = time.monotonic()
            if self._stop_at is not None:
                if self._stopping(now):
                    return
            if now >= next_sweep:
                next_sweep = now + TICK
                self._sweep(now)

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    # ------------------------------------------------------- accepting

    def _accept(self) -> None:
        assert self.listener is not None
        for _ in range(ACCEPT_BATCH):
            try:
                sock, addr = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. out of file descriptors: leave the listener alone for a while
                log.error("accepting a connection failed: %s; trying again in %g s", exc, ACCEPT_PAUSE)
                self._selector.unregister(self.listener)
                self._accept_paused_until = time.monotonic() + ACCEPT_PAUSE
                return
            peer = f"{addr[0]}:{addr[1]}"
            if len(self._conns) >= self.limits.max_connections:
                self._refuse(sock, peer)
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.ssl_context is not None:  # the handshake is stepped by _tls_event
                sock = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            conn = Connection(sock, peer, self.context, self.limits, time.monotonic())
            self._conns[sock.fileno()] = conn
            self._unclosed.add(conn)
            self._watch(conn, selectors.EVENT_READ)
            log.debug("%s: connected", peer)

    def _refuse(self, sock: socket.socket, peer: str) -> None:
        sock.close()
        self._refused += 1
        now = time.monotonic()
        if now - self._refusal_logged >= REFUSAL_LOG_INTERVAL:
            log.warning("refused %d connection(s), the last from %s: the broker serves its maximum of %d "
                        "connections (--max-connections)", self._refused, peer, self.limits.max_connections)
            self._refused, self._refusal_logged = 0, now

    # --------------------------------------------------------- TLS

    def _tls_event(self, conn: Connection) -> None:
        """Step the TLS handshake of ``conn`` (or drop the input after a failed one); never blocks."""
        raw = socket.socket  # the socket's own bytes, under the TLS layer
        if conn.discarding:
            try:
                data = raw.recv(conn.sock, READ_AWAY)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self._close(conn, logging.DEBUG, "left after its refused TLS handshake")
            return
        if not conn.greeted:  # the first bytes: a TLS ClientHello, or a plaintext frame header?
            try:
                head = raw.recv(conn.sock, 1, socket.MSG_PEEK)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._close(conn, logging.DEBUG, f"disconnected before its TLS handshake ({exc})")
                return
            if not head:
                self._close(conn, logging.DEBUG, "disconnected before its TLS handshake")
                return
            if head[0] != 0x16:  # a TLS handshake record starts with 22
                self._refuse_plaintext(conn)
                return
            conn.greeted = True
        try:
            conn.handshake()
        except ssl.SSLWantReadError:
            self._watch(conn, selectors.EVENT_READ)
            return
        except ssl.SSLWantWriteError:
            self._watch(conn, selectors.EVENT_WRITE)
            return
        except ssl.SSLError as exc:  # its alert is on the way: read what the client still sends, then close
            log.info("%s: TLS handshake failed: %s", conn.peer, exc)
            self._discard(conn)
            return
        except OSError as exc:
            self._close(conn, logging.DEBUG, f"disconnected during the TLS handshake ({exc})")
            return
        conn.handshaking = False
        conn.active = time.monotonic()
        self._watch(conn, selectors.EVENT_READ)
        if conn.pending():
            self._receive(conn)

    def _refuse_plaintext(self, conn: Connection) -> None:
        """Answer a plaintext client with a TLS alert and the end of the connection (it can tell why)."""
        log.info("%s: sent plaintext to this TLS broker; answered with a TLS alert and closed", conn.peer)
        raw = socket.socket
        try:
            while raw.recv(conn.sock, READ_AWAY):  # read what it sent, so that closing resets nothing
                pass
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._close(conn, logging.DEBUG, "disconnected")
            return
        try:
            raw.send(conn.sock, PLAINTEXT_ALERT)
        except OSError:
            pass
        self._discard(conn)

    def _discard(self, conn: Connection) -> None:
        """End the output of a refused TLS connection and drop its input until the client closes (or times out)."""
        conn.handshaking, conn.discarding = False, True
        try:
            socket.socket.shutdown(conn.sock, socket.SHUT_WR)
        except OSError:
            pass
        self._watch(conn, selectors.EVENT_READ)

    # --------------------------------------------------------- reading

    def _receive(self, conn: Connection) -> None:
        self._receive_some(conn)
        while conn.tls and not conn.closed and not conn.busy and conn.pending():  # poll cannot see these
            self._receive_some(conn)

    def _receive_some(self, conn: Connection) -> None:
        try:
            data = conn.sock.recv(conn.wanted())
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return
        except OSError as exc:
            self._close(conn, logging.DEBUG, f"disconnected ({exc})")
            return
        if not data:
            self._ended(conn)
            return
        self._take(conn, data, time.monotonic())

    def _ended(self, conn: Connection) -> None:
        if conn.frame_started is not None:
            self._close(conn, logging.WARNING, "closed its connection in the middle of a frame (truncated "
                                               f"frame: {len(conn.body or b'')} of {conn.size or '?'} bytes)")
        else:
            self._close(conn, logging.DEBUG, "disconnected")

    def _take(self, conn: Connection, data: bytes, since: float) -> None:
        """Add ``data``, received from ``since`` on, to the frame being read (never past its end)."""
        if conn.frame_started is None:
            conn.frame_started = since
        if conn.body is None:
            need = 4 - len(conn.header)
            conn.header += data[:need]
            if len(conn.header) < 4:
                return
            self._start_body(conn)
            if conn.body is None:  # refused: closed
                return
            data = data[need:]
            if not data:
                return
        conn.body += data
        if len(conn.body) == conn.size:
            self._dispatch(conn, time.monotonic())

    def _start_body(self, conn: Connection) -> None:
        if not conn.tls and is_tls_record(bytes(conn.header)):
            self._close(conn, logging.INFO, "began a TLS handshake, but this broker serves plaintext (start it with "
                                            "--tls-cert and --tls-key to serve TLS); closing its connection")
            return
        size = int.from_bytes(conn.header, "big", signed=True)
        refusal = refuse_frame(size, self.limits, self.inflight, self.budget)
        if refusal is not None:
            self._close(conn, logging.WARNING, f"{refusal}; closing its connection")
            return
        conn.size, conn.reserved = size, size
        self.inflight += size
        conn.body = bytearray()

    def _dispatch(self, conn: Connection, now: float) -> None:
        assert conn.body is not None
        frame = bytes(conn.body)
        conn.header, conn.body, conn.size, conn.frame_started = bytearray(), None, 0, None
        conn.active, conn.busy = now, True
        self.dispatched += 1
        self._watch(conn, 0)
        self._submit(self._call, conn, frame)

    def _submit(self, work: Callable[..., None], *args: Any) -> None:
        self._tasks += 1
        self._pool.submit(work, *args)

    # --------------------------------------------------------- workers

    def _call(self, conn: Connection, frame: bytes) -> None:
        """Run the call of ``frame`` (and maybe the next ones, see :meth:`.Connection.serve`) in a worker."""
        result = conn.serve(frame, self.limits.max_frame_size, lambda: self._stop_at is not None, STICKY)
        self._done.append((conn, result))
        self._wake()

    def _close_handler(self, conn: Connection) -> None:
        try:
            conn.handler.close()
        except Exception:  # pragma: no cover - Handler.close logs and swallows its own failures
            log.exception("%s: closing the connection's handler failed", conn.peer)
        self._done.append((conn, _CLOSED))
        self._wake()

    def _complete(self, conn: Connection, result: Any) -> None:
        self._tasks -= 1
        if result is _CLOSED:
            self._unclosed.discard(conn)
            return
        conn.busy = False
        self.inflight -= conn.reserved
        conn.reserved = 0
        if conn.closed:
            self._submit(self._close_handler, conn)
        elif result is DISCONNECTED:
            self._close(conn, logging.DEBUG, "disconnected before taking its answer")
        elif isinstance(result, ClientGone):
            self._close(conn, logging.INFO, f"has gone; abandoned its {result.method} call")
        elif isinstance(result, Exception):
            self._close(conn, logging.WARNING, f"{result}; closing its connection")
        elif not result:
            self._idle(conn, time.monotonic())
        else:
            conn.out, conn.reserved, conn.out_started = memoryview(result), len(result), time.monotonic()
            self.inflight += len(result)
            conn.last_answer = self._stop_at is not None  # decided once, before the first byte leaves
            if conn.last_answer:
                conn.cork()
            self._send(conn)

    # --------------------------------------------------------- writing

    def _send(self, conn: Connection) -> None:
        assert conn.out is not None
        try:
            sent = conn.sock.send(conn.out)
        except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            sent = 0
        except OSError as exc:
            self._close(conn, logging.DEBUG, f"disconnected before taking its answer ({exc})")
            return
        conn.out = conn.out[sent:]
        if len(conn.out):
            self._watch(conn, selectors.EVENT_WRITE)
            return
        conn.out = None
        self.inflight -= conn.reserved
        conn.reserved = 0
        if conn.last_answer:  # the answer, then the end of the connection, in one segment
            try:
                conn.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            self._close(conn, logging.DEBUG, "answered; closed as the broker stops")
            return
        self._idle(conn, time.monotonic())

    def _idle(self, conn: Connection, now: float) -> None:
        conn.active = now
        self._watch(conn, selectors.EVENT_READ)
        if not conn.tls:
            return
        data, since, eof = conn.take_carried()  # what its worker read of a frame it did not run
        if data:
            self._take(conn, data, since or now)
        if conn.closed or conn.busy:
            return
        if eof:
            self._ended(conn)
        elif conn.pending():  # decrypted bytes already inside the TLS layer: no event will come
            self._receive(conn)

    def _watch(self, conn: Connection, events: int) -> None:
        if events == conn.events:
            return
        if not events:
            self._selector.unregister(conn.sock)
        elif not conn.events:
            self._selector.register(conn.sock, events, conn)
        else:
            self._selector.modify(conn.sock, events, conn)
        conn.events = events

    # --------------------------------------------------------- closing

    def _close(self, conn: Connection, level: int, why: str) -> None:
        """Close ``conn``'s socket and release what it holds; its handler is closed by a worker."""
        if conn.closed:
            return
        log.log(level, "%s: %s", conn.peer, why)
        self._watch(conn, 0)
        self._conns.pop(conn.sock.fileno(), None)
        try:
            conn.sock.close()
        except OSError:  # pragma: no cover
            pass
        conn.closed = True
        conn.body = conn.out = None
        if not conn.busy:
            self.inflight -= conn.reserved
            conn.reserved = 0
            self._submit(self._close_handler, conn)

    def _sweep(self, now: float) -> None:
        if self._accept_paused_until is not None and now >= self._accept_paused_until and self.listener is not None:
            self._accept_paused_until = None
            self._selector.register(self.listener, selectors.EVENT_READ, "listener")
        for conn in list(self._conns.values()):
            expired = conn.expired(now, self.limits)
            if expired is not None:
                self._close(conn, *expired)

    def _stopping(self, now: float) -> bool:
        """Advance a stop in progress; return True once the loop may end."""
        if self.listener is not None:
            self._accept()  # what already waits in the backlog is served, not reset
            self._close_listener()
        assert self._stop_at is not None
        late = now >= self._stop_at
        for conn in list(self._conns.values()):
            if late:
                self._close(conn, logging.WARNING if conn.busy or conn.frame_started else logging.DEBUG,
                            "still busy at the end of the stop grace period; closing its connection")
            elif not conn.busy and conn.out is None and conn.frame_started is None and now - conn.active >= LINGER:
                self._close(conn, logging.DEBUG, "idle; closed as the broker stops")
        return not self._conns

    def _close_listener(self) -> None:
        if self.listener is None:
            return
        if self._accept_paused_until is None:
            self._selector.unregister(self.listener)
        self.listener.close()
        self.listener = None

    def _finish(self) -> None:
        """After the loop: let workers close handlers until the deadline, then close what is left here."""
        self._close_listener()
        for conn in list(self._conns.values()):
            self._close(conn, logging.DEBUG, "closed as the broker stops")
        deadline = max(self._stop_at or 0.0, time.monotonic()) + TICK
        while self._tasks and time.monotonic() < deadline:
            for key, _ in self._selector.select(TICK):
                if key.data == "wake":
                    self._drain_wake()
            while self._done:
                self._complete(*self._done.popleft())
        self._pool.shutdown(wait=False, cancel_futures=True)
        for conn in list(self._unclosed):
            if conn.busy:
                log.warning("%s: still busy at shutdown; flushing its mutators anyway", conn.peer)
            conn.handler.close()
        self._unclosed.clear()
        self._selector.close()
        with self._wake_lock:
            self._wake_closed = True
            os.close(self._wake_r)
            os.close(self._wake_w)
