"""SQLite storage of the stand-in broker: namespaces, tables and cells.

:class:`CellStore` is what a broker's handler uses; two kinds implement it.
:class:`Store` opens the SQLite file itself: the storage process
(:mod:`.storage`) runs the one ``Store`` of a data file, and a broker with no
data file (a private temporary one) runs its own.  Brokers on a data file use
:class:`~.storage_client.RemoteStore`, which sends each method call to that
storage process as one request.

Several threads of the storage process use the file at once: every write is
one ``BEGIN IMMEDIATE`` transaction, the file is in WAL mode so readers never
wait for writers, and revisions come from a counter row bumped inside the
write transaction, so they are strictly increasing (:ref:`cell-flags`).  Other
processes opening the file directly (the tests' plain ``sqlite3`` readers,
an older broker) wait at most ``busy_timeout`` seconds for its write lock.

A transaction only ever holds one request's cells (a ``set_cells`` batch or
one mutator flush, which must be atomic), and bulk deletions
(``table_drop``, families removed by ``table_alter``) are recorded in a
``purges`` table and carried out ``PURGE_CHUNK`` cells per transaction; the
cells of a dropped table or family are invisible from the first transaction
on, since table and family ids are never reused.  A purge cut short (a crash,
a file locked too long) is finished by the next drop or alter, or when a
store next opens the file.

Cells are stored in key order (row, family id, qualifier, flag, timestamp
descending, revision descending; :ref:`broker-types`), so a row range is one
indexed range query (:meth:`CellStore.fetch_rows`, a bounded chunk at a
time); everything else is filtered in Python by ``cell_filter.py``.
"""
from __future__ import annotations

import logging
import sqlite3
import time
from itertools import groupby
from operator import itemgetter
from typing import Collection, Iterator, NamedTuple, Optional, Sequence

from .. import codes
from .._thrift.ttypes import ClientException
from ._errors import client_error
from .sqlitedb import BUSY_TIMEOUT, Database

__all__ = ["CellStore", "RawCell", "StaleTable", "Store", "TableCheck", "TableRow", "WriteCell"]

log = logging.getLogger("htcluster.broker")

#: Cells fetched per query when streaming a row range.
CHUNK_CELLS = 4096
#: Cells fetched by the first query of a row range; each next query doubles it up to CHUNK_CELLS,
#: so that a scan stopped early by a limit reads little.
FIRST_CHUNK = 256
#: Cells deleted per write transaction when purging a dropped table or family.
PURGE_CHUNK = 2000
#: ``purges.family`` value meaning "every family of the table".
ALL_FAMILIES = -1
#: Namespaces that exist in every store and cannot be dropped (:ref:`error-codes`).
SYSTEM_NAMESPACES = ("sys", "tmp")

_DDL = """
CREATE TABLE IF NOT EXISTS namespaces (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS tables (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    schema TEXT NOT NULL,
    UNIQUE (namespace, name));
CREATE TABLE IF NOT EXISTS cells (
    table_id INTEGER NOT NULL,
    row TEXT NOT NULL,
    family INTEGER NOT NULL,
    qualifier TEXT NOT NULL,
    flag INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    rev INTEGER NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (table_id, row, family, qualifier, flag, ts DESC, rev DESC)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS purges (
    table_id INTEGER NOT NULL,
    family INTEGER NOT NULL,
    PRIMARY KEY (table_id, family));
CREATE TABLE IF NOT EXISTS clock (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    last INTEGER NOT NULL);
INSERT OR IGNORE INTO clock (id, last) VALUES (0, 0);
INSERT OR IGNORE INTO namespaces (id, name) VALUES (0, '');
INSERT OR IGNORE INTO namespaces (name) VALUES ('sys');
INSERT OR IGNORE INTO namespaces (name) VALUES ('tmp');
"""

_SELECT = ("SELECT row, family, qualifier, flag, ts, rev, value FROM cells WHERE table_id = ? AND row {lo} ?{hi}"
           "{families} ORDER BY row, family, qualifier, flag, ts DESC, rev DESC LIMIT ?")


