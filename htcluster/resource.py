"""One connection to one ThriftBroker: :class:`Resource` and its :class:`ManagedNamespaces`.

A :class:`Resource` *is* the generated ``HqlService`` client, so every broker
method (protocol.md section 2) is a method of it, called positionally as on
upstream's ``hypertable.thriftclient.ThriftClient``.  The wire is the same as
upstream's (protocol.md 1.1): a TCP socket, a framed transport, the binary
protocol (its C-accelerated form when Thrift's extension is installed).

Every socket failure is translated in one place,
:class:`~htcluster.transport.BrokerTransport`, into
:class:`~htcluster.errors.BrokerUnavailable` whose ``sent`` tells whether the
request may have reached the broker.  The broker's own answers
(``ClientException``, ``TApplicationException``) pass through unchanged.

:func:`scan_cells` is the scanner loop shared by every layer that scans.
"""
from __future__ import annotations

import difflib
import logging
import os
from typing import Any, Iterator, Optional, Union

from thrift.protocol.TBinaryProtocol import TBinaryProtocolAccelerated

from ._thrift import HqlService
from ._thrift.ttypes import Cell, ScanSpec
from .errors import BrokerUnavailable, ConfigError
from .hosts import Host, HostLike
from .transport import BrokerTransport

__all__ = ["BROKER_METHODS", "DEFAULT_CONNECT_TIMEOUT", "DEFAULT_TIMEOUT", "ManagedNamespaces",
           "Resource", "scan_cells"]

log = logging.getLogger(__name__)

#: Seconds a call may wait for its answer: upstream ThriftClient's 300000 ms (protocol.md 1.4).
DEFAULT_TIMEOUT = 300.0
#: Seconds a connection attempt may take.
DEFAULT_CONNECT_TIMEOUT = 5.0
#: Every method the broker serves (HqlService and ClientService, protocol.md section 2).
BROKER_METHODS = frozenset(name for name in dir(HqlService.Iface) if not name.startswith("_"))


