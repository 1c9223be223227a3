"""Calls to frames and frames to replies: the ThriftBroker wire protocol without I/O.

A :class:`Codec` belongs to one connection.  :meth:`Codec.encode` turns a
call (a broker method name and its arguments) into one complete frame of
bytes (the 4-byte length, then the binary-protocol message), numbering it
with the connection's next sequence id.  :meth:`Codec.decode` turns the body
of a reply frame into the call's answer, after checking that it *is* this
call's answer: the method name, the sequence id and the message type must
match, and the frame must hold exactly one reply.  There is no socket, clock
or thread here (h11's shape): the blocking connection and any other I/O
flavour feed the same codec.

The encoding is the generated ``HqlService`` client's own (``send_*`` and
``recv_*`` run with the codec standing in for the client), over Thrift's
binary protocol in its C-accelerated form where installed, so the bytes are
exactly those of upstream's ``ThriftClient`` (the framed transport and binary
protocol of a ThriftBroker, default port 15867).

Errors: an argument that does not encode, or a request over
``max_frame_size``, is :class:`~htcluster.errors.InvalidRequest` (nothing
was sent; the codec is ready for the next call).  A reply that is not this
call's answer is :class:`~htcluster.errors.BrokerProtocolError`.  The
broker's own answers (``ClientException``, ``TApplicationException``) are
raised as they are: they are answers, the connection stays in step.
"""
from __future__ import annotations

import io
import struct
from typing import Any, Callable, Optional

from thrift.protocol.TBinaryProtocol import TBinaryProtocol, TBinaryProtocolAccelerated
from thrift.Thrift import TApplicationException, TMessageType, TType
from thrift.transport.TTransport import CReadableTransport, TTransportBase, TTransportException

from .._thrift import ClientService, HqlService
from .._thrift.ttypes import ClientException
from ..errors import BrokerProtocolError, InvalidRequest
from .keys import ROW_METHODS, check_rows

__all__ = ["ANSWERS", "BROKER_METHODS", "Codec", "DEFAULT_MAX_FRAME_SIZE", "HARD_MAX_FRAME_SIZE", "LENGTH",
           "NAMESPACED_METHODS"]

#: Largest frame, in bytes, that the client reads and the stand-in broker accepts by default: one
#: constant for both sides, so that anything the broker can answer can be read.
DEFAULT_MAX_FRAME_SIZE = 64 * 1024 * 1024
#: Largest frame size accepted as an option at all (Thrift's own hard limit, 1 GiB - 1).
HARD_MAX_FRAME_SIZE = 0x3FFFFFFF
#: Every method a ThriftBroker serves (``HqlService`` and the ``ClientService`` it extends).
BROKER_METHODS = frozenset(name for name in dir(HqlService.Iface) if not name.startswith("_"))
def _takes_namespace(method: str) -> bool:
    """True when the first argument of ``method`` is a namespace id (an i64 named ``ns`` in the IDL)."""
    module = HqlService if hasattr(HqlService, method + "_args") else ClientService
    spec = getattr(module, method + "_args").thrift_spec
    return len(spec) > 1 and spec[1] is not None and spec[1][2] == "ns" and spec[1][1] == TType.I64


#: Methods whose first argument is a namespace id (a routed call names the namespace instead).
NAMESPACED_METHODS = frozenset(m for m in BROKER_METHODS if _takes_namespace(m)) - {"namespace_close",
                                                                                     "close_namespace"}
#: The broker's answers: exceptions that arrive as a reply, after which the connection is in step.
ANSWERS = (ClientException, TApplicationException)
#: The frame header: the length of the message that follows, a big-endian signed 32-bit int.
LENGTH = struct.Struct("!i")

_MESSAGE_HEAD = struct.Struct("!iI")  # version | message type, then the length of the method name
_SEND: dict[str, Callable[..., None]] = {name: getattr(HqlService.Client, "send_" + name) for name in BROKER_METHODS}
_RECV: dict[str, Callable[[Any], Any]] = {name: getattr(HqlService.Client, "recv_" + name) for name in BROKER_METHODS}


