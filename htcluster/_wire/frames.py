"""Received bytes to whole frames: the framed transport's reading half, without I/O.

A :class:`FrameReader` is fed whatever a socket returned and says when one
frame (a 4-byte big-endian length, then that many bytes) is complete.  It
refuses a length outside ``1 .. max_frame_size`` before any of the body is
buffered, and notes bytes that arrived beyond the frame (:attr:`extra`): a
connection that received them is out of step and must not be reused.
"""
from __future__ import annotations

from typing import Optional

from ..errors import BrokerProtocolError
from .codec import LENGTH

__all__ = ["FrameReader", "RECV_CHUNK"]

#: Bytes asked of one ``recv`` while the frame's size is unknown (below malloc's mmap threshold).
RECV_CHUNK = 65536
_BIG_CHUNK = 4 * 1024 * 1024  # at most this much per recv once a large frame's size is known


class FrameReader:
    """Collect one reply frame from received chunks.

    :param max_frame_size: largest frame body accepted, in bytes.
    :param address: ``'host:port'`` of the peer, for error messages.
    """

    __slots__ = ("max_frame_size", "address", "data", "size", "extra")

    def __init__(self, max_frame_size: int, address: str = "") -> None:
        self.max_frame_size = max_frame_size
        self.address = address
        self.data = bytearray()
        self.size = -1
        #: True once bytes beyond the frame arrived: the connection is out of step.
        self.extra = False

    def reset(self) -> None:
        """Forget a partial frame: the next bytes start a new one."""
        self.data = bytearray()
        self.size = -1

    def want(self) -> int:
        """Return how many bytes to ask the next ``recv`` for."""
        if self.size < 0:
            return RECV_CHUNK
        return max(RECV_CHUNK, min(4 + self.size - len(self.data), _BIG_CHUNK))

    def feed(self, chunk: bytes, method: str = "a call") -> Optional[memoryview]:
        """Add ``chunk``; return the frame's body once it is complete, else ``None``.

        :param chunk: bytes as received (non-empty).
        :param method: the call being answered, for the error message.
        :returns: a view of the body (without the length), or ``None`` while incomplete.
        :raises BrokerProtocolError: the announced length is not in ``1 .. max_frame_size``.
        """
        data = self.data
        data += chunk
        if self.size < 0:
            if len(data) < 4:
                return None
            self.size = size = LENGTH.unpack_from(data)[0]
            if size <= 0 or size > self.max_frame_size:
                raise BrokerProtocolError(
                    f"ThriftBroker {self.address} answered {method} with a frame of {size:,} bytes, "
                    f"outside 1..max_frame_size ({self.max_frame_size:,}); if the answer is that large, "
                    "read it with a scanner or raise max_frame_size", host=self.address)
        need = 4 + self.size
        if len(data) < need:
            return None
        if len(data) > need:
            self.extra = True
        self.data, self.size = bytearray(), -1
        return memoryview(data)[4:need]