class RawCell(NamedTuple):
    """One stored cell, as ``iter_rows`` yields it."""

    row: str
    family: int  # 0 for a DELETE_ROW marker
    qualifier: str
    flag: int  # a KeyFlag value
    ts: int  # nanoseconds since the epoch
    rev: int
    value: bytes


class WriteCell(NamedTuple):
    """One cell to write; ``ts``/``rev`` ``None`` means "assigned by the store"."""

    row: str
    family: int
    qualifier: str
    flag: int
    ts: Optional[int]
    rev: Optional[int]
    value: bytes


class TableRow(NamedTuple):
    """A table as stored: numeric id, namespace path, name and schema JSON."""

    id: int
    namespace: str
    name: str
    schema: str


#: ``(namespace, name, table id, schema JSON)``: what a broker's cached table lookup assumed.
TableCheck = tuple[str, str, int, str]


class StaleTable(Exception):
    """A cached table lookup no longer holds (the table was dropped, renamed or altered): nothing was done."""


def _check_table(conn: sqlite3.Connection, expect: Optional[TableCheck]) -> None:
    """Raise :class:`StaleTable` unless ``expect`` still names the same table with the same schema."""
    if expect is None:
        return
    namespace, name, table_id, schema = expect
    found = conn.execute("SELECT id, schema FROM tables WHERE namespace = ? AND name = ?", (namespace, name)).fetchone()
    if found is None or found[0] != table_id or found[1] != schema:
        raise StaleTable(f"table '{join_path(namespace, name)}' changed")


def join_path(namespace: str, name: str) -> str:
    """Return ``namespace/name`` (just ``name`` at the root)."""
    return f"{namespace}/{name}" if namespace else name


def split_path(path: str) -> tuple[str, str]:
    """Return ``(parent, base)`` of a namespace path (parent ``''`` is the root)."""
    parent, _, base = path.rpartition("/")
    return parent, base


