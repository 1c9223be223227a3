"""The stand-in ThriftBroker's server: accept loop, one thread and one Handler per connection.

Use :class:`BrokerServer` in-process (``start()`` returns once listening;
``port=0`` picks a free port), :func:`serve` to block until SIGTERM/SIGINT,
or ``python -m htcluster.broker`` (:func:`main`).  A connection that sends
garbage (a frame over the size limit, bytes that are not the binary
protocol) or vanishes mid-call is logged and dropped; the others go on.
Stopping closes the listener, lets every connection finish its current call,
flushes every mutator, and closes the store.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import socket
import sqlite3
import tempfile
import threading
from pathlib import Path
from typing import Optional, Sequence, Union

from thrift.transport.TTransport import TTransportException

from .._thrift import HqlService
from ..hosts import DEFAULT_PORT, Host
from .handler import Handler
from .objects import BrokerContext
from .sqlitedb import BUSY_TIMEOUT
from .store import Store
from .wire import MAX_FRAME_SIZE, open_connection

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "BrokerServer", "main", "serve"]

log = logging.getLogger("htcluster.broker")

DEFAULT_HOST = "127.0.0.1"
#: Seconds ``stop()`` waits for connections to finish their current call.
STOP_TIMEOUT = 10.0
#: Seconds between two checks of the stop flag by the accept loop.
ACCEPT_POLL = 0.2
#: Pending connections the listening socket queues.
BACKLOG = 128

PathLike = Union[str, "os.PathLike[str]"]


def _warm_hql() -> None:
    from . import hql

    hql.warm_up()


#: How a client closing or resetting its socket shows up; not worth a warning.
_NORMAL_DISCONNECTS = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)

class BrokerServer:
    """A stand-in ThriftBroker serving one SQLite file.

    :param host: address to bind (loopback unless told otherwise).
    :param port: TCP port; 0 picks a free one (read :attr:`port` after ``start()``).
    :param data: SQLite file; ``None`` uses a temporary file removed at ``stop()``.
    :param timeout: seconds a connection may stay silent (idle or mid-frame)
        before it is dropped; ``None`` never drops it, as the real broker.
    :param max_frame_size: bytes of the largest request frame accepted.
    :param busy_timeout: seconds a write waits for another process holding the
        data file's write lock before it answers REQUEST_TIMEOUT.
    :param files: the only directory HQL file statements (LOAD DATA INFILE,
        SELECT/DUMP ... INTO FILE) may use; ``None`` refuses them all.

    Example::

        with BrokerServer(port=0) as server:
            client = Resource(f"127.0.0.1:{server.port}")
    """

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, data: Optional[PathLike] = None,
                 *, timeout: Optional[float] = None, max_frame_size: int = MAX_FRAME_SIZE,
                 busy_timeout: float = BUSY_TIMEOUT, files: Optional[PathLike] = None) -> None:
        self.host = host
        self.files = Path(files).resolve() if files is not None else None
        self.port = port
        self.data = Path(data) if data is not None else None
        self.timeout = timeout
        self.max_frame_size = max_frame_size
        self.busy_timeout = busy_timeout
        self.store: Optional[Store] = None
        self.context: Optional[BrokerContext] = None
        self._tmpdir: Optional[str] = None
        self._listener: Optional[socket.socket] = None
        self._accepter: Optional[threading.Thread] = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._connections: dict[threading.Thread, tuple[socket.socket, Handler]] = {}

    @property
    def address(self) -> str:
        """``'host:port'`` of the listening socket (``'[::1]:port'`` for IPv6)."""
        return str(Host(self.host, self.port))

    @property
    def connections(self) -> int:
        """Number of client connections open right now."""
        with self._lock:
            return len(self._connections)

    def start(self) -> "BrokerServer":
        """Open the store, bind, and serve in background threads; return once listening.

        :raises OSError: the address cannot be bound.
        :raises sqlite3.DatabaseError: the data file is not a usable SQLite database.
        """
        if self._accepter is not None:
            return self
        if self.data is None:
            self._tmpdir = tempfile.mkdtemp(prefix="htcluster-broker-")
            self.data = Path(self._tmpdir, "broker.sqlite")
        self.store = Store(str(self.data), self.busy_timeout)
        self.context = BrokerContext(self.store)
        self.context.files_dir = self.files  # type: ignore[attr-defined]  # read by hql_exec
        try:
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            listener = socket.create_server((self.host, self.port), family=family, backlog=BACKLOG)
        except OSError:
            self.context.close()
            self.store.close()
            self._remove_temporary_data()
            raise
        listener.settimeout(ACCEPT_POLL)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._stopping.clear()
        self._accepter = threading.Thread(target=self._accept_loop, name=f"htcluster-broker-accept-{self.port}",
                                          daemon=True)
        self._accepter.start()
        # building the HQL parser takes ~0.2 s: do it now, not in the first hql_query
        threading.Thread(target=_warm_hql, name="htcluster-broker-hql-warmup", daemon=True).start()
        log.info("htcluster stand-in broker listening on %s (data %s)", self.address, self.data)
        return self

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                sock, addr = self._listener.accept()
            except socket.timeout:
                continue
            except OSError as exc:  # e.g. out of file descriptors: wait, then try again
                if not self._stopping.is_set():
                    log.error("accept on %s failed: %s", self.address, exc)
                    self._stopping.wait(ACCEPT_POLL)
                continue
            sock.settimeout(self.timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            peer = f"{addr[0]}:{addr[1]}"
            assert self.context is not None
            handler = Handler(self.context, peer)
            thread = threading.Thread(target=self._serve_connection, args=(sock, handler),
                                      name=f"htcluster-broker-{peer}", daemon=True)
            with self._lock:
                self._connections[thread] = (sock, handler)
            thread.start()

    def _serve_connection(self, sock: socket.socket, handler: Handler) -> None:
        """Answer calls on one connection until it closes or fails, then release its state."""
        _, protocol = open_connection(sock, self.max_frame_size)
        processor = HqlService.Processor(handler)
        log.debug("%s: connected", handler.peer)
        try:
            while True:
                processor.process(protocol, protocol)
        except TTransportException as exc:
            inner = getattr(exc, "inner", None)
            if exc.type == TTransportException.END_OF_FILE or isinstance(inner, _NORMAL_DISCONNECTS):
                log.debug("%s: disconnected (%s)", handler.peer, inner or "end of file")
            else:
                log.warning("%s: dropping connection: %s%s", handler.peer, exc, f" ({inner})" if inner else "")
        except Exception as exc:  # garbage on the socket: drop only this connection
            log.warning("%s: dropping connection after a bad request: %s: %s", handler.peer,
                        type(exc).__name__, exc)
        finally:
            handler.close()
            assert self.store is not None
            self.store.release_thread()
            try:
                sock.close()
            except OSError:  # pragma: no cover
                pass
            with self._lock:
                self._connections.pop(threading.current_thread(), None)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop accepting, let connections finish their call, flush every mutator, close the store.

        :param timeout: seconds to wait for busy connections; after it their
            mutators are flushed from here.
        """
        if self._accepter is None:
            return
        self._stopping.set()
        self._accepter.join(timeout)
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            connections = list(self._connections.items())
        for _, (sock, _) in connections:
            try:
                sock.shutdown(socket.SHUT_RD)  # the next read sees end of file
            except OSError:
                pass
        for thread, (_, handler) in connections:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("%s: still busy at shutdown; flushing its mutators anyway", handler.peer)
                handler.close()
        assert self.context is not None and self.store is not None
        self.context.close()
        self.store.close()
        self._accepter = None
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
        state = "running" if self._accepter is not None else "stopped"
        return f"<BrokerServer {self.address} {state} data={self.data}>"


