"""The stand-in ThriftBroker's server: listening socket, store, the connection loop, signals.

Use :class:`BrokerServer` in-process (``start()`` returns once listening;
``port=0`` picks a free port), :func:`serve` to block until SIGTERM/SIGINT,
or ``htcluster broker`` / ``python -m htcluster.broker`` (:mod:`.command`).  Connections are served by
one selector thread and a bounded pool of workers (:mod:`.reactor`), within
the :class:`~.limits.Limits` given; a connection that breaks one (or sends
garbage, or vanishes mid-call) is logged and dropped, the others go on.

Stopping is graceful: the listener closes, every call in flight finishes
and is answered within the grace period, idle connections are closed, every
mutator is flushed, and the store is closed.  :func:`serve` stops so on the
first SIGTERM/SIGINT and at once on the second.  Its signal handler takes
no lock and does no work: it counts the signal and writes a byte to a pipe
the main thread waits on (issue 10: a handler that set a ``threading.Event``
could block on the lock the interrupted main thread held in ``Event.wait``).
"""
from __future__ import annotations

import logging
import os
import selectors
import shutil
import signal
import socket
import ssl
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Optional, Union

from ..hosts import DEFAULT_PORT, Host
from .limits import Limits
from .objects import BrokerContext
from .reactor import Reactor
from .sqlitedb import BUSY_TIMEOUT
from .storage_client import RemoteStore
from .storage_wire import DEFAULT_LINGER
from .store import CellStore, Store

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "BrokerServer", "serve"]

log = logging.getLogger("htcluster.broker")

DEFAULT_HOST = "127.0.0.1"
#: Pending connections the listening socket queues.
BACKLOG = 128
#: Seconds ``stop()`` waits for the connection loop beyond the grace period before closing the store anyway.
STOP_MARGIN = 5.0
#: Seconds between two looks of :func:`serve`'s main thread at its stop flag.
SERVE_POLL = 0.2
#: File descriptors kept free beyond ``max_connections`` (store, pipes, listener).
SPARE_FDS = 64

PathLike = Union[str, "os.PathLike[str]"]


def _warm_hql() -> None:
    from ..hql import warm_up

    warm_up()


def _resolve_limits(limits: Optional[Limits], timeout: Optional[float], max_frame_size: Optional[int]) -> Limits:
    limits = limits or Limits()
    if timeout is not None:
        limits = limits.replace(idle_timeout=timeout)
    if max_frame_size is not None:
        limits = limits.replace(max_frame_size=max_frame_size)
    return limits


