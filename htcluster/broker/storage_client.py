"""The broker's side of the storage process: :class:`RemoteStore`, and starting a storage process.

A broker on a data file holds no SQLite connection: its :class:`RemoteStore`
sends each store operation to the storage process of the file (see
:mod:`.storage` for who starts it and how long it lives) on a connection of
the calling thread's own, and waits for the answer.  Reads are retried once
on a new connection when the old one broke; a write whose connection broke
after it was sent is answered ``ClientException(REQUEST_TIMEOUT)`` saying
that it may or may not have been applied.

:class:`StorageProcess` starts and stops one storage process as a child of
the caller (what :class:`~htcluster.testing.LocalCluster` does for each of
its data files).
"""
from __future__ import annotations

import logging
import os
import select
import selectors
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from .. import codes
from .._thrift.ttypes import ClientException
from ._errors import client_error
from .sqlitedb import BUSY_TIMEOUT
from .storage_wire import DEFAULT_LINGER, EXIT_BUSY, PROTOCOL, StoragePaths, recv_message, send_message, storage_paths
from .store import CellStore, RawCell, StaleTable, TableCheck, TableRow, WriteCell

__all__ = ["REQUEST_TIMEOUT", "START_TIMEOUT", "RemoteStore", "StorageProcess", "StorageUnavailable",
           "UnusableDataFile"]

log = logging.getLogger("htcluster.broker")

PathLike = Union[str, "os.PathLike[str]"]

#: Seconds to reach (and, if needed, start) the storage process of a data file.
START_TIMEOUT = 30.0
#: Seconds one request may take before the broker gives up on it (a purge of a large table is one request).
REQUEST_TIMEOUT = 300.0
#: Seconds between two attempts to reach a storage process that is starting or ending.
RETRY_PAUSE = 0.05
#: Requests that change nothing: retried once on a new connection when the old one broke.
READS = frozenset({"hello", "namespace_id", "listing", "table_names", "table", "table_by_id", "fetch_rows"})


class StorageUnavailable(OSError):
    """The storage process of a data file could not be reached or started (see the message)."""


class UnusableDataFile(sqlite3.DatabaseError):
    """The data file is not a usable SQLite database (the storage process said why)."""


def _start_failure(data: PathLike, line: str, status: Optional[int]) -> Exception:
    """Return the error of a storage process that did not start, from its first line of output."""
    if line.startswith("error data "):
        return UnusableDataFile(line.removeprefix("error data "))
    why = line.removeprefix("error os ") or "no reason given"
    return StorageUnavailable(f"the storage process for {data} did not start (exit status {status}): {why}")


def _storage_command(data: Path, busy_timeout: float, *options: str) -> list[str]:
    level = logging.getLevelName(log.getEffectiveLevel()).lower()
    if level not in ("debug", "info", "warning", "error", "critical"):
        level = "warning"
    return [sys.executable, "-m", "htcluster.broker.storage", "--data", str(data),
            "--busy-timeout", repr(float(busy_timeout)), "--log-level", level, *options]


def _linger_option(linger: Optional[float]) -> tuple[str, str]:
    """The storage command's ``--linger`` argument for ``linger`` seconds (``None``: never)."""
    return ("--linger", "never" if linger is None else repr(float(linger)))


def start_detached(data: PathLike, busy_timeout: float = BUSY_TIMEOUT, timeout: float = START_TIMEOUT,
                   linger: Optional[float] = DEFAULT_LINGER) -> bool:
    """Start a storage process for ``data`` in the background, unless one holds the file's lock.

    :param busy_timeout: seconds its writes wait for the file's write lock.
    :param timeout: seconds to wait for it to serve.
    :param linger: seconds it keeps running after its last broker disconnected (``None``: until stopped).
    :returns: True if this call started one; False if another one holds the lock
        (it serves the file, or it is starting or ending: connect again shortly).
    :raises StorageUnavailable: it could not serve the file (the reason is in the message).
    :raises UnusableDataFile: the file is not a usable SQLite database.
    """
    command = _storage_command(Path(data), busy_timeout, "--detach", *_linger_option(linger))
    try:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        raise StorageUnavailable(f"the storage process for {data} did not start within {timeout:g} s") from None
    line = done.stdout.decode(errors="replace").strip()
    if done.returncode == 0:
        log.info("started the storage process for %s: %s", data, line)
        return True
    if done.returncode == EXIT_BUSY:
        return False
    raise _start_failure(data, line, done.returncode)


