"""One broker connection on a blocking socket: whole frames out, whole frames in, one deadline.

:class:`Connection` is the one place where htcluster touches a broker's
socket and classifies what goes wrong there (conventions: "translate
transport errors in one place").  What goes on the wire is decided by the
sans-IO core (:mod:`htcluster._wire`): the codec encodes a call into one
frame and decodes its reply, the frame reader cuts received bytes into
frames.  Here:

* a frame is sent only once it is whole (an argument that cannot be encoded
  never leaves a half-written request behind);
* the whole exchange (send + entire reply) runs against one deadline,
  enforced across reads, instead of a timeout per ``recv``;
* any failure between the first byte sent and the last byte read *taints*
  the connection: it is closed and never used again;
* waiting uses ``poll`` (never ``select``, which fails past descriptor 1023).

Failures become :class:`~htcluster.errors.BrokerUnavailable` with ``sent``
telling whether the broker may have received the request (False: the frame
never left whole, retrying elsewhere cannot duplicate it);
:class:`~htcluster.errors.DeadlineExceeded` when the caller's deadline (not
the connection's own timeout) cut the exchange; and
:class:`~htcluster.errors.ClientResourceError` when this process ran out of
descriptors, buffers or memory (the host is not to blame).

Besides the blocking :meth:`Connection.exchange`, the steps of an exchange
(:meth:`~Connection.begin_connect`, :meth:`~Connection.start`,
:meth:`~Connection.send_some`, :meth:`~Connection.recv_some`,
:meth:`~Connection.expire`) let one thread drive many connections at once
(:mod:`htcluster._routing.loop`).
"""
from __future__ import annotations

import errno
import os
import select
import socket
import ssl
import time
from typing import Any, Optional, Protocol, Sequence

from thrift.transport.TTransport import TTransportException

from .._wire import DEFAULT_MAX_FRAME_SIZE, Codec, FrameReader
from ..errors import BrokerUnavailable, ClientResourceError, DeadlineExceeded
from ..hosts import Host
from . import tls
from .keepalive import DEFAULT_KEEPALIVE, KeepAlive, apply_keepalive

__all__ = ["Connection", "Watcher", "fork_generation", "local_failure"]

_POLLIN = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP
_POLLOUT = select.POLLOUT | select.POLLERR | select.POLLHUP
_TIMEOUTS = (TimeoutError, socket.timeout)
#: errno values that say this process (not the broker) is out of something.
LOCAL_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

_forks = [0]


def _forked() -> None:
    _forks[0] += 1


os.register_at_fork(after_in_child=_forked)


def fork_generation() -> int:
    """Return how many times this process's ancestry forked since import: a cheap "am I a child?" stamp."""
    return _forks[0]


def local_failure(exc: BaseException, address: str, doing: str) -> Optional[ClientResourceError]:
    """Return the :class:`ClientResourceError` that ``exc`` means, or ``None`` when it is not a local shortage.

    :param exc: an exception raised by a socket call, or a ``MemoryError``.
    :param address: ``'host:port'`` being called.
    :param doing: what was being done, e.g. ``'connecting to'``.
    """
    if isinstance(exc, MemoryError):
        return ClientResourceError(f"out of memory while {doing} ThriftBroker {address}; "
                                   "send less per call or give the process more memory", host=address)
    if isinstance(exc, OSError) and exc.errno in LOCAL_ERRNOS:
        what = {errno.EMFILE: "this process has no file descriptor left (EMFILE)",
                errno.ENFILE: "the system has no file descriptor left (ENFILE)",
                errno.ENOBUFS: "the kernel has no socket buffer left (ENOBUFS)",
                errno.ENOMEM: "the kernel is out of memory (ENOMEM)"}[exc.errno]
        return ClientResourceError(f"{what} while {doing} ThriftBroker {address}: the host is not to blame; "
                                   "raise the limit (ulimit -n, resource.setrlimit(RLIMIT_NOFILE, ...)) or use "
                                   "fewer connections (smaller pools, fewer hosts per broadcast)",
                                   exc.errno, host=address)
    return None


