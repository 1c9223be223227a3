"""The broker side of the wire: frames, binary protocol, sized limits, one call run from one frame.

Frames are read by the connection loop (``reactor.py``), whole, before a
call is decoded: :func:`run_frame` decodes one request from the bytes of one
frame only, so a frame holding a truncated message fails on its own instead
of reading into the next frame (issue 10).

One quirk needs care (:ref:`broker-types`): the broker counts an interval end as
inclusive only if its ``*_inclusive`` field is *present on the wire* and true,
but the generated classes fill an absent field with the IDL default ``True``.
:class:`BrokerProtocol` therefore decodes ``RowInterval`` and
``CellInterval`` into subclasses whose absent fields stay ``None``, by
rewriting the decoding spec of any struct that contains them.  This needs the
C-accelerated decoder (``thrift.protocol.fastbinary``, present in every wheel
of ``thrift``); without it an absent field reads as inclusive.

That decoder also replaces invalid UTF-8 in ``string`` fields with U+FFFD,
which would merge distinct row keys; :class:`BrokerProtocol` checks the
arguments of every call (:mod:`.utf8`) and :func:`run_frame` refuses a call
holding such a string with a ``ClientException`` instead of running it.
"""
from __future__ import annotations

import struct
from typing import Any

from thrift.protocol.TBinaryProtocol import TBinaryProtocolAccelerated
from thrift.Thrift import TApplicationException, TMessageType
from thrift.transport.TTransport import TMemoryBuffer

from .._thrift import ClientService, HqlService
from .._thrift.ttypes import CellInterval, RowInterval
from ._errors import client_error
from .utf8 import InvalidText, binary_spec, first_invalid, has_replacement

from ..hosts import DEFAULT_MAX_FRAME_SIZE

__all__ = ["DEFAULT_MAX_FRAME_SIZE", "MAX_CONTAINER_LENGTH", "BrokerProtocol", "refusal", "run_frame"]

# DEFAULT_MAX_FRAME_SIZE: bytes of the largest request frame accepted by default
# (``--max-frame-size``); a larger one drops the connection at its header.  The
# same constant as the client's (``htcluster.hosts``).
#: Elements of the largest list/map accepted in a request.
MAX_CONTAINER_LENGTH = 4_000_000


class WireRowInterval(RowInterval):
    """A ``RowInterval`` as read by the broker: absent fields stay ``None``."""

    def __init__(self, start_row: Any = None, start_inclusive: Any = None, end_row: Any = None,
                 end_inclusive: Any = None, start_row_binary: Any = None, end_row_binary: Any = None) -> None:
        super().__init__(start_row, start_inclusive, end_row, end_inclusive, start_row_binary, end_row_binary)


class WireCellInterval(CellInterval):
    """A ``CellInterval`` as read by the broker: absent fields stay ``None``."""

    def __init__(self, start_row: Any = None, start_column: Any = None, start_inclusive: Any = None,
                 end_row: Any = None, end_column: Any = None, end_inclusive: Any = None) -> None:
        super().__init__(start_row, start_column, start_inclusive, end_row, end_column, end_inclusive)


_SUBSTITUTES: dict[type, type] = {RowInterval: WireRowInterval, CellInterval: WireCellInterval}
_specs: dict[type, Any] = {}


def _rewrite(spec: Any) -> Any:
    """Return ``spec`` with every ``[RowInterval, ...]`` / ``[CellInterval, ...]`` class swapped."""
    if isinstance(spec, tuple):
        return tuple(_rewrite(item) for item in spec)
    if isinstance(spec, list) and len(spec) == 2 and isinstance(spec[0], type):
        return [_SUBSTITUTES.get(spec[0], spec[0]), _rewrite(spec[1])]
    return spec


def _wire_spec(cls: type, spec: Any) -> Any:
    found = _specs.get(cls)
    if found is None:
        found = _specs[cls] = _rewrite(spec)
    return found


