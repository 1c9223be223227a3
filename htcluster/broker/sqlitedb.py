"""One SQLite file shared by threads and processes: per-thread connections, write transactions.

:class:`Database` opens one connection per thread (``sqlite3`` connections
are not shared) in WAL mode, so readers never wait for the single writer;
``with db.transaction() as c:`` runs a ``BEGIN IMMEDIATE`` transaction that waits
at most ``busy_timeout`` seconds for another writer and then answers the
broker's REQUEST_TIMEOUT (:ref:`error-codes`) instead of hanging.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any, Callable

from .. import codes
from ._errors import client_error

__all__ = ["BUSY_TIMEOUT", "Database", "WriteTransaction"]

#: Seconds a writer waits for another process's write transaction.
BUSY_TIMEOUT = 30.0


class WriteTransaction:
    """``with`` block = one write transaction, rolled back if the block raises.

    A class rather than ``contextlib.contextmanager``: the generated
    ``ClientException`` is immutable, and a generator-based manager would try
    to set its ``__traceback__``.

    :param conn: the calling thread's connection (autocommit mode).
    :param busy_timeout: seconds the connection waits for the write lock, for the message.
    """

    def __init__(self, conn: sqlite3.Connection, busy_timeout: float) -> None:
        self.conn = conn
        self.busy_timeout = busy_timeout

    def __enter__(self) -> sqlite3.Connection:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise client_error(codes.REQUEST_TIMEOUT,
                               f"the data file stayed locked by another writer for {self.busy_timeout} s "
                               f"({exc}); retry later") from exc
        return self.conn

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.conn.execute("ROLLBACK" if exc_type is not None else "COMMIT")


class Database:
    """Per-thread connections to one SQLite file in WAL mode.

    Call :meth:`release_thread` when a thread is done with the database and
    :meth:`close` once no thread uses it any more.

    :param path: the SQLite file; created when missing.
    :param busy_timeout: seconds a write waits for other processes' writes.
    :raises sqlite3.DatabaseError: the file is not a usable SQLite database.
    """

    def __init__(self, path: str, busy_timeout: float = BUSY_TIMEOUT) -> None:
        self.path = str(path)
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: set[sqlite3.Connection] = set()
        self.while_locked(lambda conn: conn.execute("PRAGMA journal_mode=WAL"))

    def while_locked(self, setup: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``setup(conn)``, retrying for up to ``busy_timeout`` seconds while the file is locked.

        Needed at start-up: switching to WAL (and creating the schema) while
        another broker process does the same on a new file answers "database
        is locked" at once instead of waiting for SQLite's busy handler.

        :raises sqlite3.OperationalError: the file stayed locked that long.
        """
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.005
        while True:
            conn = self.conn()
            try:
                return setup(conn)
            except sqlite3.OperationalError as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def conn(self) -> sqlite3.Connection:
        """Return this thread's connection, opening it on first use."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL: durable across process crashes
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
            self._local.conn = conn
            with self._lock:
                self._conns.add(conn)
        return conn

    def release_thread(self) -> None:
        """Close the calling thread's connection, if it has one."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.conn = None
            with self._lock:
                self._conns.discard(conn)
            conn.close()

    def close(self) -> None:
        """Close every connection (call once no thread uses the database any more)."""
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:  # pragma: no cover - best effort at shutdown
                pass

    def transaction(self) -> WriteTransaction:
        """Return a context manager running its block in one ``BEGIN IMMEDIATE`` transaction.

        :raises ClientException: REQUEST_TIMEOUT on entry, when the write lock
            stays taken for ``busy_timeout`` seconds.
        """
        return WriteTransaction(self.conn(), self.busy_timeout)
