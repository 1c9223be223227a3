"""The htcluster exception hierarchy.

Everything htcluster raises on its own account derives from
:class:`HtclusterError`.  The broker's own answers pass through as they came:
:class:`ClientException` (with its numeric ``code``, :mod:`htcluster.codes`)
and Thrift's ``TApplicationException``.  ``str()`` of a ``ClientException``
names the code, ``NAMESPACE_DOES_NOT_EXIST (40): HYPERTABLE namespace does not
exist - logs``, and tracebacks show it as ``htcluster.errors.ClientException``
(the class is generated from the IDL; this module configures its ``__str__``
and ``__module__`` once, at import).

:class:`ConfigWarning` (a ``UserWarning``, not an error) flags a setting that is
accepted but probably not meant: an unknown ``HYPERTABLE_*`` key of a Flask app,
a millisecond value that looks like seconds.

==============================  ==================================================
class                           raised when
==============================  ==================================================
:class:`BrokerUnavailable`      a socket or framing failure talking to one broker
                                (also a ``TTransportException``)
:class:`TLSError`               a TLS handshake failed: certificate not trusted,
                                expired or for another name, client certificate
                                refused, TLS on one side only; a
                                ``BrokerUnavailable`` (``sent=False``) that
                                never marks the host down
:class:`BrokerProtocolError`    a reply that is not the answer of the call (stale,
                                extra, undecodable, oversized); a
                                ``BrokerUnavailable``
:class:`WriteOutcomeUnknown`    a write failed after it was sent and cannot be
                                repeated safely: it may or may not be applied
:class:`InvalidRequest`         the arguments of a call cannot be encoded (also a
                                ``ValueError``); nothing was sent
:class:`DeadlineExceeded`       a call ran out of its ``timeout`` budget (also a
                                ``TimeoutError``)
:class:`PoolTimeout`            no connection of a pool became free in time
:class:`ClientResourceError`    this process ran out of a local resource (file
                                descriptors, socket buffers, memory); also an
                                ``OSError``; no host is blamed
:class:`NoHostAvailable`        every host a call could use failed
:class:`BroadcastError`         some hosts of a broadcast failed
:class:`FlushError`             a mutator's flush left cells unacknowledged
                                (they are in the error, stamped, safe to resend)
:class:`MutatorFull`            a mutator's buffer is full while a flush is in
                                flight, and it was made with ``block=False``
:class:`ConfigError`            a setting is invalid (also a ``ValueError``)
:class:`WrongEventLoop`         an ``htcluster.aio`` object was used from another
                                event loop than the one it is bound to (also a
                                ``RuntimeError``)
==============================  ==================================================
"""
from __future__ import annotations

from typing import Any, Mapping

from thrift.transport.TTransport import TTransportException

from . import codes
from ._thrift.ttypes import ClientException

__all__ = [
    "BroadcastError",
    "BrokerProtocolError",
    "BrokerUnavailable",
    "ClientException",
    "ClientResourceError",
    "ConfigError",
    "ConfigWarning",
    "DeadlineExceeded",
    "FlushError",
    "HtclusterError",
    "InvalidRequest",
    "MutatorFull",
    "NoHostAvailable",
    "PoolTimeout",
    "TLSError",
    "WriteOutcomeUnknown",
    "WrongEventLoop",
]


def _client_exception_str(self: ClientException) -> str:
    """``'NAME (code): message'`` (:func:`htcluster.codes.describe`)."""
    return codes.describe(self.code, self.message)


def _client_exception_reduce(self: ClientException) -> tuple[Any, ...]:
    """Pickle by the constructor (the generated ``__setattr__`` refuses the default way back)."""
    return (type(self), (self.code, self.message))


# The generated class is the broker's answer and stays as generated (its fields, its repr, its wire
# format); only how it prints, pickles and where tracebacks say it lives are set here: a public path,
# the one users import it from, and the symbolic name of the code instead of a bare number.
ClientException.__str__ = _client_exception_str  # type: ignore[method-assign]
ClientException.__reduce__ = _client_exception_reduce  # type: ignore[method-assign,assignment]
ClientException.__module__ = __name__


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

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.host, self.sent, self.type))


