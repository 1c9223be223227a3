"""The htcluster exception hierarchy.

Everything htcluster raises on its own account derives from
:class:`HtclusterError`.  The broker's own answers pass through untouched:
:class:`ClientException` (with its numeric ``code``, protocol.md section 4)
and Thrift's ``TApplicationException``.

==========================  =================================================
class                       raised when
==========================  =================================================
:class:`BrokerUnavailable`  a socket or framing failure talking to one broker
                            (also a ``TTransportException``)
:class:`PoolTimeout`        no connection of a pool became free in time
:class:`NoHostAvailable`    every host a call could use failed
:class:`BroadcastError`     some hosts of a broadcast failed
:class:`ConfigError`        a setting is invalid (also a ``ValueError``)
==========================  =================================================
"""
from __future__ import annotations

from typing import Any, Mapping

from thrift.transport.TTransport import TTransportException

from ._thrift.ttypes import ClientException

__all__ = [
    "BroadcastError",
    "BrokerUnavailable",
    "ClientException",
    "ConfigError",
    "HtclusterError",
    "NoHostAvailable",
    "PoolTimeout",
]


class HtclusterError(Exception):
    """Base class of every error htcluster raises itself."""


class BrokerUnavailable(HtclusterError, TTransportException):
    """A ThriftBroker could not be reached, or the connection broke mid-call.

    Subclasses Thrift's ``TTransportException`` so that ``except
    TTransportException`` clauses written for the upstream client still catch it.

    :param message: what went wrong, naming the host.
    :param host: the ``host:port`` concerned, or ``None``.
    :param sent: ``False`` when the failure happened before the request was
        sent (connection refused, connect timeout): retrying elsewhere cannot
        duplicate it.  ``True`` (the default, the safe assumption) when the
        broker may have received it.
    :param type: a ``TTransportException`` type constant.
    """

    def __init__(self, message: str, host: str | None = None, sent: bool = True,
                 type: int = TTransportException.UNKNOWN) -> None:
        TTransportException.__init__(self, type, message)
        self.host = host
        self.sent = sent

    def __str__(self) -> str:
        return str(self.message)

    def __reduce__(self):
        return (type(self), (self.message, self.host, self.sent, self.type))


class PoolTimeout(HtclusterError):
    """No pooled connection became free within the pool's ``timeout`` seconds.

    Raise the pool's ``size``/``max_overflow`` or its ``timeout``, or hold
    connections for less time.  A local condition: it never marks the host
    as failed.
    """

    def __init__(self, message: str, host: str | None = None) -> None:
        super().__init__(message)
        self.host = host


class NoHostAvailable(HtclusterError):
    """Every host a call could go to failed.

    :ivar errors: ``{host: exception}``, the last failure of each host tried,
        in the order they were tried.
    """

    def __init__(self, message: str, errors: Mapping[str, BaseException] | None = None) -> None:
        self.errors = dict(errors or {})
        detail = _describe(self.errors)
        super().__init__(f"{message} ({detail})" if detail else message)


class BroadcastError(HtclusterError):
    """A broadcast failed on some hosts.

    :ivar results: ``{host: result}`` of the hosts that answered.
    :ivar errors: ``{host: exception}`` of those that did not.
    """

    def __init__(self, message: str, results: Mapping[str, Any],
                 errors: Mapping[str, BaseException]) -> None:
        self.results = dict(results)
        self.errors = dict(errors)
        super().__init__(f"{message} ({_describe(self.errors)})")


def _describe(errors: Mapping[str, BaseException]) -> str:
    """``"host: Type: message; ..."``, the per-host detail of the composite errors."""
    return "; ".join(f"{host}: {type(exc).__name__}: {exc}" for host, exc in errors.items())


class ConfigError(HtclusterError, ValueError):
    """A configuration value is invalid; the message names the key and what is allowed."""
