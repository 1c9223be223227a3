"""The storage process of a data file: the one process that opens it, serving every broker on it.

Real ThriftBrokers are stateless front ends of the RangeServers: a stopped or
killed broker never blocks another one.  The stand-in keeps that: the brokers
on one data file do not open the SQLite file; one storage process does (it
stands for the RangeServers), and each broker sends it every store
operation as one request over a Unix socket (:mod:`.storage_wire`,
:class:`~.storage_client.RemoteStore`).

What a paused broker cannot do here:

* hold a lock: the storage reads a request whole before it starts it, runs
  it whole (one query, or one write transaction) in the thread of that
  broker connection, and only then sends the answer.  A broker stopped in
  the middle of sending a request holds nothing but its own connection's
  thread; one stopped before reading its answer holds that thread in
  ``send`` with the transaction already committed.  Requests of other
  brokers run in their own threads meanwhile.
* keep a cursor open: a scan is a series of bounded ``fetch_rows`` requests.

Who starts it, and how long it lives:

* a broker started on ``--data FILE`` connects to the storage of ``FILE``;
  when none runs, it starts one (``python -m htcluster.broker.storage --data
  FILE --detach``), which runs in a session of its own, so a Ctrl-C or the
  end of that broker does not end it.  Of brokers starting at once, one
  storage wins the lock and the others connect to it.
* it runs while at least one broker is connected, and ends
  :data:`DEFAULT_LINGER` seconds (``--linger``) after the last one left: a
  broker restarted within that time finds it still running; a later one
  starts a new one.  SIGTERM or SIGINT end it earlier (calls in flight
  finish first).
* :class:`~htcluster.testing.LocalCluster` starts the storage of each of its
  data files itself, before its brokers, and stops it on ``close()``; chaos
  tests stop and kill brokers, never it.
* a broker with no data file keeps its private temporary file in its own
  process (no other broker can know it).

Run it by hand with ``python -m htcluster.broker.storage --data FILE``
(``--help``): it prints ``ready <pid> <socket>`` once it serves.
"""
from __future__ import annotations

import argparse
import fcntl
import logging
import os
import selectors
import signal
import socket
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from .._thrift.ttypes import ClientException
from .sqlitedb import BUSY_TIMEOUT
from .store import StaleTable, Store, WriteCell
from .storage_wire import (DEFAULT_LINGER, EXIT_BUSY, PROTOCOL, StoragePaths, recv_message, send_message,
                           storage_paths)

__all__ = ["DEFAULT_LINGER", "EXIT_BUSY", "StorageBusy", "StorageServer", "main"]

log = logging.getLogger("htcluster.broker.storage")

#: Seconds between two looks of the main thread at the linger time and its stop flag.
TICK = 0.2
#: Seconds a graceful stop lets requests in flight finish.
STOP_GRACE = 10.0
#: Pending connections the listening socket queues.
BACKLOG = 256


class StorageBusy(RuntimeError):
    """Another storage process holds the data file's lock (it serves the file, or is starting or ending)."""


def _write(store: Store, table_id: int, cells: Sequence[Sequence[Any]], expect: Optional[Sequence[Any]] = None
           ) -> None:
    store.write(table_id, [WriteCell._make(c) for c in cells], None if expect is None else _check(expect))


def _fetch_rows(store: Store, table_id: int, start: str, start_inclusive: bool, end: Optional[str],
                end_inclusive: bool, families: Optional[Sequence[int]], limit: int,
                expect: Optional[Sequence[Any]] = None) -> list:
    return store.fetch_rows(table_id, start, start_inclusive, end, end_inclusive, families, limit,
                            None if expect is None else _check(expect))


def _check(expect: Sequence[Any]) -> tuple[str, str, int, str]:
    namespace, name, table_id, schema = expect
    return str(namespace), str(name), int(table_id), str(schema)


def _row(found: Optional[tuple]) -> Optional[tuple]:
    return None if found is None else tuple(found)