class _Request(TTransportBase):
    """Where the generated ``send_*`` write: memory, the first 4 bytes kept for the frame length."""

    def __init__(self) -> None:
        self.data = bytearray(4)

    def write(self, buf: bytes) -> None:
        self.data += buf

    def flush(self) -> None:
        """The frame is complete once ``send_*`` returns; :meth:`Codec.encode` takes it."""


class _Reply(TTransportBase, CReadableTransport):
    """Where the generated ``recv_*`` read: the body of one reply frame."""

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
    """The binary protocol writing a request: numbers each call with the codec's next sequence id."""

    def __init__(self, codec: "Codec") -> None:
        super().__init__(codec.request)
        self.codec = codec

    def writeMessageBegin(self, name: str, type: int, seqid: int) -> None:  # noqa: A002 (Thrift's signature)
        codec = self.codec
        codec.seqid = seqid = (codec.seqid + 1) & 0x7FFFFFFF
        codec.method = name
        head = codec.heads.get(name)
        if head is None:
            encoded = name.encode()
            head = codec.heads[name] = _MESSAGE_HEAD.pack(TBinaryProtocol.VERSION_1 | TMessageType.CALL,
                                                          len(encoded)) + encoded
        data = codec.request.data
        data += head
        data += LENGTH.pack(seqid)


class _ReplyProtocol(TBinaryProtocolAccelerated):
    """The binary protocol reading a reply: its header must name the call in flight."""

    def __init__(self, codec: "Codec", limit: int) -> None:
        super().__init__(codec.reply, string_length_limit=limit, container_length_limit=limit)
        self.codec = codec

    def readMessageBegin(self) -> tuple[str, int, int]:
        codec = self.codec
        buf = codec.reply.buffer
        head = buf.read(8)
        word, size = _MESSAGE_HEAD.unpack(head) if len(head) == 8 else (0, 0)
        if word < 0 and word & TBinaryProtocol.VERSION_MASK == TBinaryProtocol.VERSION_1 and size < 4096:
            raw, tail = buf.read(size), buf.read(4)  # the strict header every Thrift server writes
            if len(raw) != size or len(tail) != 4:
                raise _Mismatch("the reply frame ends inside its message header")
            kind, seqid = word & TBinaryProtocol.TYPE_MASK, LENGTH.unpack(tail)[0]
            name: str = raw.decode("utf-8", "replace")
        else:
            buf.seek(0)
            name, kind, seqid = super().readMessageBegin()
        if seqid != codec.seqid or name != codec.method or kind not in (TMessageType.REPLY, TMessageType.EXCEPTION):
            raise _Mismatch(f"a reply to {name!r} #{seqid} (message type {kind}) came for {codec.method!r} "
                            f"#{codec.seqid}: a stale or extra reply")
        return name, kind, seqid


def _recv_unknown(codec: "Codec") -> Any:
    """Read the reply to a method this client does not know: only the broker's error answer decodes."""
    name, kind, seqid = codec.iprot.readMessageBegin()
    if kind == TMessageType.EXCEPTION:
        error = TApplicationException()
        error.read(codec.iprot)
        codec.iprot.readMessageEnd()
        raise error
    raise _Mismatch(f"a {kind} reply to {name!r}, a method this client does not know")


