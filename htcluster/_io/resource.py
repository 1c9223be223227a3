"""One connection to one ThriftBroker: :class:`Resource` and its :class:`ManagedNamespaces`.

A :class:`Resource` *is* the generated ``HqlService`` client, so every broker
method (:ref:`broker-methods`) is a method of it, called positionally as on
upstream's ``hypertable.thriftclient.ThriftClient``.  The wire is the same as
upstream's (:ref:`calling-methods`): a TCP socket, a framed transport, the binary
protocol (its C-accelerated form when Thrift's extension is installed).

Each call goes the same way, through :class:`~htcluster._io.connection.Connection`:

1. the request is encoded completely into memory: an argument that cannot
   be encoded raises :class:`~htcluster.errors.InvalidRequest` and nothing
   is sent (the connection stays usable);
2. its frame is sent, and the whole reply frame read, within one budget
   (``timeout`` seconds, or the caller's deadline when that is earlier);
3. the reply must be the answer of this call (method name, sequence id,
   message type, exactly one reply in the frame), else
   :class:`~htcluster.errors.BrokerProtocolError`.

Any failure between the first byte sent and the last byte decoded closes the
connection (it is out of step); the broker's own answers
(``ClientException``, ``TApplicationException``) pass through unchanged.

:func:`scan_cells` is the scanner loop shared by every layer that scans.
"""
from __future__ import annotations

import difflib
import logging
import ssl
import time
from typing import Any, Callable, Iterator, Literal, Optional, Union, overload

from .. import events as ev
from .._thrift import HqlService
from .._thrift.ttypes import Cell, ScanSpec
from .._validate import byte_size, seconds
from .._wire import ANSWERS, BROKER_METHODS, DEFAULT_MAX_FRAME_SIZE, HARD_MAX_FRAME_SIZE
from ..errors import BrokerUnavailable, ConfigError, DeadlineExceeded
from ..hosts import Host, HostLike
from .connection import Connection
from .keepalive import KeepAlive, KeepAliveLike
from .tls import check_context

__all__ = ["BROKER_METHODS", "DEFAULT_CONNECT_TIMEOUT", "DEFAULT_SOCKET_TIMEOUT", "ManagedNamespaces",
           "Resource", "scan_cells"]

log = logging.getLogger(__name__)

#: Seconds one exchange may take on its connection, request and whole answer.  Upstream's
#: ThriftClient waits 300 s; htcluster takes 30 s: a broker that has not answered a call in 30 s
#: is better failed over (reads) or reported (writes) than waited for, and web applications want
#: their calls bounded by seconds.  Long answers are read with scanners, one bounded round trip
#: at a time; raise it for long HQL statements (``LOAD DATA``) or give those a ``timeout=``.
DEFAULT_SOCKET_TIMEOUT = 30.0
#: Seconds a connection attempt may take.
DEFAULT_CONNECT_TIMEOUT = 5.0


def _broker_method(name: str) -> Callable[..., Any]:
    """Build the method ``name`` of :class:`Resource`: encode, one checked exchange, decode."""

    def method(self: "Resource", *args: Any, **kwargs: Any) -> Any:
        if self.listeners is not None:  # a connection checked out with pool.connection(): report the call
            return _reported(self, name, args, kwargs)
        return self.exchange(name, args, kwargs, self.deadline)

    generated = getattr(HqlService.Client, name)
    method.__name__ = method.__qualname__ = name
    method.__doc__ = generated.__doc__
    return method