def seconds(name: str, value: object, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a float number of seconds, checking that it is positive.

    :param name: the parameter's name, for the message.
    :param value: the number of seconds given (int or float).
    :param allow_zero: accept 0 as well.
    :returns: ``value`` as a float.
    :raises ConfigError: ``value`` is not a number, or is negative (or zero).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number of seconds, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{name} must be {'>= 0' if allow_zero else '> 0'} seconds, got {value!r}")
    return float(value)


class Resource(HqlService.Client):
    """Open one connection to a ThriftBroker; every broker method is a method of it.

    :param host: ``'host[:port]'``, a ``(host, port)`` pair or a :class:`~htcluster.hosts.Host`;
        the port defaults to 15867 (protocol.md 1.2).
    :param timeout: seconds (float) a call may wait for its answer.
    :param connect_timeout: seconds (float) a connection attempt may take.
    :param open: connect now (otherwise call :meth:`open`).
    :raises ConfigError: the host or a timeout is malformed.
    :raises BrokerUnavailable: ``open`` is true and the broker cannot be reached.

    One thread at a time may use a Resource; threads share a :class:`~htcluster.pool.Pool`.

    Example::

        with Resource('localhost:15867') as r:
            result = r.hql_query(r.mns['test'], 'SELECT * FROM t')
    """

    def __init__(self, host: HostLike = "localhost", timeout: float = DEFAULT_TIMEOUT,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT, *, open: bool = True) -> None:
        self.host = Host.parse(host)
        self.timeout = seconds("timeout", timeout)
        self.connect_timeout = seconds("connect_timeout", connect_timeout)
        super().__init__(None)  # the protocol comes with each connection's transport (_attach)
        self._attach()
        self.mns = ManagedNamespaces(self)
        if open:
            self._transport.open()

    def _attach(self) -> BrokerTransport:
        """Give this client a new, unconnected transport and protocol: nothing of an earlier connection carries over."""
        self._transport = BrokerTransport(self.host, self.timeout, self.connect_timeout)
        self._iprot = self._oprot = TBinaryProtocolAccelerated(self._transport)
        return self._transport

    @property
    def is_open(self) -> bool:
        """True while the socket is connected (as far as is known without I/O)."""
        return self._transport.socket.handle is not None

    @property
    def is_active(self) -> bool:
        """Flask-Hypertable's name for :attr:`is_open`."""
        return self.is_open

    @property
    def failed(self) -> bool:
        """True after a transport failure; the connection must then not be reused."""
        return self._transport.failed

    @property
    def reusable(self) -> bool:
        """True when the connection is open, has not failed, has no call half done and
        belongs to this process (not to the parent of a fork)."""
        transport = self._transport
        return self.is_open and not transport.failed and not transport.pending and transport.pid == os.getpid()

    def is_stale(self) -> bool:
        """Check, without a round trip, whether this connection can no longer be used.

        A non-blocking peek at the socket (Thrift's ``TSocket.isOpen``) sees
        the end-of-file or reset left by a broker that closed the connection,
        for example because it restarted; the socket is then closed.

        :returns: True when the connection is closed, failed, out of step, or
            closed by the broker.
        """
        return not self.reusable or not self._transport.socket.isOpen()

    def ping(self, timeout: Optional[float] = None) -> bool:
        """Check with one ``status()`` round trip that the broker still answers on this connection.

        :param timeout: seconds (float) the answer may take; ``None``: :attr:`connect_timeout`,
            so that a silently dead connection is found out quickly.
        :returns: True when the broker answered; False when the connection
            failed (it is then closed, :attr:`failed` is True).
        :raises ConfigError: ``timeout`` is not a positive number.
        """
        limit = self.connect_timeout if timeout is None else seconds("timeout", timeout)
        sock = self._transport.socket
        sock.setTimeout(limit * 1000)  # TSocket takes milliseconds
        try:
            self.status()
        except BrokerUnavailable as exc:
            log.debug("ping of %s failed: %s", self.host, exc)
            return False
        finally:
            sock.setTimeout(self.timeout * 1000)
        return True

    def open(self) -> "Resource":
        """Connect, unless already connected; a failed or interrupted connection is replaced.

        :returns: this resource.
        :raises BrokerUnavailable: the broker cannot be reached (``sent=False``).
        """
        if self.reusable:
            return self
        self.close()
        self._attach().open()
        return self

    def close(self) -> None:
        """Close the namespaces opened through :attr:`mns` (best effort), then the socket.

        Idempotent, and never raises: a broken connection is just dropped.
        """
        if self.reusable:
            self.mns.close_all()
        self.mns.forget()
        self._transport.close()

    def call(self, method: str, *args: Any, namespace: Optional[str] = None) -> Any:
        """Call broker ``method`` with ``args``, the id of ``namespace`` first when one is named.

        :param method: a broker method name (protocol.md section 2), e.g. ``'get_cell'``.
        :param namespace: a namespace name, opened once on this connection via :attr:`mns`.
        :returns: the broker's answer.
        :raises AttributeError: ``method`` is not a broker method.
        :raises BrokerUnavailable: the connection failed.
        :raises ClientException: the broker refused the call (its ``code`` says why).
        """
        if method not in BROKER_METHODS:
            close = difflib.get_close_matches(str(method), BROKER_METHODS, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else " (see protocol.md section 2)"
            raise AttributeError(f"{method!r} is not a ThriftBroker method{hint}")
        fn = getattr(self, method)
        if namespace is None:
            return fn(*args)
        return fn(self.mns[namespace], *args)

    def __enter__(self) -> "Resource":
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "failed" if self.failed else "open" if self.is_open else "closed"
        names = f", namespaces {sorted(self.mns)}" if len(self.mns) else ""
        return f"<Resource {self.host} {state}{names}>"


class ManagedNamespaces:
    """The namespaces of one connection, each opened on first use and then reused.

    ``r.mns['test']`` returns the id of namespace ``test`` on connection ``r``
    (opening it with ``namespace_open`` the first time); ``del r.mns['test']``
    or ``r.mns.close_namespace('test')`` closes it and forgets the id.  Ids are
    valid on their own connection only (protocol.md: ids are per connection).
    """

    def __init__(self, resource: Resource) -> None:
        self._resource = resource
        self._ids: dict[str, int] = {}

    def __getitem__(self, name: str) -> int:
        """Return the id of namespace ``name``, opening it if this connection has not yet.

        :raises TypeError: ``name`` is not a str.
        :raises ClientException: the namespace does not exist (code 40, protocol.md section 4).
        :raises BrokerUnavailable: the connection failed.
        """
        try:
            return self._ids[name]
        except KeyError:
            pass
        if not isinstance(name, str):
            raise TypeError(f"a namespace name must be a str, got {name!r}")
        ns = self._resource.namespace_open(name)
        self._ids[name] = ns
        return ns

    def close_namespace(self, name: str) -> None:
        """Close namespace ``name`` on the broker and forget its id; do nothing if it is not open.

        Ignoring a name that is not open matches Flask-Hypertable's ``mns``;
        ``del r.mns[name]`` is the strict form.

        :param name: the namespace name.
        :raises ClientException: the broker refused (e.g. the id is unknown to it).
        :raises BrokerUnavailable: the connection failed.
        """
        ns = self._ids.pop(name, None)
        if ns is not None:
            self._resource.namespace_close(ns)

    def __delitem__(self, name: str) -> None:
        """Close namespace ``name`` and forget its id.

        :raises KeyError: ``name`` is not open on this connection.
        """
        if name not in self._ids:
            raise KeyError(f"namespace {name!r} is not open on this connection")
        self.close_namespace(name)

    #: Flask-Hypertable's ``ManagedThriftClient.mns`` names.
    open_namespace = __getitem__

    def close_all(self) -> None:
        """Close every open namespace, best effort: failures are logged, not raised."""
        ids, self._ids = self._ids, {}
        for name, ns in ids.items():
            try:
                self._resource.namespace_close(ns)
            except Exception as exc:  # best effort: the connection is being closed anyway
                log.debug("closing namespace %r on %s: %s", name, self._resource.host, exc)
                if not self._resource.reusable:
                    break

    close = close_all

    def forget(self) -> None:
        """Drop every id without telling the broker (its connection is gone)."""
        self._ids.clear()

    def __contains__(self, name: object) -> bool:
        return name in self._ids

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._ids))

    def __len__(self) -> int:
        return len(self._ids)

    def __repr__(self) -> str:
        return f"<ManagedNamespaces {self._ids!r}>"