class CellStore:
    """Namespaces, tables and cells, as the broker's handler reads and writes them.

    Every method but :meth:`iter_rows` is one bounded operation (a query, or
    one write transaction), which :class:`Store` runs on the SQLite file and
    :class:`~.storage_client.RemoteStore` sends to the storage process as one
    request.  The methods raise ``ClientException`` with the broker's codes.
    """

    def namespace_id(self, path: str) -> Optional[int]:
        """Return the numeric id of namespace ``path`` ('' is the root), or ``None``."""
        raise NotImplementedError

    def create_namespace(self, path: str) -> None:
        """Create namespace ``path``; its parent must exist."""
        raise NotImplementedError

    def drop_namespace(self, path: str, if_exists: bool) -> None:
        """Drop the empty namespace ``path``."""
        raise NotImplementedError

    def listing(self, path: str) -> list[tuple[str, bool]]:
        """Return ``[(name, is_namespace)]`` directly inside namespace ``path``, sorted by name."""
        raise NotImplementedError

    def table_names(self, namespace: str) -> list[str]:
        """Return the names of the tables in ``namespace``, sorted."""
        raise NotImplementedError

    def table(self, namespace: str, name: str) -> Optional[TableRow]:
        """Return the table ``name`` of ``namespace``, or ``None``."""
        raise NotImplementedError

    def table_by_id(self, table_id: int) -> Optional[TableRow]:
        """Return the table with numeric id ``table_id``, or ``None`` once it was dropped."""
        raise NotImplementedError

    def cached_table(self, namespace: str, name: str) -> Optional[TableRow]:
        """Return the table ``name`` of ``namespace``, or ``None``, perhaps from a cache.

        A cached answer is checked by the calling thread's next :meth:`write` or
        :meth:`fetch_rows`, which raises :class:`StaleTable` (having done nothing)
        when it no longer holds; the caller then looks the table up again with
        :meth:`table`.  Call :meth:`forget_check` when no such request follows.
        This store has no cache: it answers :meth:`table`.
        """
        return self.table(namespace, name)

    def forget_check(self) -> None:
        """Drop the check a :meth:`cached_table` answer left for the calling thread's next request."""

    def has_check(self) -> bool:
        """Return whether the calling thread's last lookup came from a cache and is not checked yet."""
        return False

    def create_table(self, namespace: str, name: str, schema: str) -> int:
        """Create a table and return its numeric id."""
        raise NotImplementedError

    def drop_table(self, table_id: int) -> None:
        """Drop a table, then purge its cells."""
        raise NotImplementedError

    def rename_table(self, table_id: int, namespace: str, new_name: str) -> None:
        """Give a table a new name, in its namespace or in another existing one."""
        raise NotImplementedError

    def set_schema(self, table_id: int, schema: str, dropped_families: Sequence[int] = ()) -> None:
        """Replace a table's schema JSON, then purge the cells of ``dropped_families``."""
        raise NotImplementedError

    def write(self, table_id: int, cells: Sequence[WriteCell], expect: Optional[TableCheck] = None) -> None:
        """Store ``cells`` atomically, assigning revisions and missing timestamps.

        :param expect: a cached lookup to check in the same transaction (:class:`StaleTable`).
        """
        raise NotImplementedError

    def fetch_rows(self, table_id: int, start: str, start_inclusive: bool, end: Optional[str],
                   end_inclusive: bool, families: Optional[Sequence[int]], limit: int,
                   expect: Optional[TableCheck] = None) -> list[RawCell]:
        """Return at most ``limit`` stored cells from row ``start`` on, in key order (one query).

        :param end: last row, ``None`` for the end of the table.
        :param families: ids of the families to read (DELETE_ROW markers, family
            0, always come); ``None`` for every family.
        :param expect: a cached lookup to check first (:class:`StaleTable`).
        """
        raise NotImplementedError

    def release_thread(self) -> None:
        """Let go of what the calling thread holds (a connection); it may come back later."""

    def close(self) -> None:
        """Let go of everything; call once no thread uses the store any more."""

    def iter_rows(self, table_id: int, start: str = "", start_inclusive: bool = True,
                  end: Optional[str] = None, end_inclusive: bool = True,
                  families: Optional[Collection[int]] = None, chunk: int = CHUNK_CELLS) -> Iterator[list[RawCell]]:
        """Yield the stored cells of each row in ``[start, end]``, one list per row, in key order.

        Rows are fetched ``FIRST_CHUNK`` cells at first, then up to ``chunk``
        cells at a time (more when one row is larger), each with one
        :meth:`fetch_rows`, with no cursor kept open between them, so a
        paused iterator holds no lock.

        :param end: last row, ``None`` for the end of the table.
        :param families: ids of the families to read (DELETE_ROW markers, family
            0, always come); ``None`` for every family.
        :param chunk: cells fetched per query once the range proves long.
        """
        wanted = None if families is None else sorted(families)
        limit = min(FIRST_CHUNK, chunk)
        while True:
            batch = self.fetch_rows(table_id, start, start_inclusive, end, end_inclusive, wanted, limit)
            if len(batch) < limit:
                yield from _group_rows(batch)
                return
            last_row = batch[-1][0]
            cut = len(batch)
            while cut and batch[cut - 1][0] == last_row:
                cut -= 1
            if cut == 0:  # one row larger than the query: fetch more at once
                limit *= 2
                continue
            yield from _group_rows(batch[:cut])  # the last row may go on: read it whole next time
            start, start_inclusive, limit = last_row, True, min(limit * 2, chunk)


