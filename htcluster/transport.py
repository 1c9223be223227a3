"""The framed transport of one broker connection, where socket failures become ``BrokerUnavailable``.

:class:`BrokerTransport` is the one place where htcluster classifies a
transport failure (conventions: "translate transport errors in one place"):
before the request frame left (``sent=False``: retrying elsewhere cannot
duplicate it) or after (``sent=True``).  :class:`~htcluster.resource.Resource`
puts the binary protocol on top of it (protocol.md 1.1).
"""
from __future__ import annotations

import os
import socket
from typing import Optional

from thrift.transport.TSocket import TSocket
from thrift.transport.TTransport import TFramedTransport, TTransportException

from .errors import BrokerUnavailable
from .hosts import Host

__all__ = ["MAX_FRAME_SIZE", "BrokerTransport"]

try:
    #: Largest answer frame accepted, in bytes.  The broker does not cap one-shot
    #: answers such as ``get_cells``, so Thrift's 16 MB default would refuse big ones.
    from thrift.transport.TTransport import HARD_MAX_FRAME_SIZE as MAX_FRAME_SIZE
except ImportError:  # older Thrift releases do not limit frames at all
    MAX_FRAME_SIZE = None

_SOCKET_ERRORS = (TTransportException, OSError, EOFError)
#: What a socket timeout raises: ``socket.timeout`` became an alias of ``TimeoutError`` only in 3.10.
_TIMEOUTS = (TimeoutError, socket.timeout)


class BrokerTransport(TFramedTransport):
    """The framed transport over a ``TSocket``, where socket failures become ``BrokerUnavailable``.

    Every byte goes through :meth:`open`, :meth:`flush` (one request frame)
    or :meth:`readFrame` (one answer frame), so these three are the one place
    where failures are classified: before the frame left (``sent=False``) or
    after (``sent=True``).  ``pending`` is True between a request and its
    complete answer; a connection left pending (an interrupted call) is out
    of step with the broker and must not be reused.  ``pid`` is the process
    that connected: a forked child never writes to its parent's socket.

    :param host: the broker's address.
    :param timeout: seconds (float) a read or write may take; given to
        ``TSocket.setTimeout`` in milliseconds once connected.
    :param connect_timeout: seconds (float) a connection attempt may take.
    """

    def __init__(self, host: Host, timeout: float, connect_timeout: float) -> None:
        self.socket = TSocket(host.host, host.port)
        super().__init__(self.socket, *(() if MAX_FRAME_SIZE is None else (MAX_FRAME_SIZE,)))
        self.address = str(host)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.failed = False
        self.pending = False
        self.pid = os.getpid()

    def open(self) -> None:
        # Connecting here rather than in TSocket.open keeps Thrift from logging
        # each refused attempt at ERROR level; the caller gets the error instead.
        self.failed = self.pending = False
        self.pid = os.getpid()
        try:
            handle = socket.create_connection((self.socket.host, self.socket.port), self.connect_timeout)
        except _SOCKET_ERRORS as exc:
            raise self._broken(exc, "cannot connect to", sent=False, limit=self.connect_timeout,
                               kind=TTransportException.NOT_OPEN) from exc
        handle.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.socket.setHandle(handle)
        self.socket.setTimeout(self.timeout * 1000)  # TSocket takes milliseconds

    def flush(self) -> None:
        if self.pid != os.getpid() and self.socket.handle is not None:
            self.failed = True
            self.socket.close()  # this process's copy of the descriptor only: the parent's stays open
            raise BrokerUnavailable(f"the connection to ThriftBroker {self.address} belongs to process {self.pid}, "
                                    f"not to this one ({os.getpid()}, a fork); open a new one here",
                                    host=self.address, sent=False, type=TTransportException.NOT_OPEN)
        if self.failed or self.socket.handle is None:
            why = "failed earlier" if self.failed else "is closed"
            raise BrokerUnavailable(f"the connection to ThriftBroker {self.address} {why}; open a new one",
                                    host=self.address, sent=False, type=TTransportException.NOT_OPEN)
        try:
            super().flush()
        except _SOCKET_ERRORS as exc:
            raise self._broken(exc, "lost the connection while sending a request to", sent=False) from exc
        self.pending = True

    def readFrame(self) -> None:
        try:
            super().readFrame()
        except _SOCKET_ERRORS as exc:
            raise self._broken(exc, "lost the connection while waiting for the answer of", sent=True) from exc
        self.pending = False

    def _broken(self, exc: BaseException, doing: str, sent: bool, limit: Optional[float] = None,
                kind: int = TTransportException.UNKNOWN) -> BrokerUnavailable:
        """Mark the connection failed, close the socket, and build the error to raise.

        :param limit: the timeout in force, in seconds; ``None``: the call timeout.
        """
        self.failed = True
        self.socket.close()
        kind = getattr(exc, "type", kind)
        inner = getattr(exc, "inner", None) or exc
        if isinstance(inner, _TIMEOUTS) or kind == TTransportException.TIMED_OUT:
            kind = TTransportException.TIMED_OUT
            reason = f"timed out after {self.timeout if limit is None else limit:g} s"
        elif kind == TTransportException.END_OF_FILE:
            reason = "the broker closed the connection"
        else:
            reason = str(inner) or type(inner).__name__
        return BrokerUnavailable(f"{doing} ThriftBroker {self.address}: {reason}",
                                 host=self.address, sent=sent, type=kind)