class Codec:
    """Encode the calls and decode the replies of one broker connection; no I/O.

    :param max_frame_size: largest frame in bytes, either way; also the limit
        on one string or container of a reply (int, 1024 .. 2**30 - 1).
    :param address: ``'host:port'`` of the broker, for error messages.

    State between calls: :attr:`seqid` and :attr:`method` of the call in
    flight.  Not thread-safe: one call at a time, like its connection.

    Example::

        codec = Codec(DEFAULT_MAX_FRAME_SIZE, 'localhost:15867')
        frame = codec.encode('namespace_exists', ('test',))  # bytes to send
        answer = codec.decode(body)  # body: the reply frame without its 4-byte length
    """

    __slots__ = ("max_frame_size", "address", "seqid", "method", "heads", "request", "reply", "oprot", "iprot",
                 "_oprot", "_iprot", "_seqid")

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE, address: str = "") -> None:
        self.max_frame_size = max_frame_size
        self.address = address
        #: Sequence id of the last call encoded (31 bits, wrapping).
        self.seqid = 0
        #: Name of the last call encoded.
        self.method = ""
        self.heads: dict[str, bytes] = {}
        self.request = _Request()
        self.reply = _Reply()
        #: The binary protocol writing requests into :attr:`request` (numbering each call).
        self.oprot = _RequestProtocol(self)
        #: The binary protocol reading the reply loaded into :attr:`reply` (checking its header).
        self.iprot = _ReplyProtocol(self, max_frame_size)
        # The names the generated send_*/recv_* use on their client.
        self._oprot, self._iprot, self._seqid = self.oprot, self.iprot, 0

    def encode(self, method: str, args: tuple[Any, ...], kwargs: Optional[dict[str, Any]] = None) -> bytearray:
        """Return the whole frame of the call ``method(*args, **kwargs)``, numbered with the next sequence id.

        :param method: a name of :data:`BROKER_METHODS`.
        :param args: the method's arguments in IDL order (a namespace id first where it takes one).
        :returns: the frame: its 4-byte length, then the message.
        :raises KeyError: ``method`` is not a broker method.
        :raises InvalidRequest: an argument does not encode, a row key is not valid UTF-8 or holds a
            NUL (:mod:`htcluster._wire.keys`), or the frame is over ``max_frame_size``.
        """
        send = _SEND[method]
        if method in ROW_METHODS:
            check_rows(method, args)
        try:
            send(self, *args, **kwargs) if kwargs else send(self, *args)
        except Exception as exc:
            self.request.data = bytearray(4)
            raise InvalidRequest(f"cannot send {method}: its arguments do not encode ({type(exc).__name__}: {exc}); "
                                 "nothing was sent - check the argument types against the method's reference",
                                 method=method) from exc
        except BaseException:
            self.request.data = bytearray(4)
            raise
        return self.take_frame()

    def take_frame(self) -> bytearray:
        """Return the frame of the message written to :attr:`oprot` since the last one, its length filled in.

        :meth:`encode` ends with it; code that writes a message by hand (with
        ``oprot.writeMessageBegin`` ...) takes its frame the same way.

        :raises InvalidRequest: the frame is over ``max_frame_size``.
        """
        frame = self.request.data
        self.request.data = bytearray(4)  # a new buffer: a view of the old one may still be in use
        size = len(frame) - 4
        if size > self.max_frame_size:
            raise InvalidRequest(f"the {self.method} request is {size:,} bytes, over max_frame_size "
                                 f"{self.max_frame_size:,}; send less per call (split the cells, or use a "
                                 "mutator), or raise max_frame_size on both sides", method=self.method)
        LENGTH.pack_into(frame, 0, size)
        return frame

    def decode(self, body: bytes | bytearray | memoryview) -> Any:
        """Return the answer carried by ``body``, the reply frame of the last call encoded.

        :param body: the frame without its 4-byte length.
        :returns: the answer (``None`` for a method that returns nothing).
        :raises ClientException: the broker's error answer (the connection is in step).
        :raises TApplicationException: the broker's protocol-level answer (e.g. unknown method).
        :raises BrokerProtocolError: the reply is not this call's answer, does not decode, or the
            frame holds more than one reply (the connection is out of step).
        """
        self.reply.load(body)
        try:
            recv: Callable[[Any], Any] = _RECV.get(self.method, _recv_unknown)
            result = recv(self)
        except ANSWERS:
            self.check_consumed()
            raise
        except Exception as exc:
            why = str(exc) if isinstance(exc, _Mismatch) else \
                f"the reply does not decode ({type(exc).__name__}: {exc})"
            raise BrokerProtocolError(f"ThriftBroker {self.address} answered {self.method} out of step: {why}; "
                                      "the connection was closed", host=self.address) from exc
        self.check_consumed()
        return result

    def check_consumed(self) -> None:
        """Raise :class:`BrokerProtocolError` unless the reply frame held exactly one reply."""
        left = self.reply.left()
        if left:
            raise BrokerProtocolError(f"ThriftBroker {self.address} answered {self.method} with {left} bytes more "
                                      "than one reply in its frame; the connection was closed", host=self.address)