class Store(Database, CellStore):
    """Namespaces, tables and cells in one SQLite file (connections: :class:`.sqlitedb.Database`).

    :param path: the SQLite file; created with its tables when missing.
    :param busy_timeout: seconds a write waits for other processes' writes.
    :raises sqlite3.DatabaseError: the file is not a usable SQLite database.
    """

    def __init__(self, path: str, busy_timeout: float = BUSY_TIMEOUT) -> None:
        super().__init__(path, busy_timeout)
        self.while_locked(lambda conn: conn.executescript("BEGIN IMMEDIATE;" + _DDL + "COMMIT;"))
        self.purge()

    # ------------------------------------------------------------- namespaces

    def namespace_id(self, path: str) -> Optional[int]:
        """Return the numeric id of namespace ``path`` ('' is the root), or ``None``."""
        row = self.conn().execute("SELECT id FROM namespaces WHERE name = ?", (path,)).fetchone()
        return None if row is None else row[0]

    def create_namespace(self, path: str) -> None:
        """Create namespace ``path``; its parent must exist.

        :raises ClientException: NAMESPACE_EXISTS, NAMESPACE_DOES_NOT_EXIST (the
            parent), NAME_ALREADY_IN_USE (a table has that name).
        """
        parent, base = split_path(path)
        with self.transaction() as c:
            if c.execute("SELECT 1 FROM namespaces WHERE name = ?", (path,)).fetchone():
                raise client_error(codes.NAMESPACE_EXISTS, f"namespace '{path}' already exists")
            if not c.execute("SELECT 1 FROM namespaces WHERE name = ?", (parent,)).fetchone():
                raise client_error(codes.NAMESPACE_DOES_NOT_EXIST,
                                   f"cannot create '{path}': parent namespace '{parent}' does not exist; "
                                   "create it first")
            if c.execute("SELECT 1 FROM tables WHERE namespace = ? AND name = ?", (parent, base)).fetchone():
                raise client_error(codes.NAME_ALREADY_IN_USE, f"'{path}' is a table, not a namespace")
            c.execute("INSERT INTO namespaces (name) VALUES (?)", (path,))

    def drop_namespace(self, path: str, if_exists: bool) -> None:
        """Drop the empty namespace ``path``.

        :raises ClientException: INVALID_OPERATION (root, ``sys``, ``tmp``),
            BAD_NAMESPACE (a table), NAMESPACE_DOES_NOT_EXIST (unless
            ``if_exists``), HYPERSPACE_DIR_NOT_EMPTY.
        """
        if path in ("", *SYSTEM_NAMESPACES):
            raise client_error(codes.INVALID_OPERATION,
                               f"namespace '/{path}' is a system namespace and cannot be dropped")
        parent, base = split_path(path)
        with self.transaction() as c:
            if not c.execute("SELECT 1 FROM namespaces WHERE name = ?", (path,)).fetchone():
                if c.execute("SELECT 1 FROM tables WHERE namespace = ? AND name = ?", (parent, base)).fetchone():
                    raise client_error(codes.BAD_NAMESPACE, f"'{path}' is a table; drop it with table_drop")
                if if_exists:
                    return
                raise client_error(codes.NAMESPACE_DOES_NOT_EXIST, f"namespace '{path}' does not exist")
            if (c.execute("SELECT 1 FROM tables WHERE namespace = ? LIMIT 1", (path,)).fetchone()
                    or c.execute("SELECT 1 FROM namespaces WHERE substr(name, 1, ?) = ? LIMIT 1",
                                 (len(path) + 1, path + "/")).fetchone()):
                raise client_error(codes.HYPERSPACE_DIR_NOT_EMPTY,
                                   f"namespace '{path}' is not empty; drop its tables and namespaces first")
            c.execute("DELETE FROM namespaces WHERE name = ?", (path,))

    def listing(self, path: str) -> list[tuple[str, bool]]:
        """Return ``[(name, is_namespace)]`` directly inside namespace ``path``, sorted by name."""
        conn = self.conn()
        prefix = path + "/" if path else ""
        subs = conn.execute("SELECT name FROM namespaces WHERE name != '' AND substr(name, 1, ?) = ?",
                            (len(prefix), prefix)).fetchall()
        entries = [(name[len(prefix):], True) for (name,) in subs if "/" not in name[len(prefix):]]
        entries += [(name, False) for name in self.table_names(path)]
        return sorted(entries)

    # ----------------------------------------------------------------- tables

    def table_names(self, namespace: str) -> list[str]:
        """Return the names of the tables in ``namespace``, sorted."""
        rows = self.conn().execute("SELECT name FROM tables WHERE namespace = ? ORDER BY name", (namespace,))
        return [name for (name,) in rows]

    def table(self, namespace: str, name: str) -> Optional[TableRow]:
        """Return the table ``name`` of ``namespace``, or ``None``."""
        row = self.conn().execute("SELECT id, namespace, name, schema FROM tables WHERE namespace = ? AND name = ?",
                                  (namespace, name)).fetchone()
        return None if row is None else TableRow(*row)

    def table_by_id(self, table_id: int) -> Optional[TableRow]:
        """Return the table with numeric id ``table_id``, or ``None`` once it was dropped."""
        row = self.conn().execute("SELECT id, namespace, name, schema FROM tables WHERE id = ?",
                                  (table_id,)).fetchone()
        return None if row is None else TableRow(*row)

    def _check_free(self, c: sqlite3.Connection, namespace: str, name: str,
                    table_exists: int = codes.MASTER_TABLE_EXISTS) -> None:
        """Raise unless ``namespace`` exists and ``name`` is free in it; ``table_exists`` is the code for a table."""
        if not c.execute("SELECT 1 FROM namespaces WHERE name = ?", (namespace,)).fetchone():
            raise client_error(codes.NAMESPACE_DOES_NOT_EXIST,
                               f"namespace '{namespace}' does not exist; create it first")
        if c.execute("SELECT 1 FROM namespaces WHERE name = ?", (join_path(namespace, name),)).fetchone():
            raise client_error(codes.NAME_ALREADY_IN_USE, f"'{join_path(namespace, name)}' is a namespace")
        if c.execute("SELECT 1 FROM tables WHERE namespace = ? AND name = ?", (namespace, name)).fetchone():
            raise client_error(table_exists, f"table '{join_path(namespace, name)}' already exists")

    def create_table(self, namespace: str, name: str, schema: str) -> int:
        """Create a table and return its numeric id.

        :raises ClientException: NAMESPACE_DOES_NOT_EXIST, NAME_ALREADY_IN_USE,
            MASTER_TABLE_EXISTS.
        """
        with self.transaction() as c:
            self._check_free(c, namespace, name)
            table_id = c.execute("INSERT INTO tables (namespace, name, schema) VALUES (?, ?, ?)",
                                 (namespace, name, schema)).lastrowid
        if table_id is None:  # pragma: no cover  (sqlite3 sets it after every INSERT)
            raise RuntimeError(f"SQLite gave no id to the new table '{join_path(namespace, name)}'")
        return table_id

    def drop_table(self, table_id: int) -> None:
        """Drop a table, then purge its cells (nothing happens if it is gone already)."""
        with self.transaction() as c:
            c.execute("DELETE FROM tables WHERE id = ?", (table_id,))
            c.execute("INSERT OR IGNORE INTO purges VALUES (?, ?)", (table_id, ALL_FAMILIES))
        self._purge_after_commit()

    def rename_table(self, table_id: int, namespace: str, new_name: str) -> None:
        """Give a table a new name, in its namespace or in another existing one.

        :param namespace: path of the namespace the table moves to ('' is the root).
        :raises ClientException: NAMESPACE_DOES_NOT_EXIST, NAME_ALREADY_IN_USE
            (a table or a namespace has that name).
        """
        with self.transaction() as c:
            self._check_free(c, namespace, new_name, codes.NAME_ALREADY_IN_USE)
            c.execute("UPDATE tables SET namespace = ?, name = ? WHERE id = ?", (namespace, new_name, table_id))

    def set_schema(self, table_id: int, schema: str, dropped_families: Sequence[int] = ()) -> None:
        """Replace a table's schema JSON, then purge the cells of ``dropped_families`` (family ids)."""
        with self.transaction() as c:
            c.execute("UPDATE tables SET schema = ? WHERE id = ?", (schema, table_id))
            c.executemany("INSERT OR IGNORE INTO purges VALUES (?, ?)", [(table_id, f) for f in dropped_families])
        self._purge_after_commit()

    def _purge_after_commit(self) -> None:
        """Purge now; the change is committed, so a locked file only delays the purge to a later one."""
        try:
            self.purge()
        except ClientException as exc:
            log.warning("purge of dropped cells postponed: %s", exc.message)

    def purge(self, chunk: int = PURGE_CHUNK) -> None:
        """Delete the cells of dropped tables and families, ``chunk`` cells per write transaction.

        Safe to run from several processes at once; returns when no purge is pending.

        :raises ClientException: REQUEST_TIMEOUT (file locked too long).
        """
        while True:
            pending = self.conn().execute("SELECT table_id, family FROM purges LIMIT 1").fetchone()
            if pending is None:
                return
            table_id, family = pending
            where = "table_id = ?" if family == ALL_FAMILIES else "table_id = ? AND family = ?"
            args = (table_id,) if family == ALL_FAMILIES else (table_id, family)
            with self.transaction() as c:
                deleted = c.execute(f"DELETE FROM cells WHERE (table_id, row, family, qualifier, flag, ts, rev) IN "
                                    f"(SELECT table_id, row, family, qualifier, flag, ts, rev FROM cells "
                                    f"WHERE {where} LIMIT ?)", (*args, chunk)).rowcount
                if deleted < chunk:
                    c.execute("DELETE FROM purges WHERE table_id = ? AND family = ?", (table_id, family))

    # ------------------------------------------------------------------ cells

    def write(self, table_id: int, cells: Sequence[WriteCell], expect: Optional[TableCheck] = None) -> None:
        """Store ``cells`` atomically, assigning revisions and missing timestamps.

        A revision is ``max(now in ns, last revision + 1)``, taken from the
        shared counter inside the write transaction, so revisions increase
        strictly across all processes on this file.  An auto timestamp equals
        the revision (:ref:`cell-flags`).

        :param expect: a cached lookup to check inside the same transaction.
        :raises StaleTable: ``expect`` no longer holds; nothing was written.
        :raises ClientException: TABLE_NOT_FOUND (dropped meanwhile),
            RANGESERVER_REVISION_ORDER_ERROR (a supplied revision not above the
            last one), REQUEST_TIMEOUT (file locked too long).
        """
        if not cells and expect is None:
            return
        with self.transaction() as c:
            _check_table(c, expect)
            if not c.execute("SELECT 1 FROM tables WHERE id = ?", (table_id,)).fetchone():
                raise client_error(codes.TABLE_NOT_FOUND, f"table id {table_id} was dropped")
            last = max(c.execute("SELECT last FROM clock WHERE id = 0").fetchone()[0], time.time_ns() - 1)
            rows = []
            for cell in cells:
                if cell.rev is None:
                    last += 1
                    rev = last
                elif cell.rev > last:
                    rev = last = cell.rev
                else:
                    raise client_error(codes.RANGESERVER_REVISION_ORDER_ERROR,
                                       f"supplied revision {cell.rev} is not above the last revision {last}; "
                                       "leave Key.revision unset")
                ts = rev if cell.ts is None else cell.ts
                rows.append((table_id, cell.row, cell.family, cell.qualifier, cell.flag, ts, rev, cell.value))
            c.executemany("INSERT INTO cells VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
            c.execute("UPDATE clock SET last = ? WHERE id = 0", (last,))

    def fetch_rows(self, table_id: int, start: str, start_inclusive: bool, end: Optional[str],
                   end_inclusive: bool, families: Optional[Sequence[int]], limit: int,
                   expect: Optional[TableCheck] = None) -> list[RawCell]:
        """Return at most ``limit`` stored cells from row ``start`` on, in key order (one query)."""
        _check_table(self.conn(), expect)
        hi = "" if end is None else (" AND row <= ?" if end_inclusive else " AND row < ?")
        in_families = "" if families is None else f" AND family IN (0{', ?' * len(families)})"
        tail = ([] if end is None else [end]) + list(families or ())
        sql = _SELECT.format(lo=">=" if start_inclusive else ">", hi=hi, families=in_families)
        return self.conn().execute(sql, (table_id, start, *tail, limit)).fetchall()


def _group_rows(batch: Sequence[tuple]) -> Iterator[list[RawCell]]:
    """Split key-ordered cells into one list per row."""
    for _, cells in groupby(batch, key=itemgetter(0)):
        yield list(map(RawCell._make, cells))