class BrokerProtocolError(BrokerUnavailable):
    """The broker's reply is not the answer of the call that was sent.

    A reply for another call (a stale or extra reply: its sequence id or
    method name differs), a frame that does not decode, a frame holding more
    than one reply, or a frame larger than ``max_frame_size``.  The connection
    is out of step and is closed; the host counts one failure, and an
    idempotent call fails over like after any other transport failure
    (``sent`` is always True: the request reached the broker).
    """

    def __init__(self, message: str, host: str | None = None, sent: bool = True,
                 type: int = TTransportException.UNKNOWN) -> None:
        super().__init__(message, host, True, type)


class TLSError(BrokerUnavailable):
    """A TLS connection to a ThriftBroker could not be set up: a configuration mistake, not a host failure.

    Raised within ``connect_timeout`` (the handshake is part of connecting);
    the request never reached the broker (``sent`` is False), so another host
    may be tried, but the host is never marked down for it: the same
    configuration fails the same way whatever the broker's health.
    :attr:`reason` says which mistake it is, the message what to do:

    ======================  ===========================================================
    ``untrusted``           the broker's certificate is not signed by a CA the client's
                            ``ssl_context`` trusts (wrong or missing CA file)
    ``expired``             the broker's certificate has expired (or is not valid yet)
    ``hostname``            the certificate does not name the host connected to
    ``client-certificate``  the broker refused the client's certificate, or wanted one
    ``not-tls``             the broker does not speak TLS (a plaintext port): it closed
                            the connection or answered the handshake with something else
    ``tls-required``        a plaintext client called a broker that requires TLS
    ``version``             no TLS version or cipher both sides accept
    ``handshake``           any other handshake failure
    ======================  ===========================================================

    :param message: what went wrong and what to do, naming the host.
    :param host: the ``host:port`` concerned, or ``None``.
    :param reason: one of the names above.
    """

    REASONS = ("untrusted", "expired", "hostname", "client-certificate", "not-tls", "tls-required", "version",
               "handshake")

    def __init__(self, message: str, host: str | None = None, sent: bool = False,
                 type: int = TTransportException.NOT_OPEN, reason: str = "handshake") -> None:
        super().__init__(message, host, sent, type)
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.host, self.sent, self.type, self.reason))


class WriteOutcomeUnknown(BrokerUnavailable):
    """A write failed after it was sent, and repeating it elsewhere could apply it twice.

    The write may or may not have been applied: read back before repeating
    it.  Writes through :class:`~htcluster._routing.replicas.Replicas` carry client
    timestamps so that this is rare: only a write that cannot be stamped
    (e.g. HQL other than INSERT/DELETE, a schema change) can end this way.
    ``__cause__`` is the transport failure.
    """


class InvalidRequest(HtclusterError, ValueError):
    """The arguments of a call cannot be encoded for the wire; nothing was sent.

    A caller's error, never the host's: the connection stays usable, the host
    is not marked down, nothing fails over.  The message names the method and
    what was wrong (e.g. an int where the protocol has a string, a number out
    of the i32 range, a lone surrogate, a request larger than ``max_frame_size``).
    """

    def __init__(self, message: str, method: str | None = None) -> None:
        super().__init__(message)
        self.method = method


class DeadlineExceeded(HtclusterError, TimeoutError):
    """A call ran out of its ``timeout`` budget (seconds) before it could finish.

    The budget covers the wait for a pooled connection, every attempt and
    every failover; when it runs out the call stops where it is.  A
    connection cut mid-reply is closed, but the host is not counted as
    failed: the deadline is the caller's, not the broker's fault.

    :ivar errors: ``{host: exception}`` of the attempts made before, in order.
    :ivar sent: True when the last attempt may have reached a broker.
    """

    def __init__(self, message: str, errors: Mapping[str, BaseException] | None = None,
                 sent: bool = True) -> None:
        self.errors = dict(errors or {})
        self.sent = sent
        detail = _describe(self.errors)
        super().__init__(f"{message} (tried {detail})" if detail else message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.args[0], self.errors, self.sent))