def scan_cells(resource: Resource, ns: int, table: str, scan_spec: Optional[ScanSpec] = None, *,
               batch: bool = False) -> Iterator[Union[Cell, list[Cell]]]:
    """Scan ``table`` on one connection, yielding cells as the broker sends them batch by batch.

    Opens a scanner (``scanner_open``), calls ``scanner_get_cells`` until it
    returns an empty list (protocol.md 2.12), and always closes the scanner,
    also when the consumer stops early.  A failure while closing is raised
    only when the scan itself had completed.

    :param resource: the open connection the scanner lives on.
    :param ns: a namespace id of that connection (e.g. ``resource.mns['test']``).
    :param table: the table name.
    :param scan_spec: what to read; ``None`` reads everything.
    :param batch: yield each batch as a list instead of the cells one by one.
    :returns: a generator of :class:`~htcluster.types.Cell` (or of lists of them).
    :raises ClientException: e.g. the table does not exist.
    :raises BrokerUnavailable: the connection failed.
    """
    scanner = resource.scanner_open(ns, table, scan_spec if scan_spec is not None else ScanSpec())
    finished = False
    try:
        while True:
            cells = resource.scanner_get_cells(scanner)
            if not cells:
                break
            if batch:
                yield cells
            else:
                yield from cells
        finished = True
    finally:
        if resource.reusable:
            try:
                resource.scanner_close(scanner)
            except Exception as exc:
                if finished:
                    raise
                log.debug("closing scanner %d on %s: %s", scanner, resource.host, exc)