def _file_descriptors_for(connections: int) -> None:
    """Raise the soft limit of open files so that ``connections`` fit, or warn that they do not (POSIX only)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not a POSIX system
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = connections + SPARE_FDS
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        target = soft
    if target < needed:
        log.warning("only %d file descriptors may be open (ulimit -n): fewer than --max-connections %d "
                    "connections can be served", target, connections)



def _bound_socket(host: str, port: int) -> socket.socket:
    """Return a TCP socket bound to ``host:port`` (0: any free port), not yet listening.

    :raises OSError: the address cannot be bound (in use, not this machine's).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as socket.create_server on POSIX
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock

class BrokerServer:
    """A stand-in ThriftBroker serving one SQLite file.

    :param host: address to bind (loopback unless told otherwise).
    :param port: TCP port; 0 picks a free one (read :attr:`port` after ``start()``).
    :param data: SQLite file, served by its storage process (:mod:`.storage`; started
        here when none runs), as for every broker on that file; ``None``: a private
        temporary file, opened in this process and removed at ``stop()``.
    :param timeout: seconds a connection may go without a complete frame
        (``Limits.idle_timeout``; kept for callers of earlier versions).
    :param max_frame_size: bytes of the largest request frame (``Limits.max_frame_size``).
    :param busy_timeout: seconds a write waits for the data file's write lock before
        it answers REQUEST_TIMEOUT (given to a storage process started here).
    :param storage_linger: seconds a storage process started here keeps running once
        no broker is connected to it (``None``: until stopped).
    :param files: the only directory HQL file statements (LOAD DATA INFILE,
        SELECT/DUMP ... INTO FILE) may use; ``None`` refuses them all.
    :param limits: every limit (:class:`~.limits.Limits`); ``timeout`` and
        ``max_frame_size`` override theirs.
    :param ssl_context: a server ``ssl.SSLContext`` (:func:`.tls.server_context`):
        serve TLS only; ``None``: plaintext.

    Example::

        with BrokerServer(port=0) as server:
            client = Resource(f"127.0.0.1:{server.port}")
    """

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, data: Optional[PathLike] = None,
                 *, timeout: Optional[float] = None, max_frame_size: Optional[int] = None,
                 busy_timeout: float = BUSY_TIMEOUT, files: Optional[PathLike] = None,
                 limits: Optional[Limits] = None, ssl_context: Optional[ssl.SSLContext] = None,
                 storage_linger: Optional[float] = DEFAULT_LINGER) -> None:
        self.host = host
        self.storage_linger = storage_linger
        self.ssl_context = ssl_context
        self.files = Path(files).resolve() if files is not None else None
        self.port = port
        self.data = Path(data) if data is not None else None
        self.limits = _resolve_limits(limits, timeout, max_frame_size)
        self.busy_timeout = busy_timeout
        self.store: Optional[CellStore] = None
        self.context: Optional[BrokerContext] = None
        self._tmpdir: Optional[str] = None
        self._reactor: Optional[Reactor] = None

    @property
    def address(self) -> str:
        """``'host:port'`` of the listening socket (``'[::1]:port'`` for IPv6)."""
        return str(Host(self.host, self.port))

    @property
    def connections(self) -> int:
        """Number of client connections open right now."""
        return self._reactor.connections if self._reactor is not None else 0

    @property
    def inflight_bytes(self) -> int:
        """Bytes held now against ``limits.max_inflight_bytes`` (frames announced, answers not yet sent)."""
        return self._reactor.inflight if self._reactor is not None else 0

    @property
    def dispatched(self) -> int:
        """Number of frames the connection loop has handed to a worker so far.

        A worker that answered a call takes its connection's next small frame
        itself when it comes within ``STICKY`` seconds (over TLS too), so a
        client calling in a loop costs one hand-off, not one per call.
        """
        return self._reactor.dispatched if self._reactor is not None else 0

    @property
    def finished(self) -> bool:
        """True once the connection loop has ended (after a stop request), or before ``start()``."""
        return self._reactor is None or self._reactor.finished.is_set()

    def start(self) -> "BrokerServer":
        """Bind, open the store, and serve in background threads; return once listening.

        :raises OSError: the address cannot be bound; :class:`~.storage_client.StorageUnavailable`:
            the data file's storage process could not be reached or started.
        :raises sqlite3.DatabaseError: the data file is not a usable SQLite database
            (:class:`~.storage_client.UnusableDataFile` from its storage process).
        """
        if self._reactor is not None:
            return self
        _file_descriptors_for(self.limits.max_connections)
        # bind first (a port in use fails at once, before a storage process is started for nothing);
        # listen once the store is open, so that a connection accepted is one the broker can serve
        listener = _bound_socket(self.host, self.port)
        try:
            if self.data is None:
                self._tmpdir = tempfile.mkdtemp(prefix="htcluster-broker-")
                self.data = Path(self._tmpdir, "broker.sqlite")
                self.store = Store(str(self.data), self.busy_timeout)
            else:
                self.store = RemoteStore(self.data, self.busy_timeout, linger=self.storage_linger).open()
        except BaseException:
            listener.close()
            self._remove_temporary_data()
            raise
        self.context = BrokerContext(self.store)
        self.context.files_dir = self.files  # read by hql_run
        listener.listen(BACKLOG)
        self.port = listener.getsockname()[1]
        self._reactor = Reactor(listener, self.context, self.limits, self.ssl_context)
        self._reactor.start()
        # building the HQL parser takes ~0.2 s: do it now, not in the first hql_query
        threading.Thread(target=_warm_hql, name="htcluster-broker-hql-warmup", daemon=True).start()
        log.info("htcluster stand-in broker listening on %s%s (data %s)", self.address,
                 " (TLS)" if self.ssl_context is not None else "", self.data)
        return self

    def request_stop(self, grace: Optional[float] = None) -> None:
        """Begin a stop and return at once (no lock taken); :meth:`stop` finishes it.

        :param grace: seconds calls in flight may take; ``None``: ``limits.stop_grace``; 0: stop at once.
        """
        if self._reactor is not None:
            self._reactor.request_stop(self.limits.stop_grace if grace is None else grace)

    def stop(self, timeout: Optional[float] = None) -> None:
        """Stop accepting, let calls in flight finish and be answered, flush every mutator, close the store.

        :param timeout: the grace period in seconds; ``None``: ``limits.stop_grace``.
            After it, connections still busy are closed and their mutators flushed anyway.
        """
        reactor = self._reactor
        if reactor is None:
            return
        grace = self.limits.stop_grace if timeout is None else timeout
        reactor.request_stop(grace)
        if not reactor.join(grace + STOP_MARGIN):
            log.error("the connection loop did not end within %g s; closing the store anyway", grace + STOP_MARGIN)
        assert self.context is not None and self.store is not None
        self.context.close()
        self.store.close()
        self._reactor = None
        self._remove_temporary_data()
        log.info("htcluster stand-in broker on %s stopped", self.address)

    def _remove_temporary_data(self) -> None:
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir, self.data = None, None

    def __enter__(self) -> "BrokerServer":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self._reactor is not None else "stopped"
        return f"<BrokerServer {self.address} {state} data={self.data}>"