def _reported(resource: "Resource", name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """One call of a connection handed out by a pool, reported to the pool's listeners as attempt 1."""
    listeners = resource.listeners
    if not listeners:
        return resource.exchange(name, args, kwargs, resource.deadline)
    host = resource.connection.address
    namespace, call_args = resource.mns.named(args)
    listeners.emit(ev.CallStarted(host, name, namespace, 1, call_args))
    start = time.monotonic()
    try:
        result = resource.exchange(name, args, kwargs, resource.deadline)
    except BaseException as exc:
        listeners.emit(ev.CallFailed(host, name, namespace, 1, time.monotonic() - start, exc, call_args))
        raise
    listeners.emit(ev.CallSucceeded(host, name, namespace, 1, time.monotonic() - start, call_args))
    return result


class _Methods(type):
    """Give every broker method of the generated client the checked call path."""

    def __new__(mcs, cls_name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> type:
        if not any(isinstance(base, _Methods) for base in bases):  # subclasses inherit them
            for name in BROKER_METHODS:
                namespace.setdefault(name, _broker_method(name))
        return super().__new__(mcs, cls_name, bases, namespace)


class Resource(HqlService.Client, metaclass=_Methods):
    """Open one connection to a ThriftBroker; every broker method is a method of it.

    :param host: ``'host[:port]'``, a ``(host, port)`` pair or a :class:`~htcluster.hosts.Host`;
        the port defaults to 15867 (:ref:`calling-methods`).
    :param port: the port, in upstream ``ThriftClient(host, port)`` order (int);
        ``None``: the one in ``host`` or 15867.
    :param socket_timeout: seconds (float) one call may take on the connection: sending
        the request and receiving its whole answer (default 30 s).
    :param connect_timeout: seconds (float) a connection attempt may take.
    :param max_frame_size: largest request or answer frame in bytes (default
        64 MiB, the stand-in broker's default); also the limit on one string or
        container of an answer, so that anything that fits a frame can be read.
    :param open: connect now (otherwise call :meth:`open`).
    :param ssl_context: a client ``ssl.SSLContext`` (:func:`htcluster.tls_context`,
        ``ssl.create_default_context(cafile=...)``) to speak TLS, the server's
        certificate checked against the host's name unless the context says
        otherwise (``check_hostname = False``); the handshake counts in
        ``connect_timeout``.  ``None`` (the default): plaintext.
    :param keepalive: TCP keepalive on the socket (:mod:`htcluster._io.keepalive`): ``True``
        (the default: first probe after 60 s idle, then every 10 s, dead after 3 unanswered),
        ``False`` (off), seconds of idleness before the first probe, or a mapping of
        ``idle``, ``interval`` (seconds) and ``count``.
    :raises ConfigError: the host, port, a timeout, the frame size or ``ssl_context`` is malformed
        (e.g. ``Resource('h', 2.5)``: the second argument is the port, pass ``socket_timeout=``).
    :raises BrokerUnavailable: ``open`` is true and the broker cannot be reached
        (:class:`~htcluster.errors.TLSError`: the TLS handshake failed).

    One thread at a time may use a Resource; threads share a :class:`~htcluster._pool.pool.Pool`.

    Example::

        with Resource('localhost:15867') as r:
            result = r.hql_query(r.mns['test'], 'SELECT * FROM t')
    """

    def __init__(self, host: HostLike = "localhost", port: Optional[int] = None, *,
                 socket_timeout: float = DEFAULT_SOCKET_TIMEOUT, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
                 max_frame_size: int = DEFAULT_MAX_FRAME_SIZE, open: bool = True,
                 ssl_context: Optional[ssl.SSLContext] = None, keepalive: KeepAliveLike = True) -> None:
        if port is not None:
            if isinstance(port, bool) or not isinstance(port, int):
                raise ConfigError(f"the second argument of Resource is the port (upstream's ThriftClient(host, port) "
                                  f"order), got {port!r}; pass a timeout as socket_timeout=<seconds>")
            named = Host.parse(host, default_port=port)
            if named.port != port:
                raise ConfigError(f"{host!r} names port {named.port} but port={port} was given; give the port once")
            host = named
        self.host = Host.parse(host)
        self.socket_timeout = seconds("socket_timeout", socket_timeout)
        self.connect_timeout = seconds("connect_timeout", connect_timeout)
        self.max_frame_size = byte_size("max_frame_size", max_frame_size, minimum=1024, maximum=HARD_MAX_FRAME_SIZE)
        #: The client ``ssl.SSLContext`` of its connections, or ``None`` (plaintext).
        self.ssl_context = check_context(ssl_context)
        #: The TCP keepalive timings of its connections (:class:`~htcluster._io.keepalive.KeepAlive`), or ``None``.
        self.keepalive = KeepAlive.coerce(keepalive)
        #: The ``time.monotonic()`` deadline of the calls made now (set by :meth:`call`), or ``None``.
        self.deadline: Optional[float] = None
        #: The :class:`~htcluster.events.Listeners` told of each call while a pool has lent this
        #: connection out through ``connection()``; ``None`` otherwise (a pool's ``call`` reports itself).
        self.listeners: Any = None
        super().__init__(None)  # type: ignore[no-untyped-call]  # the protocols come with each connection
        self.connection = self._attach()
        self.mns = ManagedNamespaces(self)
        if open:
            self.connection.open()

    def _attach(self) -> Connection:
        """Give this client a new, unconnected connection: nothing of an earlier one carries over."""
        conn = Connection(self.host, self.socket_timeout, self.connect_timeout, self.max_frame_size,
                          self.ssl_context, self.keepalive)
        #: The :class:`~htcluster._io.connection.Connection` of this client (replaced when it reopens).
        self.connection = conn
        # the generated send_*/recv_* of HqlService.Client, for upstream code that calls them directly
        self._iprot, self._oprot = conn.codec.iprot, conn.codec.oprot
        return conn

    def exchange(self, method: str, args: tuple[Any, ...], kwargs: Optional[dict[str, Any]] = None,
                 deadline: Optional[float] = None) -> Any:
        """Make one call on this connection: encode, send, receive, decode and check its reply.

        :param method: a broker method name.
        :param args: its arguments in IDL order (namespace id first where it takes one).
        :param kwargs: keyword arguments by IDL name, if any.
        :param deadline: ``time.monotonic()`` time by which it must end (``None``: ``socket_timeout`` from now).
        :returns: the broker's answer.
        :raises InvalidRequest: an argument cannot be encoded (nothing sent; the connection stays usable).
        :raises BrokerUnavailable: the connection failed (closed); ``BrokerProtocolError``: the reply
            was not this call's answer (closed).
        :raises DeadlineExceeded: ``deadline`` passed (closed).
        :raises ClientException: the broker's error answer (the connection stays in step).
        """
        conn = self.connection
        conn.check_ready()
        codec = conn.codec
        frame = codec.encode(method, args, kwargs)
        body = conn.exchange(frame, deadline)
        try:
            return codec.decode(body)
        except ANSWERS:
            raise
        except BaseException:
            conn.taint()
            raise

    @property
    def is_open(self) -> bool:
        """True while the socket is connected (as far as is known without I/O)."""
        return self.connection.is_open

    @property
    def is_active(self) -> bool:
        """Flask-Hypertable's name for :attr:`is_open`."""
        return self.is_open

    @property
    def failed(self) -> bool:
        """True after a transport failure; the connection must then not be reused."""
        return self.connection.failed

    @property
    def reusable(self) -> bool:
        """True when the connection is open, has not failed, has no call half done and
        belongs to this process (not to the parent of a fork)."""
        return self.connection.reusable

    def is_stale(self) -> bool:
        """Check, without a round trip, whether this connection can no longer be used.

        One non-blocking ``poll`` of the socket sees the end-of-file or reset
        left by a broker that closed the connection (for example because it
        restarted), or bytes nobody asked for; the socket is then closed.

        :returns: True when the connection is closed, failed, out of step, or
            closed by the broker.
        """
        return self.connection.is_stale()

    def ping(self, timeout: Optional[float] = None) -> bool:
        """Check with one ``status()`` round trip that the broker still answers on this connection.

        :param timeout: seconds (float) the answer may take; ``None``: :attr:`connect_timeout`,
            so that a silently dead connection is found out quickly.
        :returns: True when the broker answered; False when the connection
            failed (it is then closed).
        :raises ConfigError: ``timeout`` is not a positive number.
        """
        limit = self.connect_timeout if timeout is None else seconds("timeout", timeout)
        try:
            self.call("status", deadline=time.monotonic() + limit)
        except (BrokerUnavailable, DeadlineExceeded) as exc:
            log.debug("ping of %s failed: %s", self.host, exc)
            self.connection.taint()
            return False
        return True

    def open(self, deadline: Optional[float] = None) -> "Resource":
        """Connect, unless already connected; a failed or interrupted connection is replaced.

        :param deadline: a ``time.monotonic()`` time by which the connection must be made.
        :returns: this resource.
        :raises BrokerUnavailable: the broker cannot be reached (``sent=False``).
        :raises DeadlineExceeded: ``deadline`` passed first.
        """
        if self.reusable:
            return self
        self.close()
        self._attach().open(deadline)
        return self

    def close(self) -> None:
        """Close the namespaces opened through :attr:`mns` (best effort), then the socket.

        Idempotent, and never raises: a broken connection is just dropped.
        """
        if self.reusable:
            self.mns.close_all()
        self.mns.forget()
        self.connection.close()

    def call(self, method: str, *args: Any, namespace: Optional[str] = None,
             deadline: Optional[float] = None) -> Any:
        """Call broker ``method`` with ``args``, the id of ``namespace`` first when one is named.

        :param method: a broker method name (:ref:`broker-methods`), e.g. ``'get_cell'``.
        :param namespace: a namespace name, opened once on this connection via :attr:`mns`.
        :param deadline: a ``time.monotonic()`` time by which the call (and the
            namespace opening) must end, when earlier than ``socket_timeout`` from now.
        :returns: the broker's answer.
        :raises AttributeError: ``method`` is not a broker method.
        :raises InvalidRequest: an argument cannot be encoded (nothing was sent).
        :raises BrokerUnavailable: the connection failed (``BrokerProtocolError``:
            the reply was not this call's answer).
        :raises DeadlineExceeded: ``deadline`` passed (the connection is closed).
        :raises ClientException: the broker refused the call (its ``code`` says why).
        """
        if method not in BROKER_METHODS:
            close = difflib.get_close_matches(str(method), BROKER_METHODS, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else " (see :ref:`broker-methods`)"
            raise AttributeError(f"{method!r} is not a ThriftBroker method{hint}")
        fn = getattr(self, method)
        if deadline is None:
            return fn(*args) if namespace is None else fn(self.mns[namespace], *args)
        self.deadline = deadline
        try:
            return fn(*args) if namespace is None else fn(self.mns[namespace], *args)
        finally:
            self.deadline = None

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
    valid on their own connection only (ids are per connection).
    """

    def __init__(self, resource: Resource) -> None:
        self._resource = resource
        self._ids: dict[str, int] = {}

    def __getitem__(self, name: str) -> int:
        """Return the id of namespace ``name``, opening it if this connection has not yet.

        :raises TypeError: ``name`` is not a str.
        :raises ClientException: the namespace does not exist (code 40, :ref:`error-codes`).
        :raises BrokerUnavailable: the connection failed.
        """
        try:
            return self._ids[name]
        except KeyError:
            pass
        if not isinstance(name, str):
            raise TypeError(f"a namespace name must be a str, got {name!r}")
        ns: int = self._resource.namespace_open(name)
        self._ids[name] = ns
        return ns

    def id_of(self, name: str, deadline: Optional[float] = None) -> int:
        """Return the id of namespace ``name`` on this connection, opening it (before ``deadline``) if needed.

        :raises ClientException: the namespace does not exist.
        :raises BrokerUnavailable: the connection failed.
        """
        try:
            return self._ids[name]
        except KeyError:
            pass
        resource = self._resource
        saved, resource.deadline = resource.deadline, deadline
        try:
            return self[name]
        finally:
            resource.deadline = saved

    def named(self, args: tuple[Any, ...]) -> tuple[Optional[str], tuple[Any, ...]]:
        """Split ``args`` into the name of the namespace whose id leads them, and the rest.

        :returns: ``(name, args after the id)``, or ``(None, args)`` when they
            do not start with the id of a namespace opened through this map.
        """
        if args and isinstance(args[0], int) and not isinstance(args[0], bool):
            for name, ns in self._ids.items():
                if ns == args[0]:
                    return name, args[1:]
        return None, args

    def remember(self, name: str, ns: int) -> None:
        """Record ``ns`` as the id of namespace ``name`` on this connection (opened by the caller)."""
        self._ids[name] = ns

    def close_namespace(self, name: str) -> None:
        """Close namespace ``name`` on the broker and forget its id; do nothing if it is not open.

        Ignoring a name that is not open matches Flask-Hypertable's ``mns``;
        ``del r.mns[name]`` does the same.

        :param name: the namespace name.
        :raises ClientException: the broker refused (e.g. the id is unknown to it).
        :raises BrokerUnavailable: the connection failed.
        """
        ns = self._ids.pop(name, None)
        if ns is not None:
            self._resource.namespace_close(ns)

    def __delitem__(self, name: str) -> None:
        """Close namespace ``name`` and forget its id; a name not open is ignored.

        Ignoring it is what Flask-Hypertable's ``mns`` does (``del mns[name]``
        of a name never opened is a no-op there), so code written for it runs.
        """
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


@overload
def scan_cells(resource: Resource, ns: int, table: str, scan_spec: Optional[ScanSpec] = None, *,
               batch: Literal[False] = False, timeout: Optional[float] = None) -> Iterator[Cell]: ...


@overload
def scan_cells(resource: Resource, ns: int, table: str, scan_spec: Optional[ScanSpec] = None, *,
               batch: Literal[True], timeout: Optional[float] = None) -> Iterator[list[Cell]]: ...


@overload
def scan_cells(resource: Resource, ns: int, table: str, scan_spec: Optional[ScanSpec] = None, *,
               batch: bool = False, timeout: Optional[float] = None) -> Iterator[Union[Cell, list[Cell]]]: ...


def scan_cells(resource: Resource, ns: int, table: str, scan_spec: Optional[ScanSpec] = None, *,
               batch: bool = False, timeout: Optional[float] = None) -> Iterator[Union[Cell, list[Cell]]]:
    """Scan ``table`` on one connection, yielding cells as the broker sends them batch by batch.

    Opens a scanner (``scanner_open``), calls ``scanner_get_cells`` until it
    returns an empty list (:ref:`broker-methods`), and always closes the scanner,
    also when the consumer stops early.  A failure while closing is raised
    only when the scan itself had completed.

    :param resource: the open connection the scanner lives on.
    :param ns: a namespace id of that connection (e.g. ``resource.mns['test']``).
    :param table: the table name.
    :param scan_spec: what to read; ``None`` reads everything.
    :param batch: yield each batch as a list instead of the cells one by one.
    :param timeout: seconds each round trip (opening, each batch) may take;
        ``None``: the connection's ``socket_timeout``.
    :returns: a generator of :class:`~htcluster.types.Cell` (or of lists of them).
    :raises ClientException: e.g. the table does not exist.
    :raises BrokerUnavailable: the connection failed.
    :raises DeadlineExceeded: a round trip took longer than ``timeout``.
    """
    limit = None if timeout is None else seconds("timeout", timeout)

    def deadline() -> Optional[float]:
        return None if limit is None else time.monotonic() + limit

    spec = scan_spec if scan_spec is not None else ScanSpec()
    scanner = resource.call("scanner_open", ns, table, spec, deadline=deadline())
    finished = False
    try:
        while True:
            cells = resource.call("scanner_get_cells", scanner, deadline=deadline())
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