class BrokerProtocol(TBinaryProtocolAccelerated):
    """Binary protocol (C-accelerated) that keeps interval presence as sent and refuses strings that are not UTF-8.

    ``message`` is ``(name, type, seqid)`` of the last message begun.  Decoding
    the arguments of a call raises :class:`~.utf8.InvalidText` when one of their
    strings is not valid UTF-8 (:mod:`.utf8`); :func:`run_frame` answers it.
    """

    def __init__(self, trans: Any, **kwargs: Any) -> None:
        super().__init__(trans, **kwargs)
        self.message: tuple[str, int, int] = ("", 0, 0)
        fast = getattr(self, "_fast_decode", None)  # set by Thrift's accelerated protocol when its C module is there
        if fast is not None:
            def decode(obj: Any, iprot: Any, typeargs: list) -> Any:
                cls, spec = typeargs
                start = iprot.trans.cstringio_buf.tell()
                decoded = fast(obj, iprot, [cls, _wire_spec(cls, spec)])
                if has_replacement(cls, obj):  # a U+FFFD: sent as such, or put there for invalid UTF-8?
                    again = TMemoryBuffer(iprot.trans.getvalue()[start:])
                    strict = cls()
                    fast(strict, TBinaryProtocolAccelerated(again, **kwargs), [cls, binary_spec(spec)])
                    invalid = first_invalid(spec, strict)
                    if invalid is not None:
                        raise invalid
                return decoded
            self._fast_decode = decode

    def readMessageBegin(self) -> Any:
        """Read a message header and remember it in ``message``."""
        self.message = super().readMessageBegin()
        return self.message


def refusal(message: tuple[str, int, int], invalid: InvalidText) -> bytes:
    """Return the answer to a call whose arguments hold a string that is not UTF-8 (without its frame length).

    :param message: ``(name, type, seqid)`` of the call.
    :returns: the call's result with ``ClientException(invalid.code)`` (a ``TApplicationException``
        for a method that declares none).
    """
    name, _, seqid = message
    error = client_error(invalid.code, f"{name}: {invalid.path} {invalid.detail}; Thrift strings, row keys "
                                       "included, must be UTF-8 text: the broker refuses them rather than "
                                       "alter them, and nothing of the call was done")
    result_cls = getattr(ClientService, f"{name}_result", None) or getattr(HqlService, f"{name}_result", None)
    out = TMemoryBuffer()
    oprot = BrokerProtocol(out)
    names = {field[2] for field in getattr(result_cls, "thrift_spec", None) or () if field is not None}
    if result_cls is not None and "e" in names:
        oprot.writeMessageBegin(name, TMessageType.REPLY, seqid)
        result_cls(e=error).write(oprot)
    else:
        oprot.writeMessageBegin(name, TMessageType.EXCEPTION, seqid)
        TApplicationException(TApplicationException.UNKNOWN, error.message).write(oprot)
    oprot.writeMessageEnd()
    return out.getvalue()


_LENGTH = struct.Struct("!i")


def run_frame(processor: Any, frame: bytes, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> bytes:
    """Decode the one request held by ``frame``, run it, and return its answer as a frame.

    :param processor: a generated ``HqlService.Processor`` over the connection's handler.
    :param frame: the body of one request frame (without its length prefix).
    :param max_frame_size: bytes; the longest string decoded from the frame.
    :returns: the answer with its 4-byte length in front; ``b''`` when the call has none.
        A call with a string that is not UTF-8 is answered by :func:`refusal` and not run.
    :raises EOFError: the message ends before the frame does (a truncated message).
    :raises Exception: other decoding failures (``TProtocolException``, ...),
        and ``TTransportException`` from the handler (for example, ``ClientGone``).
    """
    inbound = BrokerProtocol(TMemoryBuffer(frame), string_length_limit=max_frame_size,
                             container_length_limit=MAX_CONTAINER_LENGTH)
    out = TMemoryBuffer()
    try:
        processor.process(inbound, BrokerProtocol(out))
        answer = out.getvalue()
    except InvalidText as invalid:  # raised while the arguments were decoded: nothing ran
        answer = refusal(inbound.message, invalid)
    return _LENGTH.pack(len(answer)) + answer if answer else b""