class PoolTimeout(HtclusterError):
    """No pooled connection became free within the pool's ``timeout`` seconds.

    Raise the pool's ``size``/``max_overflow`` or its ``timeout``, or hold
    connections for less time.  A local condition: it never marks the host
    as failed.
    """

    def __init__(self, message: str, host: str | None = None) -> None:
        super().__init__(message)
        self.host = host


class ClientResourceError(HtclusterError, OSError):
    """This process ran out of a local resource while calling a broker; the host is not to blame.

    Raised for ``EMFILE``/``ENFILE`` (no file descriptor left for a socket),
    ``ENOBUFS``/``ENOMEM`` (no kernel buffer or memory) and ``MemoryError``.
    The host is never marked down for it and the call is not failed over:
    another host would fail the same way.  Raise the limit (``ulimit -n``,
    ``resource.setrlimit(RLIMIT_NOFILE, ...)``), or use fewer connections
    (smaller pools, fewer hosts per broadcast).

    :param message: which limit was hit, and what to do.
    :param errno: the ``errno`` value of the underlying ``OSError`` (``None`` for ``MemoryError``).
    :param host: the ``host:port`` being called when it happened, or ``None``.
    """

    def __init__(self, message: str, errno: int | None = None, host: str | None = None) -> None:
        OSError.__init__(self, errno, message) if errno is not None else OSError.__init__(self, message)
        self.host = host

    def __str__(self) -> str:
        return str(self.args[-1])

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.args[-1], self.errno, self.host))


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


class FlushError(HtclusterError):
    """A mutator's flush could not get every cell acknowledged; nothing is lost silently.

    The cells are stamped (each carries a timestamp), so sending them again
    (``mutator.set_cells(error.cells)``, or any ``set_cells``) stores the
    same versions: a cell the broker did apply is not duplicated.

    :ivar cells: the :class:`~htcluster.types.Cell` s not acknowledged, in the
        order they were buffered (per shard for ``Shards.mutator``).
    :ivar errors: ``{shard key or host: exception}``: why each batch failed
        (``None`` is the key of a ``Replicas`` mutator's single batch).
    """

    def __init__(self, message: str, cells: list[Any], errors: Mapping[Any, BaseException] | None = None) -> None:
        self.cells = list(cells)
        self.errors = dict(errors or {})
        self.message = message
        detail = _describe(self.errors)
        super().__init__(f"{message} ({detail})" if detail else message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.cells, self.errors))


class MutatorFull(HtclusterError):
    """A mutator made with ``block=False`` is full while a flush is in flight (the brokers are slow).

    :ivar cells: the cells of the call that were not taken (the earlier ones were buffered).
    """

    def __init__(self, message: str, cells: list[Any]) -> None:
        self.cells = list(cells)
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.args[0], self.cells))


def _describe(errors: Mapping[str, BaseException]) -> str:
    """``"host: Type: message; ..."``, the per-host detail of the composite errors."""
    return "; ".join(f"{host}: {type(exc).__name__}: {exc}" for host, exc in errors.items())


class ConfigError(HtclusterError, ValueError):
    """A configuration value is invalid; the message names the key and what is allowed."""


class WrongEventLoop(HtclusterError, RuntimeError):
    """An ``htcluster.aio`` object was used from an event loop other than the one it first ran on.

    Pools, their connections and their waiters belong to one loop; the message
    says which object and what to do (make one object per loop, e.g. in an
    application's startup or lifespan hook, not at import time in code run by
    several loops).
    """


class ConfigWarning(UserWarning):
    """A setting is accepted but is probably not what was meant; the message says what to write instead.

    Issued with :func:`warnings.warn` (e.g. a misspelled ``HYPERTABLE_HOST_LIST``,
    a ``HYPERTABLE_TIMEOUT_MSECS`` of 5).  Make it an error in tests with
    ``-W error::htcluster.errors.ConfigWarning`` or ``warnings.simplefilter('error', ConfigWarning)``.
    """