#: Request name -> how it runs on the store; answers are plain values (tuples, not NamedTuples).
REQUESTS: dict[str, Callable[..., Any]] = {
    "namespace_id": lambda store, path: store.namespace_id(path),
    "create_namespace": lambda store, path: store.create_namespace(path),
    "drop_namespace": lambda store, path, if_exists: store.drop_namespace(path, if_exists),
    "listing": lambda store, path: store.listing(path),
    "table_names": lambda store, namespace: store.table_names(namespace),
    "table": lambda store, namespace, name: _row(store.table(namespace, name)),
    "table_by_id": lambda store, table_id: _row(store.table_by_id(table_id)),
    "create_table": lambda store, namespace, name, schema: store.create_table(namespace, name, schema),
    "drop_table": lambda store, table_id: store.drop_table(table_id),
    "rename_table": lambda store, table_id, namespace, name: store.rename_table(table_id, namespace, name),
    "set_schema": lambda store, table_id, schema, dropped: store.set_schema(table_id, schema, dropped),
    "write": _write,
    "fetch_rows": _fetch_rows,
}


class StorageServer:
    """The storage of one data file, serving brokers on a Unix socket (see the module's text).

    :param data: the SQLite file; created with its tables when missing.
    :param busy_timeout: seconds a write waits for the file's write lock (held by another
        request of this process, or by another process that opened the file directly).
    :param linger: seconds to keep running once no broker is connected; ``None``: until stopped.
    :param owner: the pid of the parent process that owns this storage (a
        :class:`~htcluster.testing.LocalCluster`): while it is this process's
        parent, the storage runs whatever its brokers do; ``linger`` counts once it is gone.
    """

    def __init__(self, data: "str | os.PathLike[str]", busy_timeout: float = BUSY_TIMEOUT,
                 linger: Optional[float] = DEFAULT_LINGER, owner: Optional[int] = None) -> None:
        self.paths: StoragePaths = storage_paths(data)
        self.busy_timeout = busy_timeout
        self.linger = linger
        self.owner = owner
        self.store: Optional[Store] = None
        self._lock_fd: Optional[int] = None
        self._listener: Optional[socket.socket] = None
        self._socket_ino: Optional[int] = None  # of the socket file bound, to remove only ours
        self._mutex = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._closing = False
        self._idle_since = time.monotonic()
        self._stop = threading.Event()

    @property
    def connections(self) -> int:
        """Brokers' connections open right now."""
        with self._mutex:
            return len(self._conns)

    def start(self) -> "StorageServer":
        """Take the data file's lock, open the store, listen; return once brokers can connect.

        :raises StorageBusy: another storage process holds the lock.
        :raises sqlite3.DatabaseError: the file is not a usable SQLite database.
        :raises OSError: the lock file or the socket cannot be made.
        """
        fd = os.open(self.paths.lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StorageBusy(f"another storage process serves {self.paths.data}") from None
        self._lock_fd = fd
        try:
            self.store = Store(str(self.paths.data), self.busy_timeout)
            self.store.release_thread()  # the main thread serves no request
            self._listener = self._listen()
        except BaseException:
            self._release()
            raise
        self._idle_since = time.monotonic()
        threading.Thread(target=self._accept, name="htcluster-storage-accept", daemon=True).start()
        log.info("storage of %s serving on %s (pid %d)", self.paths.data, self.paths.socket, os.getpid())
        return self

    def _listen(self) -> socket.socket:
        path = str(self.paths.socket)
        try:  # we hold the lock: a socket file left here belongs to a storage that has ended
            os.unlink(path)
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            old_mask = os.umask(0o177)  # the socket is the user's alone (mode 0600)
            try:
                listener.bind(path)
            finally:
                os.umask(old_mask)
            listener.listen(BACKLOG)
            self._socket_ino = os.stat(path).st_ino
        except BaseException:
            listener.close()
            raise
        return listener

    # ---------------------------------------------------------------- serving

    def _accept(self) -> None:
        listener = self._listener
        assert listener is not None
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:  # the listener was closed: the storage is ending
                return
            with self._mutex:
                if self._closing:
                    sock.close()
                    continue
                self._conns.add(sock)
                thread = threading.Thread(target=self._serve, args=(sock,), name="htcluster-storage-conn",
                                          daemon=True)
                self._threads.add(thread)
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        """Answer one broker connection's requests, one at a time, until it closes."""
        assert self.store is not None
        try:
            while True:
                try:
                    request = recv_message(sock)
                except Exception as exc:  # the connection broke, or sent something that is no message
                    log.debug("a broker connection ended: %s: %s", type(exc).__name__, exc)
                    return
                if request is None:
                    return
                answer = self._run(request)
                try:
                    send_message(sock, answer)
                except OSError as exc:
                    log.debug("a broker left before its answer: %s", exc)
                    return
        finally:
            self.store.release_thread()
            with self._mutex:
                self._conns.discard(sock)
                self._threads.discard(threading.current_thread())
                if not self._conns:
                    self._idle_since = time.monotonic()
            sock.close()

    def _run(self, request: Any) -> tuple:
        """Run one request whole; return its answer (see :mod:`.storage_wire`)."""
        assert self.store is not None
        try:
            method, args = request
            if method == "hello":
                return "ok", self.hello()
            run = REQUESTS[method]
        except (TypeError, ValueError, KeyError):
            return "fail", f"not a storage request: {str(request)[:80]}"
        try:
            return "ok", run(self.store, *args)
        except ClientException as exc:
            return "error", exc.code, exc.message
        except StaleTable as exc:  # a broker's cached lookup no longer holds: nothing was done
            return "stale", str(exc)
        except (sqlite3.Error, TypeError, ValueError) as exc:
            log.error("%s failed: %s", method, exc)
            return "fail", f"{method}: {type(exc).__name__}: {exc}"

    def hello(self) -> dict[str, Any]:
        """Return who this storage is: protocol version, pid, the data file's real path, device and inode."""
        stat = os.stat(self.paths.data)
        return {"protocol": PROTOCOL, "pid": os.getpid(), "data": str(self.paths.data),
                "dev": stat.st_dev, "ino": stat.st_ino}

    # ---------------------------------------------------------------- ending

    def request_stop(self) -> None:
        """Ask :meth:`serve_until_stopped` to return (any thread; not from a signal handler)."""
        self._stop.set()

    def idle_too_long(self) -> bool:
        """Return True once no broker has been connected for ``linger`` seconds (and the owner is gone)."""
        if self.linger is None or (self.owner is not None and os.getppid() == self.owner):
            return False
        with self._mutex:
            return not self._conns and time.monotonic() - self._idle_since >= self.linger

    def serve_until_stopped(self, wake_fd: Optional[int] = None, stopped: Callable[[], bool] = lambda: False
                            ) -> None:
        """Block until :meth:`request_stop`, ``stopped()``, or the linger time without brokers.

        :param wake_fd: a descriptor that becomes readable when ``stopped()`` may have changed
            (a signal handler's pipe); read and drained here.
        :param stopped: returns True once the process was asked to stop.
        """
        with selectors.DefaultSelector() as selector:
            if wake_fd is not None:
                selector.register(wake_fd, selectors.EVENT_READ)
            while not (self._stop.is_set() or stopped() or self.idle_too_long()):
                for key, _ in selector.select(TICK):
                    try:
                        os.read(key.fd, 64)
                    except (BlockingIOError, InterruptedError):
                        pass

    def stop(self, grace: float = STOP_GRACE) -> None:
        """Stop listening, let requests in flight finish (``grace`` seconds), close the store, release the lock."""
        with self._mutex:
            self._closing = True
            conns = list(self._conns)
            threads = list(self._threads)
        if self._listener is not None:
            self._unlink_socket()
            try:
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept() (Linux)
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        for sock in conns:  # wakes the threads waiting for a request; one running a request finishes it
            try:
                sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass
        deadline = time.monotonic() + grace
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._release()
        log.info("storage of %s stopped", self.paths.data)

    def _unlink_socket(self) -> None:
        """Remove the socket file if it is still this storage's (a later storage may have replaced it)."""
        try:
            if os.stat(self.paths.socket).st_ino == self._socket_ino:
                os.unlink(self.paths.socket)
        except OSError:
            pass

    def _release(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None


# ------------------------------------------------------------------ command


class _Signals:
    """SIGTERM/SIGINT counted and turned into a byte on a pipe; the handler takes no lock."""

    def __init__(self) -> None:
        self.received = 0
        self.read_fd, self._write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self._write_fd, False)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.received += 1
        try:
            os.write(self._write_fd, b"\0")
        except OSError:
            pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m htcluster.broker.storage",
        description="Serve one data file to the stand-in brokers on it (they start it themselves when needed).")
    parser.add_argument("--data", required=True, help="the SQLite file")
    parser.add_argument("--busy-timeout", type=float, default=BUSY_TIMEOUT,
                        help="seconds a write waits for the file's write lock (default %(default)s)")
    parser.add_argument("--linger", default=str(DEFAULT_LINGER),
                        help="seconds to keep running after the last broker disconnected, or 'never' "
                             "(default %(default)s)")
    parser.add_argument("--owner-pid", type=int, default=None,
                        help="run while this parent process lives, whatever the brokers do; "
                             "--linger counts once it has gone")
    parser.add_argument("--detach", action="store_true",
                        help="run in the background in a session of its own; return once it serves")
    parser.add_argument("--log-level", default="warning",
                        choices=["debug", "info", "warning", "error", "critical"], help="default %(default)s")
    return parser