def serve(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, data: Optional[PathLike] = None,
          *, timeout: Optional[float] = None, max_frame_size: int = MAX_FRAME_SIZE,
          busy_timeout: float = BUSY_TIMEOUT, stop: Optional[threading.Event] = None,
          files: Optional[PathLike] = None) -> None:
    """Serve until SIGTERM or SIGINT (or ``stop`` is set), then stop gracefully.

    The other parameters are :class:`BrokerServer`'s.  Signals can only be
    caught in the main thread; elsewhere pass ``stop``.

    :raises OSError: the address cannot be bound.
    """
    stop = stop or threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda signum, frame: stop.set())
    server = BrokerServer(host, port, data, timeout=timeout, max_frame_size=max_frame_size,
                          busy_timeout=busy_timeout, files=files)
    try:
        server.start()
        while not stop.wait(1.0):
            pass
        log.info("signal received, shutting down")
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m htcluster.broker",
                                     description="Serve the Hypertable ThriftBroker protocol over a SQLite file.")
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port, 0 for any (default %(default)s)")
    parser.add_argument("--data", default=None, help="SQLite file (default: a temporary file)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds a silent connection is kept (default: forever)")
    parser.add_argument("--max-frame-size", type=int, default=MAX_FRAME_SIZE,
                        help="bytes of the largest request accepted (default %(default)s)")
    parser.add_argument("--busy-timeout", type=float, default=BUSY_TIMEOUT,
                        help="seconds a write waits for another broker holding the data file "
                             "(default %(default)s)")
    parser.add_argument("--files", default=None,
                        help="directory for LOAD DATA INFILE and SELECT ... INTO FILE (default: none allowed)")
    parser.add_argument("--log-level", default="warning",
                        choices=["debug", "info", "warning", "error", "critical"], help="default %(default)s")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the broker from command-line arguments; return the exit status.

    :returns: 0 after SIGTERM/SIGINT, 1 when the address or data file cannot be used.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.files is not None and not Path(args.files).is_dir():
        parser.error(f"--files {args.files}: not a directory")
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        serve(args.host, args.port, args.data, timeout=args.timeout, max_frame_size=args.max_frame_size,
              busy_timeout=args.busy_timeout, files=args.files)
    except (OSError, sqlite3.Error) as exc:
        log.error("cannot serve on %s:%d with data %s: %s", args.host, args.port, args.data or "(temporary)", exc)
        return 1
    return 0