class _SignalPipe:
    """SIGTERM/SIGINT counted and turned into a byte on a pipe; the handler takes no lock.

    :param install: install the handlers (only possible in the main thread).
    """

    def __init__(self, install: bool) -> None:
        self.received = 0
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._read, selectors.EVENT_READ)
        self._previous: dict[int, Any] = {}
        if install:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        # only an int increment and a non-blocking write here: no lock, no logging, no I/O that can block
        self.received += 1
        try:
            os.write(self._write, b"\0")
        except OSError:
            pass

    def wait(self, timeout: float) -> None:
        """Return after a signal (or ``timeout`` seconds)."""
        try:
            self._selector.select(timeout)
            while os.read(self._read, 64):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def close(self) -> None:
        """Put the previous handlers back and close the pipe."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._selector.close()
        os.close(self._read)
        os.close(self._write)


def serve(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, data: Optional[PathLike] = None,
          *, timeout: Optional[float] = None, max_frame_size: Optional[int] = None,
          busy_timeout: float = BUSY_TIMEOUT, stop: Optional[threading.Event] = None,
          files: Optional[PathLike] = None, limits: Optional[Limits] = None,
          on_start: Optional[Callable[["BrokerServer"], None]] = None,
          ssl_context: Optional[ssl.SSLContext] = None, storage_linger: Optional[float] = DEFAULT_LINGER) -> None:
    """Serve until SIGTERM or SIGINT (or ``stop`` is set), then stop gracefully; a second signal stops at once.

    The other parameters are :class:`BrokerServer`'s.  Signals can only be
    caught in the main thread; elsewhere pass ``stop``.

    :param on_start: called once with the server, right after it is listening
        (its ``port`` is the one bound, also with ``port=0``).

    :raises OSError: the address cannot be bound.
    """
    server = BrokerServer(host, port, data, timeout=timeout, max_frame_size=max_frame_size,
                          busy_timeout=busy_timeout, files=files, limits=limits, ssl_context=ssl_context,
                          storage_linger=storage_linger)
    signals = _SignalPipe(install=threading.current_thread() is threading.main_thread())
    try:
        server.start()
        if on_start is not None:
            on_start(server)
        level = 0  # 1: graceful stop asked, 2: immediate stop asked
        while not server.finished:
            asked = min(signals.received, 2)
            if stop is not None and stop.is_set():
                asked = max(asked, 1)
            if asked > level:
                level = asked
                grace = server.limits.stop_grace if level == 1 else 0.0
                log.info("%s received: stopping (grace %g s)", "stop" if level == 1 else "second stop", grace)
                server.request_stop(grace)
            signals.wait(SERVE_POLL)
    finally:
        server.stop()
        signals.close()
