"""``hypertable.thriftclient`` for code written against the upstream Python client.

:class:`ThriftClient` takes upstream's arguments, ``(host, port,
timeout_ms=300000, do_open=1)`` (:ref:`calling-methods`), and is a
:class:`~htcluster._io.resource.Resource`: the same framed binary wire, every
broker method positional as before, plus what htcluster adds (``mns``,
``ping()``, typed transport errors).  Its failures are
:class:`~htcluster.errors.BrokerUnavailable`, a Thrift ``TTransportException``,
so upstream's ``except TTransportException`` still catches them; the
broker's answers are the one ``ClientException`` class of
:mod:`htcluster.types`.

After :func:`htcluster.compat.install_as_hypertable`, this module *is*
``hypertable.thriftclient``; ``from hypertable.thriftclient import *``
gives the names upstream's module gave (``ThriftClient``, ``HqlService``,
``TSocket``, ``TTransport``, ``TBinaryProtocol``, ``Thrift``).
"""
from __future__ import annotations

import math
from typing import Any, Optional

from thrift import Thrift  # noqa: F401  (upstream's module exposed these names)
from thrift.protocol import TBinaryProtocol  # noqa: F401
from thrift.transport import TSocket, TTransport  # noqa: F401

from .._thrift import HqlService  # noqa: F401
from ..errors import ConfigError
from ..hosts import Host
from .._io.resource import Resource

__all__ = ["DEFAULT_TIMEOUT_MS", "ThriftClient"]

#: Upstream's default ``timeout_ms`` (:ref:`calling-methods`), in milliseconds.
DEFAULT_TIMEOUT_MS = 300000


class ThriftClient(Resource):
    """Connect to one ThriftBroker with upstream's constructor: ``ThriftClient(host, port, timeout_ms, do_open)``.

    :param host: the broker's host name or address.
    :param port: its port (an int, 1..65535; 15867 since Hypertable 0.9.8, 38080 before).
    :param timeout_ms: **milliseconds** a call may wait for its answer (upstream's unit), > 0.
    :param do_open: connect now when true (upstream passes ``1``/``0``).
    :raises ConfigError: the host, the port or ``timeout_ms`` is malformed.
    :raises BrokerUnavailable: ``do_open`` is true and the broker cannot be reached.

    Example, unchanged upstream code::

        client = ThriftClient("localhost", 15867)
        ns = client.namespace_open("test")
        result = client.hql_query(ns, "SELECT * FROM thrift_test")
        client.namespace_close(ns)
        client.close()
    """

    def __init__(self, host: str, port: int, timeout_ms: float = DEFAULT_TIMEOUT_MS, do_open: Any = 1) -> None:
        if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, (int, float)) \
                or not math.isfinite(timeout_ms) or timeout_ms <= 0:
            raise ConfigError(f"timeout_ms must be a positive number of milliseconds, got {timeout_ms!r}")
        self.timeout_ms = timeout_ms
        super().__init__(Host.parse((host, port)), socket_timeout=timeout_ms / 1000, open=bool(do_open))

    def open(self, timeout_ms: Optional[float] = None) -> "ThriftClient":
        """Connect, unless connected (upstream's ``open(timeout_ms)``; the argument is accepted and unused,
        as upstream, whose socket timeout is set once in the constructor).

        :returns: this client.
        :raises BrokerUnavailable: the broker cannot be reached.
        """
        super().open()
        return self

    @property
    def transport(self) -> "UpstreamTransport":
        """What upstream code does with ``client.transport``: ``isOpen()``, ``open()``, ``close()``."""
        return UpstreamTransport(self)

    @property
    def do_close(self) -> int:
        """Upstream's flag: 1 while the connection is open, else 0."""
        return 1 if self.is_open else 0

    def __repr__(self) -> str:
        return "<ThriftClient " + super().__repr__()[len("<Resource "):]


class UpstreamTransport:
    """``client.transport`` of upstream's ThriftClient, reduced to what code used of it.

    :param client: the :class:`ThriftClient` whose connection this is.
    """

    def __init__(self, client: ThriftClient) -> None:
        self._client = client

    def isOpen(self) -> bool:  # noqa: N802  (Thrift's name)
        """True while the connection is open."""
        return self._client.is_open

    def open(self) -> None:
        """Connect (see :meth:`ThriftClient.open`)."""
        self._client.open()

    def close(self) -> None:
        """Close the connection (and the namespaces opened through ``mns``)."""
        self._client.close()
