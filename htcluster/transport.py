"""One broker connection on the wire: whole frames out, checked frames in.

:class:`Connection` is the one place where htcluster touches a broker's
socket and classifies what goes wrong there (conventions: "translate
transport errors in one place").  The framed transport of protocol.md 1.1 is
implemented here directly over a non-blocking socket, so that:

* a request is encoded completely into memory first; its frame is written
  only once it is whole (an argument that cannot be encoded never leaves a
  half-written request behind);
* the whole exchange (send + entire reply) runs against one deadline,
  enforced across reads, instead of a timeout per ``recv``;
* a frame larger than ``max_frame_size`` is refused in both directions;
* any failure between the first byte sent and the last byte read *taints*
  the connection: it is closed and never used again.

Failures become :class:`~htcluster.errors.BrokerUnavailable` with ``sent``
telling whether the broker may have received the request (False: the frame
never left whole, retrying elsewhere cannot duplicate it), or
:class:`~htcluster.errors.DeadlineExceeded` when the caller's deadline (not
the connection's own timeout) cut the exchange.
"""
from __future__ import annotations

import io
import os
import select
import socket
import struct
import time
from typing import Optional

from thrift.protocol.TBinaryProtocol import TBinaryProtocol, TBinaryProtocolAccelerated
from thrift.Thrift import TMessageType
from thrift.transport.TTransport import CReadableTransport, TTransportBase, TTransportException

from .errors import BrokerProtocolError, BrokerUnavailable, DeadlineExceeded, InvalidRequest
from .hosts import DEFAULT_MAX_FRAME_SIZE, Host

__all__ = ["DEFAULT_MAX_FRAME_SIZE", "MAX_FRAME_SIZE", "Connection", "fork_generation"]

#: The old name of :data:`DEFAULT_MAX_FRAME_SIZE`.
MAX_FRAME_SIZE = DEFAULT_MAX_FRAME_SIZE

_CHUNK = 65536  # bytes asked of one recv while the frame's size is unknown (below malloc's mmap threshold)
_BIG_CHUNK = 4 * 1024 * 1024  # at most this much once a large frame's size is known
_HEADER = struct.Struct("!i")
_MESSAGE_HEAD = struct.Struct("!iI")  # version | message type, then the length of the method name
_POLLIN = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP
_TIMEOUTS = (TimeoutError, socket.timeout)

_forks = [0]


def _forked() -> None:
    _forks[0] += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


def fork_generation() -> int:
    """Return how many times this process's ancestry forked since import: a cheap "am I a child?" stamp."""
    return _forks[0]


class _RequestBuffer(TTransportBase):
    """Where the generated ``send_*`` methods write: memory, 4 bytes kept free for the frame length."""

    def __init__(self) -> None:
        self.data = bytearray(4)

    def write(self, buf: bytes) -> None:
        self.data += buf

    def flush(self) -> None:
        """The frame is sent by :meth:`Connection.exchange`, once it is whole."""

    def reset(self) -> None:
        self.data = bytearray(4)  # a new buffer: a view of the old one may still be held by a traceback