def connect(paths: StoragePaths, timeout: float = REQUEST_TIMEOUT) -> socket.socket:
    """Connect to the storage process of ``paths`` and check that it serves that data file.

    :param timeout: seconds each later request on the socket may take.
    :returns: the connected socket.
    :raises OSError: nothing listens, or the connection broke during the greeting.
    :raises StorageUnavailable: what answers serves another file or speaks another protocol.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(str(paths.socket))
        send_message(sock, ("hello", ()))
        answer = recv_message(sock)
        if answer is None:
            raise ConnectionResetError(f"the storage process on {paths.socket} closed the connection")
        hello = answer[1]
        if answer[0] != "ok" or hello.get("protocol") != PROTOCOL:
            raise StorageUnavailable(f"{paths.socket} does not answer as an htcluster storage process "
                                     f"of protocol {PROTOCOL}: {answer!r:.200}")
        if hello.get("data") != str(paths.data):
            raise StorageUnavailable(f"the storage process on {paths.socket} serves {hello.get('data')}, "
                                     f"not {paths.data}")
    except BaseException:
        sock.close()
        raise
    return sock


def _peer_closed(sock: socket.socket) -> bool:
    """Return True when an idle connection ``sock`` can no longer be used (nothing is read).

    The storage process sends nothing unasked, so an idle connection that is
    readable has been closed (or holds garbage): either way, a new one is needed.
    """
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class RemoteStore(CellStore):
    """The :class:`~.store.CellStore` of a broker on a data file: every call is a request to its storage process.

    Each thread gets a connection of its own, opened at its first call;
    :meth:`release_thread` closes the calling thread's, :meth:`close` every one.

    :param data: the SQLite file.
    :param busy_timeout: seconds a storage process started here lets writes wait for the write lock.
    :param autostart: start a storage process when none serves the file.
    :param linger: seconds a storage process started here keeps running after its last broker
        disconnected (``None``: until stopped).
    :param start_timeout: seconds to reach (or start) the storage process.
    :param request_timeout: seconds one request may take.
    """

    def __init__(self, data: PathLike, busy_timeout: float = BUSY_TIMEOUT, *, autostart: bool = True,
                 start_timeout: float = START_TIMEOUT, request_timeout: float = REQUEST_TIMEOUT,
                 linger: Optional[float] = DEFAULT_LINGER) -> None:
        self.paths = storage_paths(data)
        self.busy_timeout = busy_timeout
        self.linger = linger
        self.autostart = autostart
        self.start_timeout = start_timeout
        self.request_timeout = request_timeout
        self._local = threading.local()
        self._mutex = threading.Lock()
        self._socks: set[socket.socket] = set()
        self._closed = False
        self._tables: dict[tuple[str, str], TableRow] = {}  # cached lookups, checked by the storage when used

    def open(self) -> "RemoteStore":
        """Reach the storage process now (starting one if needed), so that a broker fails at its start, not later.

        :returns: this store.
        :raises StorageUnavailable: it could not be reached or started within ``start_timeout`` seconds.
        :raises UnusableDataFile: the file is not a usable SQLite database.
        """
        self._sock()
        return self

    # ------------------------------------------------------------ connections

    def _connect(self) -> socket.socket:
        deadline = time.monotonic() + self.start_timeout
        last: Optional[BaseException] = None
        while True:
            try:
                return connect(self.paths, self.request_timeout)
            except StorageUnavailable:
                raise
            except OSError as exc:  # nothing listens (yet, or any more), or it is ending
                last = exc
            if time.monotonic() >= deadline:
                raise StorageUnavailable(f"no storage process serves {self.paths.data} on {self.paths.socket} "
                                         f"({last}); it was not reached within {self.start_timeout:g} s")
            if self.autostart:
                if start_detached(self.paths.data, self.busy_timeout, max(deadline - time.monotonic(), 1.0),
                                  self.linger):
                    continue
            time.sleep(RETRY_PAUSE)

    def _sock(self) -> socket.socket:
        sock: Optional[socket.socket] = getattr(self._local, "sock", None)
        if sock is not None and _peer_closed(sock):
            self._forget(sock)
            sock = None
        if sock is None:
            if self._closed:
                raise StorageUnavailable(f"the store of {self.paths.data} is closed")
            sock = self._connect()
            self._local.sock = sock
            with self._mutex:
                self._socks.add(sock)
        return sock

    def _forget(self, sock: socket.socket) -> None:
        if getattr(self._local, "sock", None) is sock:
            self._local.sock = None
        with self._mutex:
            self._socks.discard(sock)
        sock.close()

    def release_thread(self) -> None:
        """Close the calling thread's connection, if it has one."""
        sock = getattr(self._local, "sock", None)
        if sock is not None:
            self._forget(sock)

    def close(self) -> None:
        """Close every connection (call once no thread uses the store any more)."""
        self._closed = True
        with self._mutex:
            socks, self._socks = list(self._socks), set()
        for sock in socks:
            sock.close()

    # --------------------------------------------------------------- requests

    def call(self, method: str, *args: Any) -> Any:
        """Send one request and return its result.

        :param method: a storage request (a :class:`~.store.CellStore` method name).
        :param args: its arguments, as plain values.
        :raises ClientException: the store's own answer; REQUEST_TIMEOUT when the
            storage process did not answer (the message says whether a write may have been applied).
        :raises StaleTable: the cached lookup the request carried no longer holds; nothing was done.
        """
        for attempt in (1, 2):
            try:
                sock = self._sock()
            except StorageUnavailable as exc:
                raise client_error(codes.REQUEST_TIMEOUT, f"{method}: {exc}") from None
            try:
                send_message(sock, (method, args))
                answer = recv_message(sock)
                if answer is None:
                    raise ConnectionResetError("the storage process closed the connection")
            except (OSError, EOFError) as exc:
                self._forget(sock)
                if method in READS and attempt == 1 and not isinstance(exc, socket.timeout):
                    continue
                outcome = "" if method in READS else "; the write may or may not have been applied"
                raise client_error(codes.REQUEST_TIMEOUT, f"{method}: the storage process of {self.paths.data} "
                                                          f"did not answer ({exc}){outcome}") from None
            break
        if answer[0] == "ok":
            return answer[1]
        if answer[0] == "error":
            raise ClientException(code=answer[1], message=answer[2])
        if answer[0] == "stale":
            self._forget_tables()
            raise StaleTable(answer[1])
        raise client_error(codes.INVALID_OPERATION, f"{method}: the storage process failed: {answer[1]}")

    def cached_table(self, namespace: str, name: str) -> Optional[TableRow]:
        """Return the table ``name`` of ``namespace`` from this broker's cache, else as :meth:`table` does.

        A cached answer costs no request: the calling thread's next :meth:`write`
        or :meth:`fetch_rows` carries it, and the storage process checks it there
        (in the same transaction for a write), raising :class:`~.store.StaleTable`
        when the table was dropped, renamed or altered meanwhile.
        """
        with self._mutex:
            found = self._tables.get((namespace, name))
        if found is None:
            self._local.expect = None
            return self.table(namespace, name)
        self._local.expect = (namespace, name, found.id, found.schema)
        return found

    def forget_check(self) -> None:
        """Drop the check a :meth:`cached_table` answer left for the calling thread's next request."""
        self._local.expect = None

    def has_check(self) -> bool:
        """Return whether the calling thread's last lookup came from the cache and is not checked yet."""
        return getattr(self._local, "expect", None) is not None

    def _take_check(self) -> Optional[TableCheck]:
        expect: Optional[TableCheck] = getattr(self._local, "expect", None)
        self._local.expect = None
        return expect

    def _forget_tables(self) -> None:
        with self._mutex:
            self._tables.clear()

    def namespace_id(self, path: str) -> Optional[int]:
        """See :meth:`.Store.namespace_id`."""
        found: Optional[int] = self.call("namespace_id", path)
        return found

    def create_namespace(self, path: str) -> None:
        """See :meth:`.Store.create_namespace`."""
        self.call("create_namespace", path)

    def drop_namespace(self, path: str, if_exists: bool) -> None:
        """See :meth:`.Store.drop_namespace`."""
        self._forget_tables()
        self.call("drop_namespace", path, bool(if_exists))

    def listing(self, path: str) -> list[tuple[str, bool]]:
        """See :meth:`.Store.listing`."""
        return [(name, bool(is_namespace)) for name, is_namespace in self.call("listing", path)]

    def table_names(self, namespace: str) -> list[str]:
        """See :meth:`.Store.table_names`."""
        return list(self.call("table_names", namespace))

    def table(self, namespace: str, name: str) -> Optional[TableRow]:
        """See :meth:`.Store.table` (asked of the storage process; the answer refreshes the cache)."""
        self._local.expect = None  # a fresh answer: no earlier cached lookup is checked any more
        found = self.call("table", namespace, name)
        row = None if found is None else TableRow(*found)
        with self._mutex:
            if row is None:
                self._tables.pop((namespace, name), None)
            else:
                self._tables[(namespace, name)] = row
        return row

    def table_by_id(self, table_id: int) -> Optional[TableRow]:
        """See :meth:`.Store.table_by_id`."""
        found = self.call("table_by_id", table_id)
        return None if found is None else TableRow(*found)

    def create_table(self, namespace: str, name: str, schema: str) -> int:
        """See :meth:`.Store.create_table`."""
        self._forget_tables()
        table_id: int = self.call("create_table", namespace, name, schema)
        return table_id

    def drop_table(self, table_id: int) -> None:
        """See :meth:`.Store.drop_table`."""
        self._forget_tables()
        self.call("drop_table", table_id)

    def rename_table(self, table_id: int, namespace: str, new_name: str) -> None:
        """See :meth:`.Store.rename_table`."""
        self._forget_tables()
        self.call("rename_table", table_id, namespace, new_name)

    def set_schema(self, table_id: int, schema: str, dropped_families: Sequence[int] = ()) -> None:
        """See :meth:`.Store.set_schema`."""
        self._forget_tables()
        self.call("set_schema", table_id, schema, list(dropped_families))

    def write(self, table_id: int, cells: Sequence[WriteCell], expect: Optional[TableCheck] = None) -> None:
        """See :meth:`.Store.write`: one transaction of the storage process, which checks a cached lookup too."""
        expect = expect or self._take_check()
        if cells or expect is not None:
            self.call("write", table_id, [tuple(c) for c in cells], *(() if expect is None else (expect,)))

    def fetch_rows(self, table_id: int, start: str, start_inclusive: bool, end: Optional[str],
                   end_inclusive: bool, families: Optional[Sequence[int]], limit: int,
                   expect: Optional[TableCheck] = None) -> list[RawCell]:
        """See :meth:`.Store.fetch_rows`; the storage process checks a cached lookup first."""
        expect = expect or self._take_check()
        rows: list[RawCell] = self.call("fetch_rows", table_id, start, start_inclusive, end, end_inclusive,
                                        None if families is None else list(families), limit,
                                        *(() if expect is None else (expect,)))
        return rows