def _linger(text: str) -> Optional[float]:
    if text.lower() == "never":
        return None
    value = float(text)
    if value < 0:
        raise ValueError(f"--linger must be seconds >= 0 or 'never', not {text}")
    return value


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run a storage process from command-line arguments; return the exit status.

    Prints ``ready <pid> <socket path>`` on standard output once brokers can connect
    (with ``--detach``: the background process's pid, printed by the command before it returns);
    else ``busy ...``, ``error data <file>: <why>`` (not a usable SQLite file) or ``error os <why>``.

    :returns: 0 after a stop, 1 when the file or the socket cannot be used, 2 for bad
        arguments, :data:`EXIT_BUSY` (3) when another storage process serves the file.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        linger = _linger(args.linger)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = StorageServer(Path(args.data), args.busy_timeout, linger, args.owner_pid)
    if args.detach:
        return _detach(server)
    return _run(server, sys.stdout.fileno())


def _run(server: StorageServer, ready_fd: int, close_ready: bool = False) -> int:
    """Start ``server`` (telling ``ready_fd``, closed after when ``close_ready``: its reader waits for the
    end), serve it until a signal stops it; return the exit status."""
    signals = _Signals()
    status = _start(server, ready_fd)
    if close_ready:
        os.close(ready_fd)
    if status:
        return status
    try:
        server.serve_until_stopped(signals.read_fd, lambda: signals.received > 0)
    finally:
        server.stop()
    return 0


def _start(server: StorageServer, ready_fd: int) -> int:
    """Start ``server``; write ``ready <pid> <socket>`` or ``busy``/``error ...`` to ``ready_fd``; return a status."""
    try:
        server.start()
    except StorageBusy as exc:
        os.write(ready_fd, f"busy {exc}\n".encode())
        return EXIT_BUSY
    except sqlite3.Error as exc:  # "data": the client raises UnusableDataFile
        os.write(ready_fd, f"error data {server.paths.data}: {exc}\n".encode())
        return 1
    except OSError as exc:
        os.write(ready_fd, f"error os cannot serve {server.paths.data}: {exc}\n".encode())
        return 1
    os.write(ready_fd, f"ready {os.getpid()} {server.paths.socket}\n".encode())
    return 0


def _detach(server: StorageServer) -> int:
    """Fork a background storage in a new session; print its first line and return its start status.

    The background process keeps none of the launcher's standard streams (a
    caller reading the launcher's output sees its end when the launcher
    exits, not when the storage lingers out): its log is appended to
    ``<data>.storage.log`` beside the data file.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the background process: no thread runs yet
        os.close(read_fd)
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)  # whoever waits for the launcher's output must see its end
        os.close(null)
        # nor may it wait for the linger time on the launcher's standard error: the log goes to a file
        try:
            log_fd = os.open(server.paths.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError:
            log_fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        return _run(server, write_fd, close_ready=True)
    os.close(write_fd)
    chunks = []
    while True:
        chunk = os.read(read_fd, 4096)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read_fd)
    line = b"".join(chunks).decode(errors="replace").strip()
    print(line or "error the storage process ended before it served", flush=True)
    if line.startswith("ready"):
        return 0
    return EXIT_BUSY if line.startswith("busy") else 1


if __name__ == "__main__":
    sys.exit(main())