class _ReplyBuffer(TTransportBase, CReadableTransport):
    """Where the generated ``recv_*`` methods read: the body of one reply frame."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        self.size = 0

    def load(self, body: bytes | bytearray | memoryview) -> None:
        self.buffer = io.BytesIO(body)
        self.size = len(body)

    def read(self, sz: int) -> bytes:
        return self.buffer.read(sz)

    def left(self) -> int:
        return self.size - self.buffer.tell()

    @property
    def cstringio_buf(self) -> io.BytesIO:
        return self.buffer

    def cstringio_refill(self, partialread: bytes, reqlen: int) -> bytes:
        raise TTransportException(TTransportException.END_OF_FILE, "the reply frame ends inside a value")


class _Mismatch(Exception):
    """A reply header that does not belong to the call in flight."""


class _RequestProtocol(TBinaryProtocolAccelerated):
    """The binary protocol writing a request: numbers each call with the next sequence id."""

    def __init__(self, conn: "Connection") -> None:
        super().__init__(conn.request)
        self.conn = conn

    def writeMessageBegin(self, name: str, type: int, seqid: int) -> None:  # noqa: A002 (Thrift's signature)
        conn = self.conn
        conn.seqid = seqid = (conn.seqid + 1) & 0x7FFFFFFF
        conn.method = name
        head = conn._heads.get(name)
        if head is None:
            encoded = name.encode()
            head = conn._heads[name] = struct.pack("!iI", TBinaryProtocol.VERSION_1 | TMessageType.CALL,
                                                   len(encoded)) + encoded
        conn.request.data += head
        conn.request.data += _HEADER.pack(seqid)


class _ReplyProtocol(TBinaryProtocolAccelerated):
    """The binary protocol reading a reply: its header must name the call in flight."""

    def __init__(self, conn: "Connection", limit: int) -> None:
        super().__init__(conn.reply, string_length_limit=limit, container_length_limit=limit)
        self.conn = conn

    def readMessageBegin(self) -> tuple[str, int, int]:
        conn = self.conn
        buf = conn.reply.buffer
        head = buf.read(8)
        word, size = _MESSAGE_HEAD.unpack(head) if len(head) == 8 else (0, 0)
        if word < 0 and word & TBinaryProtocol.VERSION_MASK == TBinaryProtocol.VERSION_1 and size < 4096:
            raw, tail = buf.read(size), buf.read(4)  # the strict header every Thrift server writes
            if len(raw) != size or len(tail) != 4:
                raise _Mismatch("the reply frame ends inside its message header")
            kind, seqid = word & TBinaryProtocol.TYPE_MASK, _HEADER.unpack(tail)[0]
            name: str = raw.decode("utf-8", "replace")
        else:
            buf.seek(0)
            name, kind, seqid = super().readMessageBegin()
        if seqid != conn.seqid or name != conn.method or kind not in (TMessageType.REPLY, TMessageType.EXCEPTION):
            raise _Mismatch(f"a reply to {name!r} #{seqid} (message type {kind}) came for {conn.method!r} "
                            f"#{conn.seqid}: a stale or extra reply")
        return name, kind, seqid


class Connection:
    """One TCP connection to a ThriftBroker, framed transport, binary protocol.

    :param host: the broker's address.
    :param timeout: seconds (float) one whole call may take: sending the
        request and receiving its entire reply.
    :param connect_timeout: seconds (float) a connection attempt may take.
    :param max_frame_size: largest frame in bytes, sent or received; also the
        protocol's limit on one string or container.

    ``iprot``/``oprot`` are the protocols the generated client reads and
    writes; :meth:`exchange` moves the encoded request out and the reply in.
    Not thread-safe: one call at a time, as a Thrift client.
    """

    def __init__(self, host: Host, timeout: float, connect_timeout: float,
                 max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        self.host = host
        self.address = str(host)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_frame_size = max_frame_size
        self.sock: Optional[socket.socket] = None
        self.failed = False
        self.pending = False  # a request left and its reply is not fully read
        self.extra = False    # more bytes came than the reply: the next read would be out of step
        self.fork = _forks[0]
        self.pid = os.getpid()
        self.seqid = 0
        self.method = ""
        self._heads: dict[str, bytes] = {}
        self._poll: Optional[select.poll] = None
        self._out, self._sent, self._in, self._size = bytearray(), 0, bytearray(), -1
        self._end, self._by_deadline = 0.0, False
        self.request = _RequestBuffer()
        self.reply = _ReplyBuffer()
        self.oprot = _RequestProtocol(self)
        self.iprot = _ReplyProtocol(self, max_frame_size)

    # ------------------------------------------------------------ state

    @property
    def is_open(self) -> bool:
        """True while the socket is connected (as far as is known without I/O)."""
        return self.sock is not None

    def isOpen(self) -> bool:  # noqa: N802 (Thrift's transport API, for upstream code using client.transport)
        """Thrift's name for :attr:`is_open`."""
        return self.is_open

    @property
    def reusable(self) -> bool:
        """True when open, not failed, in step, and owned by this process (not a fork's parent)."""
        return (self.sock is not None and not self.failed and not self.pending and not self.extra
                and self.fork == _forks[0])

    def is_stale(self) -> bool:
        """Check with one non-blocking ``poll`` whether an idle connection can still be used.

        An idle connection has nothing to read: a readable socket means the
        broker closed it (end-of-file, reset) or sent bytes nobody asked for.
        Either way it is closed here.

        :returns: True when the connection is not :attr:`reusable` or the broker left it.
        """
        if not self.reusable:
            return True
        if self._poll is not None and self._poll.poll(0):
            self.close()
            return True
        return False

    # ------------------------------------------------------------ open / close

    def open(self, deadline: Optional[float] = None) -> None:
        """Connect within ``connect_timeout`` (and before ``deadline``, a ``time.monotonic`` time).

        :raises BrokerUnavailable: refused, unreachable or timed out (``sent=False``).
        :raises DeadlineExceeded: ``deadline`` passed before the connection was made.
        """
        self.close()
        self.failed = self.pending = self.extra = False
        self.fork, self.pid = _forks[0], os.getpid()
        limit, by_deadline = self.connect_timeout, False
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeadlineExceeded(f"no time left to connect to ThriftBroker {self.address}", sent=False)
            if left < limit:
                limit, by_deadline = left, True
        try:
            sock = socket.create_connection((self.host.host, self.host.port), limit)
        except OSError as exc:
            self.failed = True
            if by_deadline and isinstance(exc, _TIMEOUTS):
                raise DeadlineExceeded(f"the call's deadline passed while connecting to ThriftBroker "
                                       f"{self.address}", sent=False) from exc
            reason = f"timed out after {limit:g} s" if isinstance(exc, _TIMEOUTS) else str(exc) or type(exc).__name__
            kind = TTransportException.TIMED_OUT if isinstance(exc, _TIMEOUTS) else TTransportException.NOT_OPEN
            raise BrokerUnavailable(f"cannot connect to ThriftBroker {self.address}: {reason}",
                                    host=self.address, sent=False, type=kind) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        self.sock = sock
        self._poll = select.poll()
        self._poll.register(sock, _POLLIN)
        self.seqid = 0

    def close(self) -> None:
        """Close the socket (idempotent, never raises).  In a forked child only its own copy closes."""
        sock, self.sock, self._poll = self.sock, None, None
        if sock is not None:
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
        if self.sock is None or self.failed or self.pending or self.extra:
            why = ("failed earlier" if self.failed else "is closed" if self.sock is None
                   else "is out of step (a call was interrupted)")
            raise BrokerUnavailable(f"the connection to ThriftBroker {self.address} {why}; open a new one",
                                    host=self.address, sent=False, type=TTransportException.NOT_OPEN)

    def limit(self, deadline: Optional[float]) -> tuple[float, bool]:
        """Return ``(end, by_deadline)``: when this call must end, and whether the caller's deadline sets it."""
        end = time.monotonic() + self.timeout
        if deadline is not None and deadline < end:
            return deadline, True
        return end, False

    def exchange(self, deadline: Optional[float] = None) -> None:
        """Send the encoded request as one frame and load its whole reply frame into :attr:`reply`.

        :param deadline: ``time.monotonic()`` time by which the exchange must
            end, when earlier than ``timeout`` from now.
        :raises InvalidRequest: the request is larger than ``max_frame_size`` (nothing sent).
        :raises BrokerUnavailable: the socket failed or the connection's ``timeout`` passed.
        :raises BrokerProtocolError: the reply frame is larger than ``max_frame_size`` or empty.
        :raises DeadlineExceeded: ``deadline`` passed first.
        """
        end = self.start(deadline)
        try:
            while not self.send_some():
                left = end - time.monotonic()
                if left <= 0 or not select.select((), (self.sock,), (), left)[1]:  # type: ignore[type-var]
                    raise self.expire()
            poll = self._poll
            while True:  # wait first: an answer is never there the instant the request left
                left = end - time.monotonic()
                if left <= 0 or not poll.poll(left * 1000.0 + 1):  # type: ignore[union-attr]
                    raise self.expire()
                if self.recv_some():
                    break
        except BaseException:
            self.taint()
            raise

    # The steps of one exchange, for callers that multiplex many connections (poll):
    # start(), then send_some() while the socket is writable until it returns True, then
    # recv_some() while it is readable until it returns True; expire() when time is up.

    def start(self, deadline: Optional[float] = None) -> float:
        """Frame the encoded request; return the ``time.monotonic()`` time the exchange must end by.

        :raises InvalidRequest: the request is larger than ``max_frame_size`` (nothing sent).
        """
        frame = self.request.data
        size = len(frame) - 4
        self.request.reset()
        if size > self.max_frame_size:
            raise InvalidRequest(f"the {self.method} request is {size:,} bytes, over max_frame_size "
                                 f"{self.max_frame_size:,}; send less per call (split the cells, or use a "
                                 "mutator), or raise max_frame_size on both sides", method=self.method)
        _HEADER.pack_into(frame, 0, size)
        self._out, self._sent = frame, 0
        self._in, self._size = bytearray(), -1
        self._end, self._by_deadline = self.limit(deadline)
        self.pending = True
        return self._end

    def send_some(self) -> bool:
        """Send what the socket takes now; True once the whole frame left.

        :raises BrokerUnavailable: the socket failed (``sent=False``: the frame never left whole).
        """
        try:
            self._sent += self.sock.send(memoryview(self._out)[self._sent:] if self._sent else self._out)  # type: ignore[union-attr]
        except BlockingIOError:
            return False
        except OSError as exc:
            self.taint()
            raise self._broken(exc, "lost the connection while sending", sent=False) from exc
        return self._sent >= len(self._out)

    def recv_some(self) -> bool:
        """Read what the socket has now; True once the whole reply frame is loaded into :attr:`reply`.

        Bytes beyond the frame mark the connection :attr:`extra` (not reusable).

        :raises BrokerUnavailable: the socket failed or the broker closed it (``sent=True``).
        :raises BrokerProtocolError: the frame is empty or larger than ``max_frame_size``.
        """
        try:
            want = _CHUNK if self._size < 0 else max(_CHUNK, min(4 + self._size - len(self._in), _BIG_CHUNK))
            chunk = self.sock.recv(want)  # type: ignore[union-attr]
        except BlockingIOError:
            return False
        except OSError as exc:
            self.taint()
            raise self._broken(exc, "lost the connection while waiting for the answer of", sent=True) from exc
        if not chunk:
            self.taint()
            raise BrokerUnavailable(f"lost the connection while waiting for the answer of {self.method} from "
                                    f"ThriftBroker {self.address}: the broker closed the connection",
                                    host=self.address, sent=True, type=TTransportException.END_OF_FILE)
        data = self._in
        data += chunk
        if self._size < 0:
            if len(data) < 4:
                return False
            self._size = size = _HEADER.unpack_from(data)[0]
            if size <= 0 or size > self.max_frame_size:
                self.taint()
                raise BrokerProtocolError(
                    f"ThriftBroker {self.address} answered {self.method} with a frame of {size:,} bytes, "
                    f"outside 1..max_frame_size ({self.max_frame_size:,}); if the answer is that large, "
                    "read it with a scanner or raise max_frame_size", host=self.address)
        need = 4 + self._size
        if len(data) < need:
            return False
        if len(data) > need:
            self.extra = True
        self.reply.load(memoryview(data)[4:need])
        self._in = bytearray()
        self.pending = False
        return True

    def expire(self) -> Exception:
        """Taint the connection and return the error of an exchange whose time ran out."""
        self.taint()
        doing = "sending" if self._sent < len(self._out) else "waiting for the answer of"
        return self._timed_out(doing, self._end, self._by_deadline, sent=self._sent >= len(self._out))

    def _timed_out(self, doing: str, end: float, by_deadline: bool, sent: bool) -> Exception:
        what = f"{doing} {self.method} {'to' if doing == 'sending' else 'from'} ThriftBroker {self.address}"
        if by_deadline:
            return DeadlineExceeded(f"the call's deadline passed while {what}", sent=sent)
        return BrokerUnavailable(f"timed out after {self.timeout:g} s {what}", host=self.address, sent=sent,
                                 type=TTransportException.TIMED_OUT)

    def _broken(self, exc: BaseException, doing: str, sent: bool) -> BrokerUnavailable:
        reason = str(exc) or type(exc).__name__
        prep = "to" if doing.endswith("sending") else "from"
        return BrokerUnavailable(f"{doing} {self.method} {prep} ThriftBroker {self.address}: {reason}",
                                 host=self.address, sent=sent, type=TTransportException.UNKNOWN)

    def decode_failed(self, exc: BaseException) -> BrokerProtocolError:
        """Taint the connection and describe a reply that did not decode as the call's answer."""
        self.taint()
        if isinstance(exc, _Mismatch):
            why = str(exc)
        else:
            why = f"the reply does not decode ({type(exc).__name__}: {exc})"
        return BrokerProtocolError(f"ThriftBroker {self.address} answered {self.method} out of step: {why}; "
                                   "the connection was closed", host=self.address)

    def check_consumed(self) -> None:
        """Raise :class:`BrokerProtocolError` unless the reply frame held exactly one reply."""
        left = self.reply.left()
        if left:
            self.taint()
            raise BrokerProtocolError(f"ThriftBroker {self.address} answered {self.method} with {left} bytes more "
                                      "than one reply in its frame; the connection was closed", host=self.address)

    def __repr__(self) -> str:
        state = "failed" if self.failed else "open" if self.sock is not None else "closed"
        return f"<Connection {self.address} {state}>"