class StorageProcess:
    """One storage process, run as a child of the caller, for a data file.

    It runs until :meth:`stop` (or until the caller's process has gone and no
    broker has been connected for ``--linger`` seconds), whatever its brokers do.

    :param data: the SQLite file.
    :param busy_timeout: seconds its writes wait for the file's write lock.

    Example::

        storage = StorageProcess(path).start()
        ...  # brokers on path use it
        storage.stop()
    """

    def __init__(self, data: PathLike, busy_timeout: float = BUSY_TIMEOUT) -> None:
        self.data = Path(data)
        self.busy_timeout = busy_timeout
        self.process: Optional[subprocess.Popen[bytes]] = None

    @property
    def pid(self) -> Optional[int]:
        """The process id, while this object runs it."""
        return self.process.pid if self.process is not None else None

    def start(self, timeout: float = START_TIMEOUT) -> "StorageProcess":
        """Start the process and return once it serves; do nothing if another storage already serves the file.

        :param timeout: seconds to wait for it.
        :returns: this object.
        :raises StorageUnavailable: it exited or did not serve within ``timeout`` seconds.
        :raises UnusableDataFile: the file is not a usable SQLite database.
        """
        if self.process is not None and self.process.poll() is None:
            return self
        command = _storage_command(self.data, self.busy_timeout, "--owner-pid", str(os.getpid()))
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, start_new_session=True)
        assert process.stdout is not None
        line = b""
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + timeout
            while not line.endswith(b"\n"):
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(left):
                    break
                chunk = os.read(process.stdout.fileno(), 4096)
                if not chunk:
                    break
                line += chunk
        process.stdout.close()
        text = line.decode(errors="replace").strip()
        if text.startswith("ready"):
            self.process = process
            return self
        status = process.wait(timeout) if text else None
        if status == EXIT_BUSY:  # another storage serves the file: the brokers will use that one
            return self
        if status is None:
            process.kill()
            process.wait()
        raise _start_failure(self.data, text or "error os no answer", status)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (requests in flight finish, the store is closed), then SIGKILL after ``timeout`` seconds."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __enter__(self) -> "StorageProcess":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