class Watcher(Protocol):
    """What watches a connection's socket for an I/O driver between calls (an event loop's registration).

    :attr:`Connection.watcher` holds it; :meth:`Connection.close` tells it
    first, so that no event loop is left watching a closed descriptor (whose
    number the next socket may take).
    """

    def closing(self, sock: socket.socket) -> bool:
        """Stop watching ``sock``, which the connection is closing (it is no longer the connection's).

        :returns: True when the watcher closes ``sock`` itself, later (from its event loop's thread);
            False when the connection is to close it now.  Never raises.
        """


class Connection:
    """One TCP connection to a ThriftBroker, framed transport, binary protocol.

    :param host: the broker's address.
    :param timeout: seconds (float) one whole call may take: sending the
        request and receiving its entire reply.
    :param connect_timeout: seconds (float) a connection attempt may take.
    :param max_frame_size: largest frame in bytes, sent or received; also the
        protocol's limit on one string or container.
    :param ssl_context: a client ``ssl.SSLContext``: speak TLS, with the
        handshake (to the host's name, :mod:`htcluster._io.tls`) counted in
        ``connect_timeout``; ``None``: plaintext.
    :param keepalive: TCP keepalive timings (:class:`~htcluster._io.keepalive.KeepAlive`),
        set on the socket once connected; ``None``: off.

    :attr:`codec` encodes the calls and decodes the replies; :meth:`exchange`
    moves one frame out and one in.  Not thread-safe: one call at a time.
    """

    __slots__ = ("host", "address", "timeout", "connect_timeout", "max_frame_size", "codec", "reader", "sock",
                 "failed", "pending", "connecting", "fork", "pid", "_poll", "_out", "_sent", "_end", "_by_deadline",
                 "ssl_context", "handshaking", "keepalive", "watcher")

    def __init__(self, host: Host, timeout: float, connect_timeout: float,
                 max_frame_size: int = DEFAULT_MAX_FRAME_SIZE, ssl_context: Optional[ssl.SSLContext] = None,
                 keepalive: Optional[KeepAlive] = DEFAULT_KEEPALIVE) -> None:
        self.host = host
        self.keepalive = keepalive
        self.address = str(host)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_frame_size = max_frame_size
        self.codec = Codec(max_frame_size, self.address)
        self.reader = FrameReader(max_frame_size, self.address)
        self.sock: Optional[socket.socket] = None
        self.failed = False
        self.pending = False  # a request left and its reply is not fully read
        self.connecting = False  # a non-blocking connect is under way
        self.fork = _forks[0]
        self.pid = os.getpid()
        self._poll: Optional[select.poll] = None
        self._out: bytearray = bytearray()
        self._sent = 0
        self._end, self._by_deadline = 0.0, False
        self.ssl_context = ssl_context
        self.handshaking = False  # TLS: the TCP connect is done, the handshake is under way
        #: The I/O driver's watch over the open socket (an event loop's registration), told before it closes.
        self.watcher: Optional[Watcher] = None

    # ------------------------------------------------------------ state

    @property
    def is_open(self) -> bool:
        """True while the socket is connected (as far as is known without I/O)."""
        return self.sock is not None and not self.connecting

    def isOpen(self) -> bool:  # noqa: N802 (Thrift's transport API, for upstream code using client.transport)
        """Thrift's name for :attr:`is_open`."""
        return self.is_open

    @property
    def extra(self) -> bool:
        """True when bytes beyond a reply frame arrived: the next read would be out of step."""
        return self.reader.extra

    @property
    def reusable(self) -> bool:
        """True when open, not failed, in step, and owned by this process (not a fork's parent)."""
        return (self.sock is not None and not self.failed and not self.pending and not self.connecting
                and not self.reader.extra and self.fork == _forks[0])

    def is_stale(self) -> bool:
        """Check with one non-blocking ``poll`` whether an idle connection can still be used.

        An idle connection has nothing to read: a readable socket means the
        broker closed it (end-of-file, reset) or sent bytes nobody asked for.
        Either way it is closed here.  Over TLS, records for the TLS layer
        alone (TLS 1.3 session tickets) are read and the connection kept.

        :returns: True when the connection is not :attr:`reusable` or the broker left it.
        """
        if not self.reusable:
            return True
        if self._poll is not None and self._poll.poll(0):
            if self.ssl_context is None or tls.idle_is_stale(self.sock):  # type: ignore[arg-type]
                self.close()
                return True
        return False

    def readable(self) -> bool:
        """True when an open idle connection has something to read: an end of file, a reset, bytes or TLS records.

        One non-blocking ``poll``; nothing is read and nothing is closed (:meth:`is_stale` decides).
        """
        poll = self._poll
        return poll is not None and bool(poll.poll(0))

    def interrupt(self) -> None:
        """Shut the socket down, from any thread: an exchange waiting on it ends at once with end-of-file.

        The exchange then fails as a broken connection (``BrokerUnavailable``,
        ``sent=True`` once the request left) and taints it; nothing happens on a closed connection.
        """
        sock = self.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:  # not connected (yet), or closed meanwhile
                pass

    # ------------------------------------------------------------ open / close

    def _unavailable(self, exc: OSError, limit: float) -> BrokerUnavailable:
        timed_out = isinstance(exc, _TIMEOUTS)
        reason = f"timed out after {limit:g} s" if timed_out else str(exc) or type(exc).__name__
        kind = TTransportException.TIMED_OUT if timed_out else TTransportException.NOT_OPEN
        return BrokerUnavailable(f"cannot connect to ThriftBroker {self.address}: {reason}",
                                 host=self.address, sent=False, type=kind)

    def cannot_connect(self, exc: OSError) -> Exception:
        """Mark the connection failed; return the typed error of a connect (or name lookup) that raised ``exc``."""
        self.failed = True
        return local_failure(exc, self.address, "connecting to") or self._unavailable(exc, self.connect_timeout)

    def _connect_limit(self, deadline: Optional[float]) -> tuple[float, bool]:
        limit, by_deadline = self.connect_timeout, False
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeadlineExceeded(f"no time left to connect to ThriftBroker {self.address}", sent=False)
            if left < limit:
                limit, by_deadline = left, True
        return limit, by_deadline

    def _reset_state(self) -> None:
        self.close()
        self.failed = self.pending = self.connecting = self.handshaking = False
        self.reader = FrameReader(self.max_frame_size, self.address)
        self.fork, self.pid = _forks[0], os.getpid()

    def open(self, deadline: Optional[float] = None) -> None:
        """Connect within ``connect_timeout`` (and before ``deadline``, a ``time.monotonic`` time), blocking.

        :raises BrokerUnavailable: refused, unreachable or timed out (``sent=False``).
        :raises TLSError: with an ``ssl_context``, the handshake failed (a configuration mistake).
        :raises DeadlineExceeded: ``deadline`` passed before the connection was made.
        :raises ClientResourceError: no descriptor or buffer left in this process.
        """
        self._reset_state()
        limit, by_deadline = self._connect_limit(deadline)
        started = time.monotonic()
        try:
            sock = socket.create_connection((self.host.host, self.host.port), limit)
        except OSError as exc:
            self.failed = True
            local = local_failure(exc, self.address, "connecting to")
            if local is not None:
                raise local from exc
            if by_deadline and isinstance(exc, _TIMEOUTS):
                raise DeadlineExceeded(f"the call's deadline passed while connecting to ThriftBroker "
                                       f"{self.address}", sent=False) from exc
            raise self._unavailable(exc, limit) from exc
        if self.ssl_context is not None:
            sock = self._handshake(sock, started + limit, by_deadline)
        self._adopt(sock)

    # -- TLS (htcluster._io.tls) ---------------------------------------------------------------------

    def _handshake(self, sock: socket.socket, end: float, by_deadline: bool) -> socket.socket:
        """Wrap ``sock`` and complete the TLS handshake by ``end`` (blocking, with ``poll``); return the TLS socket."""
        sock.setblocking(False)
        self.sock, self.connecting = sock, True
        try:
            self._start_tls()
            poller = select.poll()
            assert self.sock is not None
            poller.register(self.sock, _POLLOUT)
            while True:
                want = self._tls_step()
                if not want:
                    break
                poller.modify(self.sock, want)
                left = end - time.monotonic()
                if left <= 0 or not poller.poll(left * 1000.0 + 1):
                    self._end, self._by_deadline = end, by_deadline
                    raise self.connect_expired()
        except BaseException:
            self.taint()
            raise
        sock, self.sock = self.sock, None
        self.connecting = self.handshaking = False
        return sock

    def _start_tls(self) -> None:
        assert self.sock is not None and self.ssl_context is not None
        try:
            self.sock = tls.wrap(self.sock, self.ssl_context, self.host.host)
        except (OSError, ValueError) as exc:
            self.taint()
            raise self._tls_error(exc) from exc
        self.handshaking = True

    def _tls_step(self) -> int:
        """Advance the handshake: 0 once done, else the ``poll`` mask to wait for."""
        try:
            return tls.handshake_step(self.sock)  # type: ignore[arg-type]
        except OSError as exc:
            self.taint()
            raise self._tls_error(exc) from exc

    def _tls_error(self, exc: BaseException) -> Exception:
        error = tls.tls_failure(exc, self.address, handshake=True)
        if error is not None:
            return error
        local = local_failure(exc, self.address, "in the TLS handshake with")
        if local is not None:
            return local
        return BrokerUnavailable(f"the TLS handshake with ThriftBroker {self.address} failed: {exc}",
                                 host=self.address, sent=False, type=TTransportException.NOT_OPEN)

    # ------------------------------------------------------------------------------------------------

    def begin_connect(self, deadline: Optional[float] = None, resolved: Optional[Sequence[Any]] = None) -> float:
        """Start a non-blocking connect; return the ``time.monotonic()`` time it must be done by.

        Wait for the socket to become writable (``poll`` ``POLLOUT``), then call
        :meth:`finish_connect`.  The name is resolved first (blocking; instant
        for an IP address) unless ``resolved`` is given.

        :param resolved: one ``getaddrinfo`` entry ``(family, type, proto, canonname, sockaddr)``
            for the host, resolved by the caller (e.g. on an event loop's resolver).
        :raises BrokerUnavailable: the name does not resolve or the connect failed at once.
        :raises DeadlineExceeded: no time left.
        :raises ClientResourceError: no descriptor left in this process.
        """
        self._reset_state()
        limit, by_deadline = self._connect_limit(deadline)
        try:
            if resolved is None:
                resolved = socket.getaddrinfo(self.host.host, self.host.port, 0, socket.SOCK_STREAM)[0]
            family, kind, proto, _, address = resolved
            sock = socket.socket(family, kind, proto)
        except OSError as exc:
            self.failed = True
            local = local_failure(exc, self.address, "connecting to")
            raise (local or self._unavailable(exc, limit)) from exc
        sock.setblocking(False)
        code = sock.connect_ex(address)
        if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY):
            sock.close()
            self.failed = True
            error = OSError(code, os.strerror(code))
            local = local_failure(error, self.address, "connecting to")
            raise (local or self._unavailable(error, limit)) from None
        self.sock = sock
        self.connecting = True
        self._end, self._by_deadline = time.monotonic() + limit, by_deadline
        return self._end

    def finish_connect(self) -> int:
        """Complete a connect started by :meth:`begin_connect` once ``poll`` reported its socket ready.

        With an ``ssl_context``, the TLS handshake follows, one step per call:
        call it again when the socket is ready for what it returned.

        :returns: 0 once connected (and the handshake done), else the ``poll``
            mask (``POLLIN`` or ``POLLOUT`` with errors) to wait for before calling again.
        :raises BrokerUnavailable: the connect failed (refused, unreachable; ``sent=False``).
        :raises TLSError: the TLS handshake failed (a configuration mistake, ``sent=False``).
        """
        sock = self.sock
        assert sock is not None and self.connecting
        if not self.handshaking:
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                self.taint()
                error = OSError(code, os.strerror(code))
                raise (local_failure(error, self.address, "connecting to") or self._unavailable(error, 0.0)) from None
            if self.ssl_context is not None:
                self._start_tls()
        if self.handshaking:
            want = self._tls_step()
            if want:
                return want
            self.handshaking = False
        self.connecting = False
        self._adopt(self.sock)  # type: ignore[arg-type]
        return 0

    def connect_expired(self) -> Exception:
        """Taint a connect (or its TLS handshake) that ran out of time and return its error."""
        doing = "in the TLS handshake with" if self.handshaking else "connecting to"
        self.taint()
        if self._by_deadline:
            return DeadlineExceeded(f"the call's deadline passed while {doing} ThriftBroker {self.address}",
                                    sent=False)
        return BrokerUnavailable(f"cannot connect to ThriftBroker {self.address}: timed out after "
                                 f"{self.connect_timeout:g} s{' in the TLS handshake' if self.handshaking else ''}",
                                 host=self.address, sent=False, type=TTransportException.TIMED_OUT)

    def _adopt(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        apply_keepalive(sock, self.keepalive)  # an idle connection a middle box dropped is found (and not dropped)
        sock.setblocking(False)
        self.sock = sock
        self._poll = select.poll()
        self._poll.register(sock, _POLLIN)
        self.codec.seqid = 0

    def close(self) -> None:
        """Close the socket (idempotent, never raises).  In a forked child only its own copy closes.

        A :attr:`watcher` is told first (and forgotten): it unregisters the socket from its event loop.
        """
        sock, self.sock, self._poll = self.sock, None, None
        if sock is not None:
            watcher = self.watcher
            if watcher is not None:
                self.watcher = None
                if watcher.closing(sock):
                    return
            try:
                sock.close()
            except OSError:  # pragma: no cover - close of a valid fd does not fail on Linux
                pass

    def taint(self) -> None:
        """Mark the connection failed and close it: it is out of step with the broker."""
        self.failed = True
        self.close()

    # ------------------------------------------------------------ one call

    def check_ready(self) -> None:
        """Raise ``BrokerUnavailable(sent=False)`` unless a call may start on this connection."""
        if self.fork != _forks[0] and self.sock is not None:
            self.failed = True
            self.close()  # this process's copy of the descriptor only: the parent's stays open
            raise BrokerUnavailable(
                f"the connection to ThriftBroker {self.address} belongs to process {self.pid}, not to this one "
                f"({os.getpid()}, a fork); open a new one here",
                host=self.address, sent=False, type=TTransportException.NOT_OPEN)
        if self.sock is None or self.failed or self.pending or self.connecting or self.reader.extra:
            why = ("failed earlier" if self.failed else "is closed" if self.sock is None
                   else "is still connecting" if self.connecting else "is out of step (a call was interrupted)")
            raise BrokerUnavailable(f"the connection to ThriftBroker {self.address} {why}; open a new one",
                                    host=self.address, sent=False, type=TTransportException.NOT_OPEN)

    def exchange(self, frame: bytearray, deadline: Optional[float] = None) -> memoryview:
        """Send ``frame`` and return the body of its whole reply frame, blocking.

        :param frame: a whole request frame (:meth:`Codec.encode <htcluster._wire.codec.Codec.encode>`).
        :param deadline: ``time.monotonic()`` time by which the exchange must
            end, when earlier than ``timeout`` from now.
        :returns: the reply frame's body, for :meth:`Codec.decode <htcluster._wire.codec.Codec.decode>`.
        :raises BrokerUnavailable: the socket failed or the connection's ``timeout`` passed.
        :raises BrokerProtocolError: the reply frame is larger than ``max_frame_size`` or empty.
        :raises DeadlineExceeded: ``deadline`` passed first.
        """
        end = self.start(frame, deadline)
        poll = self._poll
        try:
            if not self.send_some():
                poll.modify(self.sock, _POLLOUT)  # type: ignore[union-attr, arg-type]
                while True:
                    left = end - time.monotonic()
                    if left <= 0 or not poll.poll(left * 1000.0 + 1):  # type: ignore[union-attr]
                        raise self.expire()
                    if self.send_some():
                        break
                poll.modify(self.sock, _POLLIN)  # type: ignore[union-attr, arg-type]
            while True:  # wait first: an answer is never there the instant the request left
                left = end - time.monotonic()
                if left <= 0 or not poll.poll(left * 1000.0 + 1):  # type: ignore[union-attr]
                    raise self.expire()
                body = self.recv_some()
                if body is not None:
                    return body
        except BaseException:
            self.taint()
            raise

    def limit(self, deadline: Optional[float]) -> tuple[float, bool]:
        """Return ``(end, by_deadline)``: when a call starting now must end, and whether ``deadline`` sets it."""
        end = time.monotonic() + self.timeout
        if deadline is not None and deadline < end:
            return deadline, True
        return end, False

    def start(self, frame: bytearray, deadline: Optional[float] = None) -> float:
        """Take ``frame`` to send; return the ``time.monotonic()`` time the exchange must end by."""
        self._out, self._sent = frame, 0
        self._end, self._by_deadline = self.limit(deadline)
        self.pending = True
        return self._end

    def send_some(self) -> bool:
        """Send what the socket takes now; True once the whole frame left.

        :raises BrokerUnavailable: the socket failed (``sent=False``: the frame never left whole).
        :raises ClientResourceError: the kernel had no buffer for it (``ENOBUFS``/``ENOMEM``).
        """
        try:
            self._sent += self.sock.send(memoryview(self._out)[self._sent:] if self._sent else self._out)  # type: ignore[union-attr]
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return False
        except OSError as exc:
            self.taint()
            raise (local_failure(exc, self.address, f"sending {self.codec.method} to")
                   or (self.ssl_context is not None and tls.tls_failure(exc, self.address, handshake=False))
                   or self._broken(exc, "lost the connection while sending", sent=False)) from exc
        return self._sent >= len(self._out)

    def recv_some(self) -> Optional[memoryview]:
        """Read what the socket has now; return the reply frame's body once it is whole, else ``None``.

        :raises BrokerUnavailable: the socket failed or the broker closed it (``sent=True``).
        :raises BrokerProtocolError: the frame is empty or larger than ``max_frame_size``.
        """
        reader = self.reader
        try:
            chunk = self.sock.recv(reader.want())  # type: ignore[union-attr]
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):  # TLS: e.g. a session ticket
            return None
        except OSError as exc:
            self.taint()
            raise ((self.ssl_context is not None and tls.tls_failure(exc, self.address, handshake=False))
                   or self._broken(exc, "lost the connection while waiting for the answer of", sent=True)) from exc
        if self.ssl_context is None and not reader.data and tls.looks_like_tls(chunk):
            self.taint()
            raise tls.tls_required(self.address)
        if self.ssl_context is not None and self.sock.pending():  # type: ignore[union-attr]
            chunk += self.sock.recv(self.sock.pending())  # type: ignore[union-attr]  # poll cannot see these
        if not chunk:
            self.taint()
            raise BrokerUnavailable(f"lost the connection while waiting for the answer of {self.codec.method} "
                                    f"from ThriftBroker {self.address}: the broker closed the connection",
                                    host=self.address, sent=True, type=TTransportException.END_OF_FILE)
        try:
            body = reader.feed(chunk, self.codec.method)
        except BaseException:
            self.taint()
            raise
        if body is not None:
            self.pending = False
        return body

    def expire(self) -> Exception:
        """Taint the connection and return the error of an exchange whose time ran out."""
        self.taint()
        sending = self._sent < len(self._out)
        what = (f"{'sending' if sending else 'waiting for the answer of'} {self.codec.method} "
                f"{'to' if sending else 'from'} ThriftBroker {self.address}")
        if self._by_deadline:
            return DeadlineExceeded(f"the call's deadline passed while {what}", sent=not sending)
        return BrokerUnavailable(f"timed out after {self.timeout:g} s {what}", host=self.address, sent=not sending,
                                 type=TTransportException.TIMED_OUT)

    def _broken(self, exc: BaseException, doing: str, sent: bool) -> BrokerUnavailable:
        reason = str(exc) or type(exc).__name__
        prep = "to" if doing.endswith("sending") else "from"
        return BrokerUnavailable(f"{doing} {self.codec.method} {prep} ThriftBroker {self.address}: {reason}",
                                 host=self.address, sent=sent, type=TTransportException.UNKNOWN)

    def fileno(self) -> int:
        """Return the socket's descriptor (-1 when closed)."""
        return -1 if self.sock is None else self.sock.fileno()

    def __repr__(self) -> str:
        state = "failed" if self.failed else "connecting" if self.connecting else \
            "open" if self.sock is not None else "closed"
        return f"<Connection {self.address} {state}>"
